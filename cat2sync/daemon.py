"""The daemon's lifecycle: wires manifest, state, clients, engines, watcher and scheduler.

``Daemon.run()`` is ``cat2sync run``: reconcile every rule, arm the watches, then react
to changes until stopped. ``Daemon.once()`` is ``cat2sync once``: one full pass, then
return the number of failures.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Hashable
from pathlib import Path

from .client import Client
from .engine.queue import DueQueue
from .engine.upload import FileChanged, NotReady, UploadEngine
from .errors import Cat2Error
from .events import Event, EventKind, EventSink
from .manifest import Manifest, ServerConfig, UploadRule
from .scheduler import Scheduler
from .server import LocalServer
from .state import StateStore
from .watcher import Batch, Change, Watcher

__all__ = ["Daemon"]

log = logging.getLogger("cat2sync")

_NOT_READY_REPORT_AFTER = 5  # attempts before a file that does not open is reported
_ONCE_NOT_READY_LIMIT = 3
_RETRY_BASE = 1.0
_DELETION_DEBOUNCE = 1.0
_EMBEDDED_USER = "cat2sync@example.com"  # the server wants a dotted domain


def _notify_systemd(state: str) -> None:
    """Tell systemd (``Type=notify``) about our state; a no-op elsewhere."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(state.encode(), address)


class Daemon:
    """One manifest at work.

    :param emit: also receives every :class:`Event` (the CLI prints them, tests collect).
    """

    def __init__(self, manifest: Manifest, *, emit: EventSink | None = None) -> None:
        self.manifest = manifest
        self._extra_emit = emit
        self.state = StateStore(manifest.daemon.state_dir)
        self._servers: list[LocalServer] = []
        self.clients: dict[str, Client] = {}
        self.uploads: dict[str, UploadEngine] = {}
        self.failures = 0
        self._once = False
        self._stopping = threading.Event()
        self.scheduler = Scheduler()
        workers = max([r.concurrency for r in manifest.uploads] or [1])
        self.queue = DueQueue(self._handle, workers=workers)
        self.watcher: Watcher | None = None
        try:
            self._connect_all()
            for rule in manifest.uploads:
                self.uploads[rule.name] = UploadEngine(
                    rule, self.clients[rule.server], self.state, self.emit)
        except BaseException:
            self.close()
            raise

    # -- connections -----------------------------------------------------------

    def _connect_all(self) -> None:
        used = {r.server for r in self.manifest.uploads} | \
               {r.server for r in self.manifest.subscriptions} | \
               {r.server for r in self.manifest.lazyexprs}
        for name in sorted(used):
            self.clients[name] = self._connect(self.manifest.servers[name])

    def _connect(self, cfg: ServerConfig) -> Client:
        url, username, password = cfg.url, cfg.username, cfg.password
        if url is None:
            url, username, password = self._start_embedded(cfg)
        auth = (username, password) if username and password is not None else None
        return Client(url, auth, timeout=cfg.timeout, verify=cfg.verify)

    def _start_embedded(self, cfg: ServerConfig) -> tuple[str, str, str]:
        """Start a local Caterva2 server kept in the state folder; returns url and login."""
        home = self.manifest.daemon.state_dir / "server" / cfg.name
        username = cfg.username or _EMBEDDED_USER
        password = cfg.password or self._embedded_password(home)
        server = LocalServer(home, superuser=(username, password)).start()
        self._servers.append(server)
        log.info("embedded Caterva2 server for %r at %s (user %s; password in %s)",
                 cfg.name, server.url, username, home / "password")
        return server.url, username, password

    @staticmethod
    def _embedded_password(home: Path) -> str:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = home / "password"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(16))
        return path.read_text().strip()

    @property
    def server_urls(self) -> dict[str, str]:
        return {name: c.urlbase for name, c in self.clients.items()}

    # -- events ----------------------------------------------------------------

    def emit(self, event: Event) -> None:
        level = logging.WARNING if event.kind in (EventKind.FAILED, EventKind.SKIPPED) \
            else logging.INFO
        log.log(level, "%s: %s", event.rule, event.describe())
        if self._extra_emit is not None:
            self._extra_emit(event)

    # -- passes ----------------------------------------------------------------

    def reconcile(self, rule_name: str) -> None:
        """A full pass of an upload rule: queue what changed, apply moves and deletions."""
        engine = self.uploads[rule_name]
        started = time.time()
        error: str | None = None
        try:
            result = engine.reconcile()
            error = result.refused
            for relpath, st in result.to_send:
                self._queue_file(engine.rule, relpath, st.st_mtime)
        except Cat2Error as exc:
            error = str(exc)
            log.warning("%s: pass failed: %s", rule_name, exc)
        self.state.record_pass(rule_name, started=started, error=error)

    def _queue_file(self, rule: UploadRule, relpath: str, mtime: float) -> None:
        self.state.add_pending(rule.name, relpath)
        self.queue.touch((rule.name, relpath), max(time.time(), mtime + rule.settle))

    def _handle(self, key: Hashable) -> float | None:
        """Run one queued file; returns when to try again, or None when done."""
        assert isinstance(key, tuple)
        rule_name, relpath = key
        engine = self.uploads.get(rule_name)
        if engine is None:
            return None  # the rule left the manifest
        rule = engine.rule
        path = engine.local_for(relpath)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            self.state.done_pending(rule_name, relpath)
            return None
        settled_at = mtime + rule.settle
        if settled_at > time.time():
            return settled_at  # still being written
        try:
            event = engine.sync_file(relpath)
        except FileChanged:
            return time.time() + rule.settle
        except NotReady as exc:
            return self._not_ready(rule, relpath, str(exc))
        except Exception as exc:  # server, network, local I/O, damaged data: retry later
            return self._failed(rule, relpath, exc)
        if event is not None:
            self.emit(event)
        return None

    def _not_ready(self, rule: UploadRule, relpath: str, reason: str) -> float | None:
        attempts = self.state.fail_pending(rule.name, relpath, reason, 0)
        if attempts == _NOT_READY_REPORT_AFTER or (self._once and
                                                    attempts >= _ONCE_NOT_READY_LIMIT):
            self.emit(Event(kind=EventKind.SKIPPED, rule=rule.name, path=relpath,
                            message=reason))
        if self._once and attempts >= _ONCE_NOT_READY_LIMIT:
            self.failures += 1
            return None
        return time.time() + self._backoff(attempts, base=max(rule.settle, 0.5))

    def _failed(self, rule: UploadRule, relpath: str, exc: Exception) -> float | None:
        message = str(exc) or exc.__class__.__name__
        if not isinstance(exc, Cat2Error | OSError):
            log.debug("%s: %s", relpath, message, exc_info=exc)
            message = f"{exc.__class__.__name__}: {message}"
        attempts = self.state.fail_pending(rule.name, relpath, message, 0)
        delay = self._backoff(attempts)
        self.emit(Event(kind=EventKind.FAILED, rule=rule.name, path=relpath,
                        remote=f"{rule.remote}/{relpath}", message=message))
        if self._once:
            self.failures += 1
            return None
        return time.time() + delay

    def _backoff(self, attempts: int, base: float = _RETRY_BASE) -> float:
        """Exponential backoff with jitter, capped by ``daemon.retry_max``."""
        delay = min(self.manifest.daemon.retry_max, base * 2 ** min(attempts - 1, 20))
        return float(delay * random.uniform(0.5, 1.0))

    # -- watching --------------------------------------------------------------

    def _on_changes(self, batch: Batch) -> None:
        for change, raw in batch:
            path = Path(raw)
            for engine in self.uploads.values():
                relpath = engine.relpath_of(path)
                if relpath is None:
                    continue
                if change == Change.deleted:
                    # A deletion may be half a rename: decide in a full pass, shortly.
                    self.scheduler.later(f"vanished:{engine.rule.name}", _DELETION_DEBOUNCE,
                                         lambda name=engine.rule.name: self.reconcile(name))
                elif engine.wants(relpath) and path.is_file():
                    self._queue_file(engine.rule, relpath, time.time())

    def _on_watch_failure(self, reason: str) -> None:
        for name in self.uploads:
            self.scheduler.every(f"poll:{name}", 5.0, lambda n=name: self.reconcile(n))

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Reconcile every rule, arm the watches and the periodic jobs."""
        for engine in self.uploads.values():
            engine.cleanup_journal()
        self.queue.start()
        self.watcher = Watcher([e.rule.local for e in self.uploads.values()],
                               self._on_changes, self._on_watch_failure)
        self.watcher.start()  # before the first pass, so no change falls between the two
        for name in self.uploads:
            self.reconcile(name)
            self.scheduler.every(f"rescan:{name}", self.manifest.daemon.rescan,
                                 lambda n=name: self.reconcile(n))
        self.scheduler.start()
        log.info("ready: %d upload rule(s) watching %s; server %s",
                 len(self.uploads), ", ".join(str(e.rule.local) for e in self.uploads.values())
                 or "nothing", ", ".join(self.server_urls.values()) or "none")
        _notify_systemd("READY=1")

    def run(self) -> None:
        """Start and keep going until :meth:`stop` (SIGINT/SIGTERM in the CLI)."""
        self.start()
        self._stopping.wait()

    def stop(self) -> None:
        self._stopping.set()

    def once(self) -> int:
        """One full pass of every rule; returns the number of files that failed."""
        self._once = True
        for engine in self.uploads.values():
            engine.cleanup_journal()
        self.queue.start()
        for name in self.uploads:
            self.reconcile(name)
        self.queue.wait_idle()
        return self.failures

    def close(self) -> None:
        """Stop everything and persist state; safe to call more than once."""
        _notify_systemd("STOPPING=1")
        if self.watcher is not None:
            self.watcher.stop()
        self.scheduler.shutdown()
        self.queue.stop()
        for client in self.clients.values():
            client.close()
        for server in self._servers:
            server.stop()
        self._servers.clear()
        self.state.close()
