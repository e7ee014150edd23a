"""The ``[daemon]`` table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.manifest import expect_error

ERRORS = [
    (
        "[daemon]\nlevel = 1\n",
        "daemon.level",
        "unknown key (expected one of: log_format, log_level, rescan, retry_max, state_dir)",
    ),
    ("daemon = 3\n", "daemon", "expected a table, got 3"),
    ("[daemon]\nstate_dir = 3\n", "daemon.state_dir", "expected a string, got 3"),
    (
        '[daemon]\nlog_level = "verbose"\n',
        "daemon.log_level",
        'expected one of "debug", "info", "warning", "error", got "verbose"',
    ),
    (
        '[daemon]\nlog_format = "xml"\n',
        "daemon.log_format",
        'expected one of "text", "json", got "xml"',
    ),
    ('[daemon]\nrescan = "0s"\n', "daemon.rescan", 'must be greater than 0, got "0s"'),
    ("[daemon]\nretry_max = -5\n", "daemon.retry_max", "a duration must not be negative, got -5"),
]


@pytest.mark.parametrize(("text", "key", "message"), ERRORS)
def test_one_line_errors(workdir: Path, text: str, key: str, message: str) -> None:
    expect_error(text, key, message)
