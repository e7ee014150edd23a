"""Helpers for the daemon tests: manifests in tmp_path, one-shot passes, a running daemon.

Every test gets its own local folder, remote folder and state dir, so tests never see
each other's files or state.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
import tomli_w
from helpers.arrays import grow_b2nd, write_b2nd
from helpers.waiting import wait_until

from cat2sync import Client
from cat2sync.daemon import Daemon
from cat2sync.errors import NotFound
from cat2sync.events import Event, EventKind
from cat2sync.manifest import Manifest, load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE

SETTLE = "0.2s"
REPO = Path(__file__).resolve().parents[2]

# alice, created by the session's server fixture; the helpers the daemon tests share
__all__ = ["ALICE", "grow_b2nd", "wait_until", "write_b2nd"]

MakeManifest = Callable[..., Manifest]


# -- waiting -------------------------------------------------------------------


# -- manifests -----------------------------------------------------------------


def write_manifest(
    path: Path,
    *,
    url: str,
    username: str,
    password: str,
    uploads: list[dict[str, Any]],
    daemon: dict[str, Any] | None = None,
) -> Path:
    doc: dict[str, Any] = {
        "daemon": {"state_dir": "state", **(daemon or {})},
        "server": {"url": url, "username": username, "password": password},
        "upload": uploads,
    }
    path.write_text(tomli_w.dumps(doc))
    return path


@pytest.fixture
def make_manifest(
    tmp_path: Path, server: LocalServer, remote_dir: str, data_dir: Path
) -> MakeManifest:
    """Write ``tmp_path/<name>.toml`` (one upload rule named "up": ``data_dir`` ->
    ``remote_dir`` on the session server, as alice; state in ``tmp_path/state``) and
    return it loaded.

    Keyword arguments are upload-rule keys (``settle`` defaults to 0.2 s); ``daemon``
    adds ``[daemon]`` keys; ``url``/``username``/``password`` select another server.
    """

    def make(
        *,
        daemon: dict[str, Any] | None = None,
        url: str | None = None,
        username: str = ALICE[0],
        password: str = ALICE[1],
        name: str = "manifest",
        **rule: Any,
    ) -> Manifest:
        upload = {
            "name": "up",
            "local": str(data_dir),
            "remote": remote_dir,
            "settle": SETTLE,
            **rule,
        }
        path = write_manifest(
            tmp_path / f"{name}.toml",
            url=url or server.url,
            username=username,
            password=password,
            uploads=[upload],
            daemon=daemon,
        )
        return load_manifest(path)

    return make


# -- running the daemon ----------------------------------------------------------


@dataclass
class Pass:
    """What one ``Daemon.once()`` did."""

    failures: int
    events: list[Event]
    bytes_sent: int
    requests: int

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def run_once(manifest: Manifest, prepare: Callable[[Daemon], None] | None = None) -> Pass:
    """One full pass with a fresh daemon (closed afterwards); ``prepare`` sees it first."""
    events: list[Event] = []
    daemon = Daemon(manifest, emit=events.append)
    try:
        if prepare is not None:
            prepare(daemon)
        failures = daemon.once()
        stats = daemon.clients["default"].stats
        return Pass(
            failures=failures, events=events, bytes_sent=stats.bytes_sent, requests=stats.requests
        )
    finally:
        daemon.close()


class Running:
    """A daemon built here and started by :func:`running`; events are collected as
    they come (``on_event`` sees each first, in the daemon's thread)."""

    def __init__(self, manifest: Manifest, on_event: Callable[[Event], None] | None) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.on_event = on_event
        self.daemon = Daemon(manifest, emit=self.emit)

    def emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)
        with self.lock:
            self.events.append(event)

    def of(self, kind: EventKind, path: str | None = None) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.kind == kind and (path is None or e.path == path)]

    @property
    def client(self) -> Client:
        return self.daemon.clients["default"]

    def settled(self) -> bool:
        """Nothing queued, running or pending (a file that failed stays pending)."""
        return self.daemon.queue.idle() and not self.daemon.state.pending()

    def describe(self) -> str:
        """Where the daemon is, for failure messages."""
        with self.lock:
            kinds = Counter(e.kind.value for e in self.events)
            errors = [e.message for e in self.events if e.kind == EventKind.FAILED][-3:]
        pending = self.daemon.state.pending()
        return (
            f"events {dict(kinds)}, queue {len(self.daemon.queue)}, "
            f"pending {len(pending)} {[(p.relpath, p.attempts) for p in pending[:5]]}, "
            f"last errors {errors}"
        )


@contextlib.contextmanager
def running(
    manifest: Manifest,
    on_event: Callable[[Event], None] | None = None,
) -> Iterator[Running]:
    """``Daemon.start()`` (initial reconcile, watcher armed); always closed afterwards."""
    run = Running(manifest, on_event)
    try:
        run.daemon.start()
        yield run
    finally:
        run.daemon.close()


# -- local and remote data -------------------------------------------------------


def local_array(path: Path) -> np.ndarray:
    arr = blosc2.open(str(path), mode="r")
    return np.asarray(arr[:])


def remote_files(client: Client, remote: str) -> list[str]:
    """The remote listing below ``remote`` (the client drops the server's sidecars)."""
    return sorted(client.get_list(remote))


def remote_bytes(client: Client, remote: str) -> bytes:
    """The original bytes of a remote regular file."""
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "file"
        client.download_to(remote, dest)
        return dest.read_bytes()


def remote_shape(client: Client, remote: str) -> tuple[int, ...] | None:
    try:
        info, _ = client.stat(remote)
    except NotFound:
        return None
    shape = info.get("shape")
    return tuple(shape) if shape else None


# -- the CLI ---------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    env.pop("NOTIFY_SOCKET", None)
    return env


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cat2sync", *args]
