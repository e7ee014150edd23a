"""Helpers for the mirror-side end-to-end tests: a manifest per test, a daemon around it.

Everything runs against the session's real Caterva2 server (``server``, from
:mod:`cat2sync.testing`) as alice; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blosc2
import httpx
import numpy as np
import pytest
import tomli_w

from cat2sync import Client
from cat2sync.daemon import Daemon
from cat2sync.events import Event
from cat2sync.manifest import load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE

RULE = "mirror"  # the name of the subscription most tests use


def write_manifest(
    path: Path,
    server: LocalServer,
    *,
    subscribe: Sequence[Mapping[str, Any]] = (),
    upload: Sequence[Mapping[str, Any]] = (),
    lazyexpr: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write a manifest logging in as alice on the session server; returns its path."""
    doc: dict[str, Any] = {
        "daemon": {"state_dir": str(path.parent / "state")},
        "server": {"url": server.url, "username": ALICE[0], "password": ALICE[1]},
    }
    for key, rules in (("subscribe", subscribe), ("upload", upload), ("lazyexpr", lazyexpr)):
        if rules:
            doc[key] = [dict(rule) for rule in rules]
    # Atomically, as a careful editor would: the daemon polls the file while it runs.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(tomli_w.dumps(doc))
    tmp.replace(path)
    return path


def subscribe_rule(remote: str, local: Path, name: str = RULE, **keys: Any) -> dict[str, Any]:
    """A ``[[subscribe]]`` table; ``every`` is long so that only explicit passes run."""
    return {"name": name, "root": remote, "local": str(local), "every": "1h", **keys}


@dataclass
class Harness:
    """A daemon built from a manifest, with the events it emitted."""

    daemon: Daemon
    events: list[Event] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return self.daemon.clients["default"]

    @property
    def received(self) -> int:
        return self.client.stats.bytes_received

    def mirror_pass(self, rule: str = RULE) -> list[Event]:
        """One subscription pass; returns the events it emitted."""
        start = len(self.events)
        self.daemon.mirror_pass(rule)
        return self.events[start:]


@contextlib.contextmanager
def open_daemon(manifest: Path) -> Iterator[Harness]:
    """A :class:`Daemon` for ``manifest`` collecting its events; always closed."""
    events: list[Event] = []
    daemon = Daemon(load_manifest(manifest), emit=events.append)
    try:
        yield Harness(daemon, events)
    finally:
        daemon.close()


@pytest.fixture
def subscription(
    tmp_path: Path,
    server: LocalServer,
    remote_dir: str,
) -> Callable[..., Path]:
    """Write a manifest with one subscription of ``remote_dir`` into ``tmp_path/mirror``."""

    def make(**keys: Any) -> Path:
        rule = subscribe_rule(remote_dir, tmp_path / "mirror", **keys)
        return write_manifest(tmp_path / "cat2sync.toml", server, subscribe=[rule])

    return make


@pytest.fixture
def mirror_dir(tmp_path: Path) -> Path:
    return tmp_path / "mirror"


# -- remote content ------------------------------------------------------------


def put_array(client: Client, local: Path, remote: str, array: Any, **kwargs: Any) -> Path:
    """Save ``array`` as the ``.b2nd`` file ``local`` and upload it to ``remote``."""
    local.parent.mkdir(parents=True, exist_ok=True)
    blosc2.asarray(np.asarray(array), urlpath=str(local), mode="w", **kwargs)
    client.upload(local, remote)
    return local


def put_bytes(client: Client, local: Path, remote: str, data: bytes) -> Path:
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    client.upload(local, remote)
    return local


def raw_upload(server: LocalServer, folder: str, files: Mapping[str, bytes]) -> list[str]:
    """Upload under names the client refuses to send (the server appends the multipart
    file name to an existing folder without checking it); returns the server's paths."""
    paths = []
    with httpx.Client(base_url=server.url) as http:
        http.post(
            "/auth/jwt/login",
            data={"username": ALICE[0], "password": ALICE[1]},
        ).raise_for_status()
        for filename, data in files.items():
            resp = http.post(f"/api/upload/{folder}/", files={"file": (filename, data)})
            resp.raise_for_status()
            paths.append(resp.json())
    return paths


def files_below(folder: Path) -> dict[str, Path]:
    """Every file below ``folder`` (no folders), by relative POSIX path."""
    return {
        p.relative_to(folder).as_posix(): p
        for p in folder.rglob("*")
        if p.is_file() or p.is_symlink()
    }


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
