"""End-to-end tests of the daemon's upload side, against the real server."""
