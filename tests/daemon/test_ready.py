"""Files are shipped only when complete: settled, and (arrays) opening as Blosc2."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from watchfiles import Change

from cat2sync import Client
from cat2sync.daemon import Daemon
from cat2sync.events import Event, EventKind
from cat2sync.testing import grow_b2nd, read_b2nd, run_once, running, wait_until, write_b2nd
from tests.helpers.daemon import MakeManifest
from tests.helpers.remote import remote_bytes, remote_files


def _slow_writer(path: Path, pieces: int, pause: float) -> threading.Thread:
    def write() -> None:
        with path.open("ab") as fh:
            for i in range(pieces):
                fh.write(f'{{"piece": {i}, "pad": "{"x" * 200}"}}\n'.encode())
                fh.flush()
                time.sleep(pause)

    return threading.Thread(target=write, name=f"writer-{path.name}", daemon=True)


def test_file_written_slowly_is_never_uploaded_truncated(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    manifest = make_manifest(settle="0.5s")
    names = ["slow.json", "slow.bin"]
    seen: dict[str, list[bytes]] = {name: [] for name in names}

    def on_event(event: Event) -> None:
        # What readers of the server could see right after each upload.
        if event.kind == EventKind.UPLOADED:
            seen[event.path].append(remote_bytes(client, f"{remote_dir}/{event.path}"))

    with running(manifest, on_event=on_event) as run:
        writers = [_slow_writer(data_dir / name, pieces=10, pause=0.1) for name in names]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        finals = {name: (data_dir / name).read_bytes() for name in names}
        # Once a file's last upload is its final version, no upload can follow (the file
        # does not change any more), and one sent too early is in ``seen`` before it.
        wait_until(
            lambda: all(seen[name][-1:] == [finals[name]] for name in names) and run.settled(),
            message="the final version of both files uploaded",
            state=run.describe,
        )

    for name in names:
        final = (data_dir / name).read_bytes()
        assert final.count(b"\n") == 10
        assert remote_bytes(client, f"{remote_dir}/{name}") == final
        assert seen[name] == [final], f"{name} was uploaded before it was complete"


def _truncated_b2nd(path: Path) -> None:
    write_b2nd(path, np.arange(20000.0).reshape(200, 100), chunks=(50, 100))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_broken_array_is_not_uploaded_until_it_opens(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    _truncated_b2nd(data_dir / "broken.b2nd")
    write_b2nd(data_dir / "good.b2nd", np.ones((10, 10)), chunks=(5, 10))
    manifest = make_manifest()

    done = run_once(manifest)
    assert done.failures > 0
    skipped = done.of(EventKind.SKIPPED)
    assert [e.path for e in skipped] == ["broken.b2nd"]
    assert "Blosc2" in (skipped[0].message or "")
    assert [e.path for e in done.of(EventKind.UPLOADED)] == ["good.b2nd"]
    assert remote_files(client, remote_dir) == ["good.b2nd"]

    # The instrument finishes the file: the next pass ships it.
    write_b2nd(data_dir / "broken.b2nd", np.arange(300.0).reshape(30, 10), chunks=(10, 10))
    done = run_once(manifest)
    assert done.failures == 0
    assert [e.path for e in done.of(EventKind.UPLOADED)] == ["broken.b2nd"]
    assert remote_files(client, remote_dir) == ["broken.b2nd", "good.b2nd"]
    assert np.array_equal(
        client.fetch(f"{remote_dir}/broken.b2nd"), read_b2nd(data_dir / "broken.b2nd")
    )


def test_broken_array_waits_in_the_running_daemon(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    manifest = make_manifest()
    with running(manifest) as run:
        _truncated_b2nd(data_dir / "late.b2nd")
        wait_until(
            lambda: any(p.attempts >= 2 for p in run.daemon.state.pending()),
            message="two failed attempts to open the file",
        )
        assert remote_files(client, remote_dir) == []
        write_b2nd(data_dir / "late.b2nd", np.arange(300.0).reshape(30, 10), chunks=(10, 10))
        wait_until(lambda: run.of(EventKind.UPLOADED, "late.b2nd"), message="the upload")
    assert np.array_equal(
        client.fetch(f"{remote_dir}/late.b2nd"), read_b2nd(data_dir / "late.b2nd")
    )


def test_file_changed_during_upload_is_sent_again_without_leftovers(
    make_manifest: MakeManifest,
    client: Client,
    data_dir: Path,
    remote_dir: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (data_dir / "log.json").write_bytes(b'{"line": 1}\n')
    write_b2nd(data_dir / "frames.b2nd", np.arange(1000.0).reshape(100, 10), chunks=(25, 10))
    uploads: list[str] = []

    def prepare(daemon: Daemon) -> None:
        real = daemon.clients["default"].upload

        def upload(local: Path, dataset: str) -> object:
            # The real upload, then the instrument writes on before the move.
            result = real(local, dataset)
            uploads.append(Path(local).name)
            if uploads.count(Path(local).name) == 1:
                if Path(local).suffix == ".json":
                    with Path(local).open("ab") as fh:
                        fh.write(b'{"line": 2}\n')
                else:
                    grow_b2nd(Path(local), np.ones((10, 10)))
            return result

        monkeypatch.setattr(daemon.clients["default"], "upload", upload)

    done = run_once(make_manifest(), prepare=prepare)
    assert done.failures == 0
    assert sorted(uploads) == ["frames.b2nd", "frames.b2nd", "log.json", "log.json"]
    assert sorted(e.path for e in done.of(EventKind.UPLOADED)) == ["frames.b2nd", "log.json"]
    assert remote_files(client, remote_dir) == ["frames.b2nd", "log.json"]  # no temporaries
    assert remote_bytes(client, f"{remote_dir}/log.json") == (data_dir / "log.json").read_bytes()
    assert np.array_equal(
        client.fetch(f"{remote_dir}/frames.b2nd"), read_b2nd(data_dir / "frames.b2nd")
    )


def test_a_change_is_due_at_its_last_write_plus_settle(
    make_manifest: MakeManifest, data_dir: Path
) -> None:
    """The settle time counts from the file's last write, not from when its event
    arrived: a file moved in whole (its old mtime kept) is due at once."""
    old, new = data_dir / "old.json", data_dir / "new.json"
    old.write_text("{}")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    new.write_text("{}")
    daemon = Daemon(make_manifest(settle="30s"))
    try:
        daemon._on_changes({(Change.added, str(old)), (Change.added, str(new))})
        due = dict(daemon.queue._due)
    finally:
        daemon.close()
    assert due[("up", "old.json")] <= time.time()
    assert due[("up", "new.json")] == pytest.approx(new.stat().st_mtime + 30, abs=1e-3)
