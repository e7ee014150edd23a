"""The state store: rows by name, and a schema version checked on open."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cat2sync.errors import StateVersionError
from cat2sync.records import Conflict, Mirrored, Shipped
from cat2sync.state import SCHEMA_VERSION, StateStore

# The schema cat2sync 0.1 wrote (version 1), with one row in each table.
_VERSION_1 = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE shipped(
    rule TEXT, relpath TEXT, remote TEXT, kind TEXT, size INTEGER, mtime_ns INTEGER,
    dev INTEGER, inode INTEGER, shape TEXT, dtype TEXT, chunks TEXT, digests TEXT,
    tail_digest TEXT, updated REAL, PRIMARY KEY(rule, relpath));
CREATE INDEX shipped_inode ON shipped(rule, dev, inode);
CREATE TABLE journal(
    id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT, relpath TEXT, op TEXT, remote TEXT,
    start_row INTEGER, stop_row INTEGER, created REAL);
CREATE TABLE pending(
    rule TEXT, relpath TEXT, since REAL, attempts INTEGER, next_attempt REAL,
    last_error TEXT, PRIMARY KEY(rule, relpath));
CREATE TABLE passes(
    rule TEXT PRIMARY KEY, started REAL, finished REAL, error TEXT, files INTEGER,
    bytes INTEGER);
CREATE TABLE mirrored(
    rule TEXT, remote_rel TEXT, etag TEXT, mtime TEXT, shape TEXT, nchunks INTEGER,
    size INTEGER, mtime_ns INTEGER, updated REAL, PRIMARY KEY(rule, remote_rel));
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO shipped VALUES ('up', 'a.b2nd', '@personal/x/a.b2nd', 'array', 10, 20, 1, 2,
    '[100, 4]', 'float64', '[10, 4]', '["d0"]', 't', 0);
INSERT INTO journal VALUES (1, 'up', 'a.b2nd', 'upload', '@personal/x/.cat2sync-1-a.b2nd',
    NULL, NULL, 0);
INSERT INTO pending VALUES ('up', 'b.b2nd', 5, 2, 0, 'server away');
INSERT INTO passes VALUES ('up', 1, 2, NULL, 3, 4);
INSERT INTO passes VALUES ('sub', 1, 2, 'listing failed', 0, 0);
"""


def _version_1(state_dir: Path) -> None:
    state_dir.mkdir()
    with sqlite3.connect(state_dir / "state.db") as db:
        db.executescript(_VERSION_1)


def test_rows_round_trip_by_name(tmp_path: Path) -> None:
    rec = Shipped(
        rule="up",
        relpath="a.b2nd",
        remote="@personal/x/a.b2nd",
        kind="array",
        size=10,
        mtime_ns=20,
        dev=1,
        inode=2,
        shape=(100, 4),
        dtype="float64",
        chunks=(10, 4),
        digests=("d0", "d1"),
        tail_digest="t",
    )
    mir = Mirrored(
        rule="sub",
        remote_rel="m.b2nd",
        etag="e",
        mtime=None,
        shape=None,
        nchunks=3,
        size=7,
        mtime_ns=8,
    )
    with StateStore(tmp_path / "state") as state:
        state.put_shipped(rec)
        state.put_mirrored(mir)
        assert state.get_shipped("up", "a.b2nd") == rec
        assert state.shipped_by_inode("up", 1, 2) == [rec]
        assert state.mirrored_for_rule("sub") == [mir]


def test_an_older_state_folder_is_migrated(tmp_path: Path) -> None:
    _version_1(tmp_path / "state")
    with StateStore(tmp_path / "state") as state:
        assert state.get_shipped("up", "a.b2nd") is not None
        assert [(i.op, i.remote) for i in state.intents("up")] == [
            ("upload", "@personal/x/.cat2sync-1-a.b2nd")
        ]
        [pending] = state.pending("up")
        assert (pending.relpath, pending.attempts, pending.last_error, pending.remedy) == (
            "b.b2nd",
            2,
            "server away",
            None,
        )
        assert state.rule_status("up").last_success == 2  # its last pass went well
        assert state.rule_status("sub").last_success is None
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        assert db.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)


def test_the_last_success_survives_a_failed_pass(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state") as state:
        state.record_pass("up", started=1.0, error=None)
        good = state.rule_status("up").last_success
        state.record_pass("up", started=2.0, error="server away")
        status = state.rule_status("up")
        assert status.last_error == "server away"
        assert status.last_success == good is not None


def test_a_newer_state_folder_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    StateStore(state_dir).close()
    with sqlite3.connect(state_dir / "state.db") as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    with pytest.raises(StateVersionError) as info:
        StateStore(state_dir)
    assert str(info.value) == (
        f"{state_dir}: state schema version 99 is newer than this cat2sync understands "
        f"({SCHEMA_VERSION}): upgrade cat2sync, or use another state_dir"
    )
    with pytest.raises(StateVersionError):  # not "locked": the refused open let go
        StateStore(state_dir)
    with pytest.raises(StateVersionError):
        StateStore(state_dir, readonly=True)


def test_status_does_not_migrate_behind_a_daemon(tmp_path: Path) -> None:
    _version_1(tmp_path / "state")
    with pytest.raises(StateVersionError, match="upgraded when the daemon next starts"):
        StateStore(tmp_path / "state", readonly=True)


def test_the_cli_reports_a_newer_state_in_one_line(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    StateStore(state_dir).close()
    with sqlite3.connect(state_dir / "state.db") as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    (tmp_path / "data").mkdir()
    manifest = tmp_path / "cat2sync.toml"
    manifest.write_text(
        '[daemon]\nstate_dir = "state"\n[server]\nurl = "http://127.0.0.1:9"\n'
        '[[upload]]\nlocal = "data"\nremote = "@personal/x"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "cat2sync", "once", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"cat2sync: {state_dir}: state schema version 99 is newer than this cat2sync "
        f"understands ({SCHEMA_VERSION}): upgrade cat2sync, or use another state_dir"
    ]


def test_totals_and_conflicts(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state") as state:
        state.add_total("up", "uploaded", 100)
        state.add_total("up", "uploaded", 50)
        state.add_total("up", "failed", 0)
        assert [(t.kind, t.files, t.bytes) for t in state.totals("up")] == [
            ("failed", 1, 0),
            ("uploaded", 2, 150),
        ]
        for n in range(3):
            state.add_conflict(
                Conflict(
                    rule="up",
                    side="upload",
                    path=f"run_{n}.b2nd",
                    remote=f"@shared/x/run_{n}.b2nd",
                    action="keep-both",
                    copy=f"@shared/x/run_{n}.conflict-20261201T000000Z.b2nd",
                    reason="another writer replaced it",
                    created=float(n),
                )
            )
        assert [c.path for c in state.conflicts("up", limit=2)] == ["run_2.b2nd", "run_1.b2nd"]
