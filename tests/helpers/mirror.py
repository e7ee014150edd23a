"""The mirror side: subscriptions, a daemon whose passes a test runs itself, remote sources.

Everything runs against the session's real Caterva2 server as alice; nothing is mocked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from cat2sync import Client
from cat2sync.daemon import Daemon
from cat2sync.events import Event
from cat2sync.manifest import load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, write_b2nd, write_manifest

RULE = "mirror"  # the name of the subscription most tests use


def alice_manifest(path: Path, server: LocalServer, **tables: Any) -> Path:
    """:func:`~cat2sync.testing.write_manifest` logging in as alice on ``server``;
    ``tables``: ``subscribe=[...]``, ``upload=[...]``, ``lazyexpr=[...]``."""
    return write_manifest(path, url=server.url, username=ALICE[0], password=ALICE[1], **tables)


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
    """A :class:`Daemon` for ``manifest`` (not started) collecting its events; always closed."""
    events: list[Event] = []
    daemon = Daemon(load_manifest(manifest), emit=events.append)
    try:
        yield Harness(daemon, events)
    finally:
        daemon.close()


# -- remote content ------------------------------------------------------------


def put_array(client: Client, local: Path, remote: str, array: Any, **layout: Any) -> Path:
    """Save ``array`` as the ``.b2nd`` file ``local`` and upload it to ``remote``."""
    write_b2nd(local, np.asarray(array), **layout)
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
