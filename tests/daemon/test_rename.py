"""Local renames of shipped files and folders become server-side moves, not re-uploads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.testing import grow_b2nd, read_b2nd, run_once, running, wait_until, write_b2nd
from tests.helpers.daemon import MakeManifest
from tests.helpers.remote import remote_bytes, remote_files

MOVE_BYTES = 1024  # a move request carries two paths as JSON, nothing more


def test_file_rename_becomes_a_move(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    rng = np.random.default_rng(3)
    write_b2nd(data_dir / "a.b2nd", rng.normal(size=(200, 500)), chunks=(50, 500))
    (data_dir / "notes.json").write_text('{"sample": "x"}')
    manifest = make_manifest(delete=True)
    first = run_once(manifest)
    assert first.failures == 0
    assert first.bytes_sent > 100 * MOVE_BYTES

    (data_dir / "a.b2nd").rename(data_dir / "b.b2nd")
    (data_dir / "notes.json").rename(data_dir / "notes-run1.json")
    done = run_once(manifest)
    assert done.failures == 0
    assert sorted(done.kinds()) == [EventKind.MOVED, EventKind.MOVED]
    assert done.bytes_sent < 2 * MOVE_BYTES
    assert remote_files(client, remote_dir) == ["b.b2nd", "notes-run1.json"]
    assert np.array_equal(client.fetch(f"{remote_dir}/b.b2nd"), read_b2nd(data_dir / "b.b2nd"))
    assert remote_bytes(client, f"{remote_dir}/notes-run1.json") == b'{"sample": "x"}'

    # The moved file keeps growing: the record followed the rename, so rows are appended.
    arr = read_b2nd(data_dir / "b.b2nd")
    grow_b2nd(data_dir / "b.b2nd", rng.normal(size=(50, 500)))
    done = run_once(manifest)
    assert done.kinds() == [EventKind.APPENDED]
    remote = client.fetch(f"{remote_dir}/b.b2nd")
    assert remote.shape == (250, 500)
    assert np.array_equal(remote[:200], arr)


def test_folder_rename_becomes_moves_in_the_running_daemon(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    names = [f"frame-{i}.json" for i in range(4)]
    (data_dir / "run1").mkdir()
    for name in names:
        (data_dir / "run1" / name).write_text(name * 100)
    manifest = make_manifest(delete=True)
    with running(manifest) as run:
        wait_until(
            lambda: len(run.of(EventKind.UPLOADED)) == len(names) and run.settled(),
            message="the initial uploads",
        )
        sent = run.client.stats.bytes_sent
        (data_dir / "run1").rename(data_dir / "run2")
        wait_until(
            lambda: len(run.of(EventKind.MOVED)) == len(names) and run.settled(),
            message="four moves",
        )
        assert run.client.stats.bytes_sent - sent < len(names) * MOVE_BYTES
        assert len(run.of(EventKind.UPLOADED)) == len(names)
        assert run.of(EventKind.REMOVED) == [] and run.of(EventKind.SKIPPED) == []
    assert remote_files(client, remote_dir) == [f"run2/{n}" for n in names]
    for name in names:
        assert remote_bytes(client, f"{remote_dir}/run2/{name}") == (name * 100).encode()


def test_tmp_renamed_into_place_costs_one_upload(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    write_b2nd(data_dir / "earlier.b2nd", np.zeros((10, 10)), chunks=(10, 10))
    manifest = make_manifest(delete=True, max_delete=0.1, exclude=["**/*.tmp"])
    with running(manifest) as run:
        wait_until(
            lambda: run.of(EventKind.UPLOADED, "earlier.b2nd") and run.settled(),
            message="the first upload",
        )
        # Acquisition software writes x.tmp, then renames it when the file is complete.
        tmp = write_b2nd(data_dir / "x.tmp", np.arange(1000.0).reshape(100, 10), chunks=(25, 10))
        tmp.replace(data_dir / "x.b2nd")
        wait_until(
            lambda: run.of(EventKind.UPLOADED, "x.b2nd") and run.settled(),
            message="x.b2nd uploaded",
        )
        run.daemon.reconcile("up")  # what the periodic rescan would do
        run.daemon.queue.wait_idle(10)
        uploads = [e.path for e in run.of(EventKind.UPLOADED)]
        assert sorted(uploads) == ["earlier.b2nd", "x.b2nd"]
        assert run.of(EventKind.REMOVED) == [] and run.of(EventKind.SKIPPED) == []
        assert run.of(EventKind.FAILED) == []
    assert remote_files(client, remote_dir) == ["earlier.b2nd", "x.b2nd"]
    assert np.array_equal(client.fetch(f"{remote_dir}/x.b2nd"), read_b2nd(data_dir / "x.b2nd"))
