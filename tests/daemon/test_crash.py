"""Appends survive crashes: the remote shape is the cursor, so no row is lost or doubled."""

from __future__ import annotations

import random
import threading
import time
from functools import partial
from pathlib import Path

import blosc2
import numpy as np

from cat2sync import Client
from cat2sync.engine.arrays import rows_frame
from cat2sync.events import EventKind
from cat2sync.state import StateStore
from cat2sync.testing import grow_b2nd, read_b2nd, run_once, wait_until, write_b2nd
from tests.helpers.cli import daemon_process
from tests.helpers.daemon import MakeManifest
from tests.helpers.remote import remote_files, remote_shape

COLS = 100


def _rows(rng: np.random.Generator, n: int, cols: int = COLS) -> np.ndarray:
    return rng.integers(0, 1000, (n, cols)).astype(np.float64)


def _append_behind_the_daemons_back(
    state_dir: Path, client: Client, path: Path, remote: str, start: int, stop: int
) -> None:
    """What a daemon killed right after the server applied an append leaves behind:
    the intent written, the rows on the server, nothing confirmed."""
    with StateStore(state_dir) as state:
        state.intend("up", path.name, "append", remote, start, stop)
    arr = blosc2.open(str(path), mode="r")
    assert client.append(remote, rows_frame(arr, start, stop))[0] == stop


def test_append_applied_but_not_recorded(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    rng = np.random.default_rng(4)
    path = write_b2nd(data_dir / "frames.b2nd", _rows(rng, 100), chunks=(50, COLS))
    manifest = make_manifest()
    state_dir = manifest.daemon.state_dir
    remote = f"{remote_dir}/frames.b2nd"
    assert run_once(manifest).kinds() == [EventKind.UPLOADED]

    # All the new rows reached the server before the crash: nothing is left to send.
    grow_b2nd(path, _rows(rng, 80))
    _append_behind_the_daemons_back(state_dir, client, path, remote, 100, 180)
    done = run_once(manifest)
    assert done.failures == 0
    assert done.kinds() == [EventKind.APPENDED]
    assert done.bytes_sent < 2048  # login only: no rows travelled again
    assert remote_shape(client, remote) == (180, COLS)
    assert np.array_equal(client.fetch(remote), read_b2nd(path))

    # Only the first of two requests reached the server: the rest follows, once.
    grow_b2nd(path, _rows(rng, 120))
    _append_behind_the_daemons_back(state_dir, client, path, remote, 180, 240)
    done = run_once(manifest)
    assert done.kinds() == [EventKind.APPENDED]
    assert remote_shape(client, remote) == (300, COLS)
    assert np.array_equal(client.fetch(remote), read_b2nd(path))
    with StateStore(state_dir) as state:
        assert state.intents() == []

    # Rows on the server that are not ours are never trusted: with on_conflict =
    # "overwrite" a whole upload replaces them (keep-both is in test_conflicts.py).
    grow_b2nd(path, _rows(rng, 20))
    client.append(remote, np.full((20, COLS), -1.0))
    done = run_once(make_manifest(on_conflict="overwrite"))
    assert done.kinds() == [EventKind.UPLOADED]
    assert np.array_equal(client.fetch(remote), read_b2nd(path))


# -- a real SIGKILL ------------------------------------------------------------------


class _Grower(threading.Thread):
    """Grows a .b2nd by a random number of rows, pausing longer than the settle time."""

    def __init__(self, path: Path, rng: random.Random, growths: int) -> None:
        super().__init__(name="grower", daemon=True)
        self.path, self.rng, self.growths = path, rng, growths
        self.data = np.random.default_rng(rng.randrange(2**32))

    def run(self) -> None:
        for _ in range(self.growths):
            grow_b2nd(self.path, _rows(self.data, self.rng.randint(1, 160), cols=1000))
            time.sleep(self.rng.uniform(0.25, 0.45))


def _remote_rows(client: Client, remote: str) -> int:
    shape = remote_shape(client, remote)
    return shape[0] if shape else 0


def _grew_past(client: Client, remote: str, rows: int) -> bool:
    return _remote_rows(client, remote) > rows


def _has_shape(client: Client, remote: str, shape: tuple[int, ...]) -> bool:
    return remote_shape(client, remote) == shape


def test_sigkill_mid_append_loses_and_doubles_nothing(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str, tmp_path: Path
) -> None:
    rng = random.Random(20240607)
    path = write_b2nd(data_dir / "frames.b2nd", np.zeros((100, 1000)), chunks=(50, 1000))
    manifest = make_manifest()
    remote = f"{remote_dir}/frames.b2nd"
    with daemon_process(manifest.path, tmp_path / "daemon.log") as proc:
        for trial in range(3):
            at_start = _remote_rows(client, remote)
            grower = _Grower(path, rng, growths=8)
            grower.start()
            # Appends are under way once the remote grew; then kill at a random moment.
            wait_until(
                partial(_grew_past, client, remote, at_start),
                timeout=30,
                message=f"an append in trial {trial}",
            )
            time.sleep(rng.uniform(0.0, 1.0))
            proc.kill()
            time.sleep(rng.uniform(0.0, 0.5))
            proc.start()
            grower.join()
            local = read_b2nd(path)
            wait_until(
                partial(_has_shape, client, remote, local.shape),
                timeout=30,
                message=f"remote shape {local.shape} in trial {trial}",
            )
            assert np.array_equal(client.fetch(remote), local), f"trial {trial}"
        assert remote_files(client, remote_dir) == ["frames.b2nd"]  # no temporary left
