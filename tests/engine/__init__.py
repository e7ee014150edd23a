"""The engines' decisions, tested without a server."""
