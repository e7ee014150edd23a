"""Fixtures shared by the core suite (tests/) and the first-party plugins (plugins/*/tests)."""

pytest_plugins = ["cat2sync.testing"]
