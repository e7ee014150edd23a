"""A lazy expression follows its operand after the daemon uploads or appends to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import blosc2
import numpy as np

from cat2sync import Client
from cat2sync.errors import Cat2Error
from cat2sync.events import EventKind
from cat2sync.server import LocalServer
from cat2sync.testing import wait_until
from tests.helpers.mirror import alice_manifest, open_daemon


def _write_raw(path: Path, rows: int) -> np.ndarray:
    """(Re)write the instrument's file with ``rows`` rows; the first rows never change."""
    data = np.arange(rows * 8, dtype="f8").reshape(rows, 8) / 3
    tmp = path.with_name("incoming.tmp")  # not included: written aside, then renamed
    blosc2.asarray(data, urlpath=str(tmp), mode="w", chunks=(25, 8))
    tmp.replace(path)
    return data


def _result_is(client: Client, remote: str, expected: np.ndarray) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return bool(np.array_equal(client.fetch(remote), expected))
        except Cat2Error:
            return False  # not computed yet

    return check


def test_lazy_expression_follows_its_operand(
    server: LocalServer, client: Client, tmp_path: Path, remote_dir: str
) -> None:
    local = tmp_path / "acquisition"
    local.mkdir()
    result = f"{remote_dir}/derived/doubled.b2nd"
    manifest = alice_manifest(
        tmp_path / "cat2sync.toml",
        server,
        upload=[
            {
                "name": "instrument",
                "local": str(local),
                "remote": remote_dir,
                "include": ["*.b2nd"],
                "settle": "0s",
            }
        ],
        lazyexpr=[
            {
                "name": "doubled",
                "path": result,
                "expression": "raw * 2 + 1",
                "operands": {"raw": f"{remote_dir}/raw.b2nd"},
            },
            {
                "name": "orphan",
                "path": f"{remote_dir}/derived/orphan.b2nd",
                "expression": "ghost - 1",
                "operands": {"ghost": f"{remote_dir}/missing.b2nd"},
            },
        ],
    )
    data = _write_raw(local / "raw.b2nd", 100)

    with open_daemon(manifest) as h:
        h.daemon.start()
        wait_until(_result_is(client, result, data * 2 + 1), timeout=30, message="the first result")

        mark = len(h.events)
        data = _write_raw(local / "raw.b2nd", 260)  # the instrument wrote more rows
        wait_until(
            _result_is(client, result, data * 2 + 1), timeout=30, message="the recomputed result"
        )
        wait_until(
            lambda: any(
                e.rule == "lazyexpr:doubled" and e.kind == EventKind.COMPUTED
                for e in h.events[mark:]
            ),
            timeout=30,
            message="the computed event",
        )
        events = list(h.events)

    # Only the new rows were sent, and that (nothing else) recomputed the expression.
    # (A sink may see "computed" before the "appended" that caused it.)
    assert [(e.kind, e.rows) for e in events[mark:] if e.rule == "instrument"] == [
        (EventKind.APPENDED, 160)
    ]
    assert [e.kind for e in events[mark:] if e.rule == "lazyexpr:doubled"] == [EventKind.COMPUTED]
    # The expression with a missing operand failed (at start) and the rest went on.
    assert {e.kind for e in events if e.rule == "lazyexpr:orphan"} == {EventKind.FAILED}


def test_failing_expressions_report_the_server_message(
    server: LocalServer, client: Client, tmp_path: Path, remote_dir: str
) -> None:
    operand = f"{remote_dir}/raw.b2nd"
    blosc2.asarray(np.arange(10.0), urlpath=str(tmp_path / "raw.b2nd"), mode="w")
    client.upload(tmp_path / "raw.b2nd", operand)
    manifest = alice_manifest(
        tmp_path / "cat2sync.toml",
        server,
        lazyexpr=[
            {
                "name": "orphan",
                "path": f"{remote_dir}/orphan.b2nd",
                "expression": "ghost - 1",
                "operands": {"ghost": f"{remote_dir}/missing.b2nd"},
            },
            {
                "name": "typo",
                "path": f"{remote_dir}/typo.b2nd",
                "expression": "raw + nosuchname",
                "operands": {"raw": operand},
            },
            {
                "name": "fine",
                "path": f"{remote_dir}/fine.b2nd",
                "expression": "raw * 3",
                "operands": {"raw": operand},
            },
        ],
    )
    with open_daemon(manifest) as h:
        failures = h.daemon.once()
        events = list(h.events)

    assert failures == 2
    by_rule = {e.rule: e for e in events}
    orphan, typo = by_rule["lazyexpr:orphan"], by_rule["lazyexpr:typo"]
    assert orphan.kind == typo.kind == EventKind.FAILED
    assert f"{remote_dir}/missing.b2nd" in (orphan.message or "")  # names the operand
    assert "Unknown symbol: nosuchname" in (typo.message or "")  # the server's words
    assert by_rule["lazyexpr:fine"].kind == EventKind.COMPUTED  # and the daemon went on
    np.testing.assert_array_equal(client.fetch(f"{remote_dir}/fine.b2nd"), np.arange(10.0) * 3)
