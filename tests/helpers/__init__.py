"""Helpers shared by the test modules (``tests/`` is on ``sys.path``: import ``helpers.X``)."""
