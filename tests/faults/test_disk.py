"""The mirror's disk is full, or read-only, while files are downloaded.

Nothing partial appears under a final name, the file that was there stays intact, no
temporary is left, the error is one clear line (event, log, ``status``), and the
running daemon retries on its schedule and converges once the disk is fixed.

The disk is a real tmpfs of a few hundred KB mounted for the test (the tests run as
root, where ``chmod 0o500`` would not stop a single write). Where mounting is not
allowed, or with ``CAT2SYNC_FAULT_NO_MOUNT=1``, the same faults are simulated
in-process: the atomic writer's file raises ENOSPC after a few KB, and ``os.replace``
into the mirror raises EROFS; the test reports which one ran.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.client import _client as client_module
from cat2sync.events import EventKind
from cat2sync.manifest import load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, running, wait_until, write_manifest
from tests.helpers.cli import status_json
from tests.helpers.compare import compare_local, mirror_temporaries
from tests.helpers.disk import can_mount_tmpfs, remount, tmpfs
from tests.helpers.faults import CONVERGE, STATS, FaultStats, array_file

pytestmark = pytest.mark.faults


@dataclass
class Disk:
    """The mirror's disk and the two ways it can fail."""

    mirror: Path
    how: str  # "tmpfs" or "simulated"
    fill: Callable[[], None]
    make_read_only: Callable[[], None]
    fix: Callable[[], None]


class _FullFile:
    """A file object that fails like a full disk after ``room`` bytes."""

    def __init__(self, inner: BinaryIO, room: int) -> None:
        self._inner = inner
        self._room = room

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    mount = tmp_path / "disk"
    if os.environ.get("CAT2SYNC_FAULT_NO_MOUNT") != "1" and can_mount_tmpfs(mount):
        with tmpfs(mount, "256k"):
            mirror = mount / "mirror"
            mirror.mkdir()
            yield Disk(
                mirror,
                "tmpfs",
                fill=lambda: None,
                make_read_only=lambda: remount(mount, "ro"),
                fix=lambda: remount(mount, "rw,size=64m"),
            )
        return
    mirror = mount / "mirror"
    mirror.mkdir(parents=True)
    state = {"full": False, "ro": False}
    writer, replace = client_module.atomic_writer, os.replace

    @contextlib.contextmanager
    def atomic_writer(dest: Path, *, durable: bool = False) -> Iterator[Any]:
        with writer(dest, durable=durable) as fh:
            yield _FullFile(fh, 4096) if state["full"] and dest.is_relative_to(mirror) else fh

    def read_only_replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if state["ro"] and Path(dst).is_relative_to(mirror):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))
        replace(src, dst, **kwargs)

    monkeypatch.setattr(client_module, "atomic_writer", atomic_writer)
    monkeypatch.setattr(os, "replace", read_only_replace)
    yield Disk(
        mirror,
        "simulated",
        fill=lambda: state.update(full=True),
        make_read_only=lambda: state.update(ro=True),
        fix=lambda: state.update(full=False, ro=False),
    )


class Remote:
    """The subscribed remote folder, written straight to the server; ``truth`` is what
    the mirror must end up holding."""

    def __init__(self, client: Client, remote: str, staging: Path) -> None:
        self.client, self.remote, self.staging = client, remote, staging
        staging.mkdir(exist_ok=True)
        self.rng = np.random.default_rng(11)
        self.truth: dict[str, bytes | np.ndarray] = {}

    def put(self, name: str, data: bytes | np.ndarray) -> None:
        local = self.staging / name
        if isinstance(data, np.ndarray):
            array_file(local, data, chunks=(64, *data.shape[1:]))
        else:
            local.write_bytes(data)
        self.client.upload(local, f"{self.remote}/{name}")
        self.truth[name] = data

    def append(self, name: str, rows: np.ndarray) -> None:
        self.client.append(f"{self.remote}/{name}", rows)
        old = self.truth[name]
        assert isinstance(old, np.ndarray)
        self.truth[name] = np.concatenate([old, rows])


def _manifest(tmp_path: Path, server: LocalServer, remote_dir: str, mirror: Path) -> Path:
    return write_manifest(
        tmp_path / "cat2sync.toml",
        url=server.url,
        username=ALICE[0],
        password=ALICE[1],
        subscribe=[{"name": "m", "root": remote_dir, "local": str(mirror), "every": "1s"}],
    )


def _failures(run: Any, needle: str) -> list[str]:
    return [e.message or "" for e in run.of(EventKind.FAILED) if needle in (e.message or "")]


def _check_broken_disk(
    run: Any,
    disk: Disk,
    manifest: Path,
    needle: str,
    kept: dict[str, bytes | np.ndarray],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the disk is broken: clear one-line errors, the old files intact, nothing
    partial and no temporary, ``status`` showing the error."""
    wait_until(
        lambda: len(_failures(run, needle)) >= 2,
        timeout=CONVERGE,
        message=f"two failed passes ({needle})",
        state=run.describe,
    )
    for message in _failures(run, needle):
        assert "\n" not in message and "Traceback" not in message
    intact = compare_local(disk.mirror, kept)
    STATS.leak(
        "partial file visible at a final name",
        sum("differ" in p or "does not open" in p for p in intact.problems),
    )
    assert intact.ok, intact.problems
    STATS.leak("temporary left in the mirror", len(mirror_temporaries(disk.mirror)))
    assert mirror_temporaries(disk.mirror) == []
    report = status_json(manifest)["rules"]["m"]
    assert needle in (report["last_error"] or ""), report
    logged = [r for r in caplog.records if needle in r.getMessage()]
    assert logged and all(r.exc_info is None for r in logged)


def test_disk_full_during_download(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    disk: Disk,
    fault_stats: FaultStats,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cat2sync")
    remote = Remote(client, remote_dir, tmp_path / "staging")
    remote.put("notes.txt", b"small\n" * 100)
    remote.put("frames.b2nd", np.arange(2000.0).reshape(200, 10))
    manifest = _manifest(tmp_path, server, remote_dir, disk.mirror)
    with running(load_manifest(manifest)) as run:
        wait_until(
            lambda: compare_local(disk.mirror, remote.truth).ok,
            timeout=CONVERGE,
            message="the first mirror pass",
            state=run.describe,
        )
        kept = dict(remote.truth)
        # Bigger than the disk: a replacement of a mirrored file, and a new file.
        disk.fill()
        remote.put("frames.b2nd", remote.rng.random((1000, 100)))
        remote.put("big.bin", remote.rng.bytes(600_000))
        fault_stats.fault(f"disk full during a download ({disk.how})")
        _check_broken_disk(run, disk, manifest, "No space left on device", kept, caplog)
        disk.fix()
        wait_until(
            lambda: compare_local(disk.mirror, remote.truth).ok,
            timeout=CONVERGE,
            message="convergence once there is room",
            state=run.describe,
        )
        tally = compare_local(disk.mirror, remote.truth)
        fault_stats.add(tally)
        assert mirror_temporaries(disk.mirror) == []


def test_read_only_mirror_during_download(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    disk: Disk,
    fault_stats: FaultStats,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cat2sync")
    remote = Remote(client, remote_dir, tmp_path / "staging")
    remote.put("series.b2nd", np.arange(3000.0).reshape(300, 10))
    remote.put("log.txt", b"line\n" * 50)
    manifest = _manifest(tmp_path, server, remote_dir, disk.mirror)
    with running(load_manifest(manifest)) as run:
        wait_until(
            lambda: compare_local(disk.mirror, remote.truth).ok,
            timeout=CONVERGE,
            message="the first mirror pass",
            state=run.describe,
        )
        kept = dict(remote.truth)
        disk.make_read_only()
        remote.append("series.b2nd", np.ones((70, 10)))  # growth: the incremental path
        remote.put("log.txt", b"line two\n" * 50)  # a replacement
        remote.put("new.txt", b"new\n")
        fault_stats.fault(f"read-only mirror folder during a download ({disk.how})")
        _check_broken_disk(run, disk, manifest, "Read-only file system", kept, caplog)
        disk.fix()
        wait_until(
            lambda: compare_local(disk.mirror, remote.truth).ok,
            timeout=CONVERGE,
            message="convergence once writable",
            state=run.describe,
        )
        fault_stats.add(compare_local(disk.mirror, remote.truth))
        assert mirror_temporaries(disk.mirror) == []
