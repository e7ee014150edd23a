"""Fixtures of the fault-injection suite: the session's tally, printed at the end.

Everything talks to a real Caterva2 server on 127.0.0.1; the machinery (the fault proxy,
the daemon as a subprocess, exact comparisons) is in :mod:`tests.helpers`. Knobs: see
:mod:`tests.helpers.faults`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.faults import SEED, STATS, TRIALS, FaultStats


@pytest.fixture(scope="session")
def fault_stats() -> FaultStats:
    """The session's tally (printed by :func:`pytest_terminal_summary`)."""
    return STATS


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if STATS.empty:
        return
    terminalreporter.section("fault-injection summary")
    terminalreporter.write_line(f"seed {SEED}, CAT2SYNC_FAULT_TRIALS={TRIALS}")
    for line in STATS.table():
        terminalreporter.write_line(line)
