"""Waiting in tests: poll a condition, fail with what was seen instead."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    cond: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str = "condition",
    state: Callable[[], object] | None = None,
) -> Any:
    """Poll ``cond`` until it returns something truthy; fail the test on timeout.

    :param state: describes what was seen instead, for the failure message.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; seen: {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}{seen}")
        time.sleep(interval)
