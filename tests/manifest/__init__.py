"""Unit tests of the manifest loader, one module per table (no server needed)."""
