"""The ``[daemon]`` table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.manifest import UPLOAD, expect_error, load

ERRORS = [
    (
        "[daemon]\nlevel = 1\n",
        "daemon.level",
        "unknown key (expected one of: http, log_format, log_level, rescan, retry_max, state_dir)",
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
    (
        '[daemon]\nhttp = "localhost"\n',
        "daemon.http",
        'expected "host:port" like "127.0.0.1:9464", or a port, got "localhost"',
    ),
    (
        "[daemon]\nhttp = true\n",
        "daemon.http",
        'expected "host:port" like "127.0.0.1:9464", or a port, got true',
    ),
    ("[daemon]\nhttp = 70000\n", "daemon.http", "the port must be between 0 and 65535, got 70000"),
    (
        '[daemon]\nhttp = "127.0.0.1:99999"\n',
        "daemon.http",
        "the port must be between 0 and 65535, got 99999",
    ),
    (
        '[daemon]\nhttp = ":9464"\n',
        "daemon.http",
        '":9464" names no host: "127.0.0.1:9464" for this machine only, '
        '"0.0.0.0:9464" for every network interface',
    ),
    (
        '[daemon]\nhttp = "lab pc:9464"\n',
        "daemon.http",
        'expected "host:port" like "127.0.0.1:9464", or a port; "lab pc" is not a host name '
        "or IP address",
    ),
    (
        '[daemon]\nhttp = "[not-v6]:9464"\n',
        "daemon.http",
        'expected "host:port" like "127.0.0.1:9464", or a port; "not-v6" is not a host name '
        "or IP address",
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), ERRORS)
def test_one_line_errors(workdir: Path, text: str, key: str, message: str) -> None:
    expect_error(text, key, message)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("9464", "127.0.0.1:9464"),  # a port alone: this machine only
        ('"9464"', "127.0.0.1:9464"),
        ('"0.0.0.0:9464"', "0.0.0.0:9464"),
        ('"[::1]:0"', "[::1]:0"),
        ('"lab-pc.example.org:9464"', "lab-pc.example.org:9464"),
    ],
)
def test_http_address(workdir: Path, value: str, address: str) -> None:
    manifest = load(f"[daemon]\nhttp = {value}\n{UPLOAD}")
    assert str(manifest.daemon.http) == address


def test_no_http_address_means_no_endpoint(workdir: Path) -> None:
    assert load(UPLOAD).daemon.http is None
