"""The embedded default: a local Caterva2 server (:class:`~cat2sync.server.LocalServer`)
for each ``[server]`` of a manifest that names no URL, kept in the state folder with a
generated password, so that a manifest works on a fresh machine with no server at all.

A running daemon writes its embedded server's URL beside the password, so that another
command (``cat2sync verify``) can reach it instead of starting a second server.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from .client import Client
from .errors import ServerStartError
from .manifest import ServerConfig
from .server import LocalServer

__all__ = ["EMBEDDED_USER", "EmbeddedServers"]

log = logging.getLogger("cat2sync")

EMBEDDED_USER = "cat2sync@example.com"  # the server wants a dotted domain

Observer = Callable[[str, str], None]  # a client's request observer (RequestObserver)


class EmbeddedServers:
    """The embedded servers of one state folder, started on first use.

    :param start: start them (the daemon, which holds the state folder's lock); else
        reach the ones a running daemon started.
    """

    def __init__(self, state_dir: Path, *, start: bool = True) -> None:
        self._home = state_dir / "server"
        self._start = start
        self._servers: dict[str, LocalServer] = {}

    def connect(
        self, cfg: ServerConfig, *, observe: Callable[[str], Observer] | None = None
    ) -> Client:
        """A client for ``cfg``: its URL, or its embedded server.

        :param observe: makes the client's request observer, given the server's URL.
        """
        url, username, password = cfg.url, cfg.username, cfg.password
        if url is None:
            url, username, password = self.login(cfg)
        auth = (username, password) if username and password is not None else None
        observer = observe(url) if observe is not None else None
        return Client(url, auth, timeout=cfg.timeout, verify=cfg.verify, observer=observer)

    def login(self, cfg: ServerConfig) -> tuple[str, str, str]:
        """Start ``cfg``'s server if it is not running; returns its URL and login."""
        home = self._home / cfg.name
        username = cfg.username or EMBEDDED_USER
        password = cfg.password or _password(home)
        if not self._start:
            return _running_url(home), username, password
        server = self._servers.get(cfg.name)
        if server is None:
            server = LocalServer(home, superuser=(username, password)).start()
            self._servers[cfg.name] = server
            (home / "url").write_text(server.url)
        log.info(
            "embedded Caterva2 server %r at %s (log in as %s; password in %s)",
            cfg.name,
            server.url,
            username,
            home / "password",
        )
        return server.url, username, password

    def stop(self) -> None:
        for name, server in self._servers.items():
            server.stop()
            (self._home / name / "url").unlink(missing_ok=True)
        self._servers.clear()


def _running_url(home: Path) -> str:
    try:
        return (home / "url").read_text().strip()
    except FileNotFoundError:
        raise ServerStartError(
            f"the daemon's embedded server in {home} is not running (no {home / 'url'})"
        ) from None


def _password(home: Path) -> str:
    """The embedded server's password, generated once and kept owner-only."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / "password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(16))
    return path.read_text().strip()
