"""The daemon against a real Caterva2 2025.8.7 server: upload, append, rename, delete,
mirror passes (first copies, an unchanged pass, growth by chunks) and a lazy expression.

The server is ``old_server`` (:mod:`cat2sync.testing`); nothing is mocked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
import tomli_w

from cat2sync import Client
from cat2sync.daemon import Daemon
from cat2sync.events import Event, EventKind
from cat2sync.manifest import load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE
from tests.helpers.remote import remote_files

FRAMES = np.arange(20 * 8, dtype="f8").reshape(20, 8)
NOTES = "".join(f"shot {i}: nominal\n" for i in range(5000)).encode()


@pytest.fixture
def alice_2025(old_server: LocalServer) -> Iterator[Client]:
    with Client(old_server.url, ALICE) as client:
        yield client


@pytest.fixture
def manifest(old_server: LocalServer, tmp_path: Path, data_dir: Path, remote_dir: str) -> Path:
    """Upload ``data_dir`` to ``remote_dir``, mirror it back to ``tmp_path/mirror``, and
    keep ``<remote_dir>-derived/doubled.b2nd`` = 2 * frames on the server."""
    doc: dict[str, Any] = {
        "daemon": {"state_dir": str(tmp_path / "state")},
        "server": {"url": old_server.url, "username": ALICE[0], "password": ALICE[1]},
        "upload": [
            {
                "name": "up",
                "local": str(data_dir),
                "remote": remote_dir,
                "settle": "0.2s",
                "delete": True,
                "max_delete": 1.0,
            }
        ],
        "subscribe": [
            {
                "name": "mirror",
                "root": remote_dir,
                "local": str(tmp_path / "mirror"),
                "every": "1h",
                "delete": True,
                "max_delete": 1.0,
            }
        ],
        "lazyexpr": [
            {
                "name": "doubled",
                "expression": "f * 2",
                "operands": {"f": f"{remote_dir}/frames.b2nd"},
                "path": f"{remote_dir}-derived/doubled.b2nd",
            }
        ],
    }
    path = tmp_path / "cat2sync.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def run_once(manifest: Path, *, full: bool = False) -> list[Event]:
    """``cat2sync once`` with a fresh daemon; returns its events and checks none failed."""
    events: list[Event] = []
    daemon = Daemon(load_manifest(manifest), emit=events.append)
    try:
        failures = daemon.once(full=full)
    finally:
        daemon.close()
    assert failures == 0, [e.message for e in events if e.kind == EventKind.FAILED]
    return events


def kinds(events: list[Event], rule: str) -> dict[str, EventKind]:
    return {e.path: e.kind for e in events if e.rule == rule}


def grow(path: Path, rows: np.ndarray) -> None:
    """Append rows to a local ``.b2nd`` in place, as an instrument would."""
    arr = blosc2.open(str(path), mode="a")
    start = arr.shape[0]
    arr.resize((start + rows.shape[0], *arr.shape[1:]))
    arr[start:] = rows
    del arr


def test_upload_append_and_mirror_against_a_2025_server(
    manifest: Path,
    data_dir: Path,
    tmp_path: Path,
    remote_dir: str,
    alice_2025: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cat2sync.client")
    frames = data_dir / "frames.b2nd"
    blosc2.asarray(FRAMES, urlpath=str(frames), mode="w", chunks=(5, 8), blocks=(5, 8))
    (data_dir / "notes.txt").write_bytes(NOTES)
    (data_dir / "run.json").write_text('{"run": 7}')
    mirror = tmp_path / "mirror"
    derived = f"{remote_dir}-derived/doubled.b2nd"

    # Whole uploads, first copies in the mirror, the expression computed.
    first = run_once(manifest)
    shipped = ["frames.b2nd", "notes.txt", "run.json"]
    assert kinds(first, "up") == dict.fromkeys(shipped, EventKind.UPLOADED)
    assert kinds(first, "mirror") == dict.fromkeys(shipped, EventKind.DOWNLOADED)
    assert [e.kind for e in first if e.rule == "lazyexpr:doubled"] == [EventKind.COMPUTED]
    assert (mirror / "frames.b2nd").read_bytes() == frames.read_bytes()
    assert (mirror / "notes.txt").read_bytes() == NOTES
    np.testing.assert_array_equal(alice_2025.fetch(derived), FRAMES * 2)
    notes = [r.getMessage() for r in caplog.records if r.name == "cat2sync.client"]
    assert notes and len(notes) == len(set(notes)), notes  # each fallback said once

    # Nothing changed: the server's ETags say so, nothing is sent or fetched.
    again = run_once(manifest)
    assert kinds(again, "up") == kinds(again, "mirror") == {}

    # The instrument adds rows: only they go up, and only the new chunks come back.
    # (A full pass, as `once --full`: following the journal, a dataset this small whose
    # growth spans three chunks is fetched whole, in one request.)
    more = np.full((10, 8), -1.0)
    grow(frames, more)
    grown = run_once(manifest, full=True)
    [appended] = [e for e in grown if e.rule == "up"]
    assert (appended.kind, appended.rows) == (EventKind.APPENDED, 10)
    [extended] = [e for e in grown if e.rule == "mirror"]
    assert (extended.kind, extended.rows) == (EventKind.DOWNLOADED, 10)
    assert extended.message == "new rows only"
    np.testing.assert_array_equal(
        blosc2.open(str(mirror / "frames.b2nd"))[:], np.concatenate([FRAMES, more])
    )
    np.testing.assert_array_equal(alice_2025.fetch(derived), np.concatenate([FRAMES, more]) * 2)

    # A rename becomes a server-side move; a deletion removes the remote, then the mirror's.
    (data_dir / "notes.txt").rename(data_dir / "log.txt")
    (data_dir / "run.json").unlink()
    changed = run_once(manifest)
    assert kinds(changed, "up") == {"log.txt": "moved", "run.json": "removed"}
    # The mirror follows the upload rule's journal: the move is a local rename there too.
    assert kinds(changed, "mirror") == {"log.txt": "moved", "run.json": "deleted"}
    assert sorted(p.name for p in mirror.iterdir()) == ["frames.b2nd", "log.txt"]
    assert remote_files(alice_2025, remote_dir) == ["frames.b2nd", "log.txt"]
    assert (mirror / "log.txt").read_bytes() == NOTES
