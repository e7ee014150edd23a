"""``delete_local_after`` frees instrument disks, only for files verified on the server,
against the real server; freeing is never a local deletion, even with ``delete = true``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.state import StateStore
from cat2sync.testing import grow_b2nd, run_once, write_b2nd
from tests.helpers.daemon import MakeManifest
from tests.helpers.remote import remote_array, remote_files


def _age(path: Path, seconds: float) -> None:
    """As if the file had not changed for ``seconds``."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_verified_old_files_are_freed_and_stay_on_the_server(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    old = write_b2nd(data_dir / "old.b2nd", np.arange(1000.0).reshape(100, 10), chunks=(50, 10))
    (data_dir / "log.txt").write_text("an old log\n")
    recent = write_b2nd(data_dir / "recent.b2nd", np.zeros((10, 10)), chunks=(5, 10))
    for path in (old, data_dir / "log.txt"):
        _age(path, 3600)
    manifest = make_manifest(delete=True, max_delete=1.0, delete_local_after="10m")
    assert sorted(run_once(manifest).kinds()) == [EventKind.UPLOADED] * 3

    done = run_once(manifest)  # shipped last pass: now verified, and freed
    freed = done.of(EventKind.FREED)
    assert sorted(e.path for e in freed) == ["log.txt", "old.b2nd"]
    assert {e.path: e.bytes for e in freed}["log.txt"] == len("an old log\n")
    assert sorted(p.name for p in data_dir.iterdir()) == ["recent.b2nd"]
    assert recent.exists()

    # Not a local deletion: with delete = true the server keeps every file, pass after pass.
    assert run_once(manifest).kinds() == []
    assert remote_files(client, remote_dir) == ["log.txt", "old.b2nd", "recent.b2nd"]
    np.testing.assert_array_equal(
        remote_array(client, f"{remote_dir}/old.b2nd"), np.arange(1000.0).reshape(100, 10)
    )


def test_a_changed_remote_is_not_freed_against(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    (data_dir / "log.txt").write_text("mine\n")
    _age(data_dir / "log.txt", 3600)
    manifest = make_manifest(delete_local_after="10m", on_conflict="overwrite")
    run_once(manifest)
    (data_dir.parent / "x").write_text("someone else's\n")
    client.upload(data_dir.parent / "x", f"{remote_dir}/log.txt")
    done = run_once(manifest)
    [kept] = done.of(EventKind.SKIPPED)
    assert "not freed: the server's copy differs" in (kept.message or "")
    assert (data_dir / "log.txt").read_text() == "mine\n"


def test_a_file_that_grew_is_freed_only_once_shipped_again(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    path = write_b2nd(data_dir / "run.b2nd", np.zeros((10, 4)), chunks=(5, 4))
    manifest = make_manifest(delete_local_after="1h")
    run_once(manifest)
    grow_b2nd(path, np.ones((5, 4)))
    _age(path, 7200)  # old enough, but this version was never shipped
    done = run_once(manifest)
    assert done.kinds() == [EventKind.APPENDED]  # shipped, not freed in the same breath
    assert path.exists()
    assert run_once(manifest).kinds() == [EventKind.FREED]
    with StateStore(manifest.daemon.state_dir) as state:
        rec = state.get_shipped("up", "run.b2nd")
    assert rec is not None and rec.freed is not None
