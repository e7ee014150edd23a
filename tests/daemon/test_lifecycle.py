"""The daemon as a whole: outliving a server outage, one daemon per state dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.daemon import Daemon
from cat2sync.errors import StateLockedError
from cat2sync.events import EventKind
from cat2sync.server import LocalServer
from cat2sync.testing import BOSS, grow_b2nd, read_b2nd, running, wait_until, write_b2nd
from tests.helpers.daemon import MakeManifest
from tests.helpers.remote import remote_bytes, remote_files


def test_daemon_catches_up_after_a_server_outage(
    make_manifest: MakeManifest, own_server: LocalServer, data_dir: Path, remote_dir: str
) -> None:
    write_b2nd(data_dir / "frames.b2nd", np.arange(2000.0).reshape(20, 100), chunks=(10, 100))
    manifest = make_manifest(
        url=own_server.url, username=BOSS[0], password=BOSS[1], daemon={"retry_max": "2s"}
    )
    with running(manifest) as run:
        wait_until(lambda: run.of(EventKind.UPLOADED) and run.settled(), message="the first upload")
        own_server.stop()
        # Meanwhile the instrument carries on.
        grow_b2nd(data_dir / "frames.b2nd", np.ones((30, 100)))
        for i in range(3):
            (data_dir / f"meta-{i}.json").write_text(f'{{"i": {i}}}')
        wait_until(
            lambda: len(run.of(EventKind.FAILED)) >= 2,
            timeout=30,
            message="failed attempts while the server is down",
        )
        own_server.start()  # same port, same data
        wait_until(
            lambda: run.of(EventKind.APPENDED) and run.settled(), timeout=30, message="catching up"
        )
        assert len(run.of(EventKind.UPLOADED)) == 4

    with Client(own_server.url, BOSS) as boss:
        assert remote_files(boss, remote_dir) == [
            "frames.b2nd",
            "meta-0.json",
            "meta-1.json",
            "meta-2.json",
        ]
        assert np.array_equal(
            boss.fetch(f"{remote_dir}/frames.b2nd"), read_b2nd(data_dir / "frames.b2nd")
        )
        for i in range(3):
            assert remote_bytes(boss, f"{remote_dir}/meta-{i}.json") == f'{{"i": {i}}}'.encode()


def test_second_daemon_on_the_same_state_is_refused(make_manifest: MakeManifest) -> None:
    manifest = make_manifest()
    first = Daemon(manifest)
    try:
        with pytest.raises(StateLockedError, match="in use"):
            Daemon(manifest)
    finally:
        first.close()
    Daemon(manifest).close()  # the lock goes with the daemon that held it
