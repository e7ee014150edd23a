"""The daemon's lifecycle: wires manifest, state, clients, engines, watcher and scheduler.

``Daemon.run()`` is ``cat2sync run``: reconcile every rule, arm the watches and the
periodic jobs, then react to changes (and to edits of the manifest) until stopped.
``Daemon.once()`` is ``cat2sync once``: one full pass of every rule, then return the
number of failures.
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
from functools import partial
from pathlib import Path
from typing import TypeVar

from .client import Client
from .engine.lazy import LazyExprEngine
from .engine.mirror import MirrorEngine
from .engine.queue import DueQueue
from .engine.upload import UploadEngine
from .errors import Cat2Error, FileChanged, ManifestError, NotReady, PluginError
from .events import Event, EventKind, EventSink
from .manifest import Manifest, ServerConfig, UploadRule, load_manifest
from .plugins.manager import Plugins
from .progress import Snapshot
from .scheduler import Scheduler
from .server import LocalServer
from .state import StateStore
from .watcher import Batch, Change, Watcher

__all__ = ["Daemon"]

log = logging.getLogger("cat2sync")

_NOT_READY_REPORT_AFTER = 5  # attempts before a file that does not open is reported
_ONCE_NOT_READY_LIMIT = 3
_RETRY_BASE = 1.0
_DELETION_DEBOUNCE = 1.0  # a deletion may be half of a rename: decide a moment later
_LAZY_DEBOUNCE = 0.5  # operands often change in bursts
_MANIFEST_POLL = 1.0
_EMBEDDED_USER = "cat2sync@example.com"  # the server wants a dotted domain
_CHANGED_KINDS = frozenset({EventKind.UPLOADED, EventKind.APPENDED, EventKind.MOVED})


def _notify_systemd(state: str) -> None:
    """Tell systemd (``Type=notify``) about our state; a no-op elsewhere."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(state.encode(), address)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None  # gone again: a pass decides


def _file_signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


_Engine = TypeVar("_Engine", UploadEngine, MirrorEngine, LazyExprEngine)


def _unchanged(engine: _Engine | None, rule: object) -> _Engine | None:
    """The running engine of a rule that did not change (so that its work carries on)."""
    return engine if engine is not None and engine.rule == rule else None


class Daemon:
    """One manifest at work.

    :param plugins: the plugins to use (default: the built-in ones only; the CLI loads
        the installed ones too).
    :param emit: also receives every :class:`Event` (tests collect them).
    """

    def __init__(
        self, manifest: Manifest, *, plugins: Plugins | None = None, emit: EventSink | None = None
    ) -> None:
        self.manifest = manifest
        # Library and test use: built-in plugins only; the CLI passes installed ones too.
        self.plugins = plugins if plugins is not None else Plugins(entry_points=False)
        self._extra_emit = emit
        self.state = StateStore(manifest.daemon.state_dir)
        self._servers: dict[str, LocalServer] = {}
        self._server_cfgs: dict[str, ServerConfig] = {}
        self.clients: dict[str, Client] = {}
        self.uploads: dict[str, UploadEngine] = {}
        self.mirrors: dict[str, MirrorEngine] = {}
        self.lazy: dict[str, LazyExprEngine] = {}
        self.failures = 0
        self._queued: set[Hashable] = set()  # for the progress display
        self._done = 0
        self._active: dict[Hashable, str] = {}
        self._once_attempts: dict[Hashable, int] = {}
        self._once = False
        self._started = False
        self._stopping = threading.Event()
        self._reload_lock = threading.Lock()
        self._manifest_sig = _file_signature(manifest.path)
        self.scheduler = Scheduler()
        self.queue = DueQueue(
            self._handle, workers=max([r.concurrency for r in manifest.uploads] or [1])
        )
        self.watcher: Watcher | None = None
        try:
            self._apply(manifest)
        except BaseException:
            self.close()
            raise

    # -- connections -----------------------------------------------------------

    def _apply(self, manifest: Manifest) -> None:
        """Build (or keep) clients and engines for ``manifest``'s rules."""
        self.plugins.check_manifest(manifest)
        self.plugins.configure(manifest)
        used = (
            {r.server for r in manifest.uploads}
            | {r.server for r in manifest.subscriptions}
            | {r.server for r in manifest.lazyexprs}
        )
        for name in sorted(used):
            cfg = manifest.servers[name]
            if self._server_cfgs.get(name) != cfg:
                old = self.clients.pop(name, None)
                if old is not None:
                    old.close()
                self.clients[name] = self._connect(cfg)
                self._server_cfgs[name] = cfg
        self.uploads = {
            r.name: _unchanged(self.uploads.get(r.name), r)
            or UploadEngine(r, self.clients[r.server], self.state, self.emit, self.plugins)
            for r in manifest.uploads
        }
        self.mirrors = {
            r.name: _unchanged(self.mirrors.get(r.name), r)
            or MirrorEngine(r, self.clients[r.server], self.state, self.emit, self.plugins)
            for r in manifest.subscriptions
        }
        self.lazy = {
            r.name: _unchanged(self.lazy.get(r.name), r)
            or LazyExprEngine(r, self.clients[r.server], self.emit)
            for r in manifest.lazyexprs
        }
        self.manifest = manifest

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
        server = self._servers.get(cfg.name)
        if server is None:
            server = LocalServer(home, superuser=(username, password)).start()
            self._servers[cfg.name] = server
        log.info(
            "embedded Caterva2 server %r at %s (log in as %s; password in %s)",
            cfg.name,
            server.url,
            username,
            home / "password",
        )
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
        level = (
            logging.WARNING if event.kind in (EventKind.FAILED, EventKind.SKIPPED) else logging.INFO
        )
        log.log(level, "%s: %s", event.rule, event.describe())
        self.plugins.event(event)
        if self._extra_emit is not None:
            self._extra_emit(event)
        # After the listeners, so that they see a change before what it causes.
        if event.kind in _CHANGED_KINDS and event.remote:
            self._operand_changed(event.remote)

    def _operand_changed(self, remote: str) -> None:
        if self._once:
            return  # once() computes every expression at its end anyway
        for name, engine in self.lazy.items():
            if engine.rule.refresh == "on-change" and engine.depends_on(remote):
                if self._started:
                    self.scheduler.later(
                        f"lazy-now:{name}", _LAZY_DEBOUNCE, partial(self._refresh_lazy, engine)
                    )
                else:
                    self._refresh_lazy(engine)

    def _refresh_lazy(self, engine: LazyExprEngine, attempt: int = 1) -> None:
        """Compute an expression; a network failure is retried with backoff (a bad
        expression waits for the next change of an operand)."""
        if engine.refresh() or not engine.transient or self._once or self._stopping.is_set():
            return
        self.scheduler.later(
            f"lazy-now:{engine.rule.name}",
            self._backoff(attempt),
            partial(self._refresh_lazy, engine, attempt + 1),
        )

    # -- upload passes ---------------------------------------------------------

    def reconcile(self, rule_name: str) -> None:
        """A full pass of an upload rule: queue what changed, apply moves and deletions."""
        engine = self.uploads.get(rule_name)
        if engine is None:
            return
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
        self._queued.add((rule.name, relpath))
        self.queue.touch((rule.name, relpath), max(time.time(), mtime + rule.settle))

    def snapshot(self) -> Snapshot:
        """Counters for the progress display of ``cat2sync once``."""
        stats = [c.stats for c in self.clients.values()]
        return Snapshot(
            done=self._done,
            queued=len(self._queued),
            bytes_sent=sum(s.bytes_sent for s in stats),
            bytes_received=sum(s.bytes_received for s in stats),
            active=tuple(self._active.values()),
        )

    def _handle(self, key: Hashable) -> float | None:
        """Run one queued file; returns when to try again, or None when done."""
        self._active[key] = str(key[1]) if isinstance(key, tuple) else str(key)
        try:
            again = self._handle_file(key)
        finally:
            del self._active[key]
        if again is None:
            self._done += 1
        return again

    def _handle_file(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        rule_name, relpath = key
        engine = self.uploads.get(rule_name)
        if engine is None:
            return None  # the rule left the manifest
        rule = engine.rule
        try:
            mtime = engine.local_for(relpath).stat().st_mtime
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
            if not engine.local_for(relpath).exists():
                # Deleted while it was being sent: nothing to send, and the next pass
                # decides about the remote copy.
                self.state.done_pending(rule_name, relpath)
                return None
            return self._failed(rule, relpath, exc)
        if event is None:
            return None
        try:
            derived = self._after_send(engine, relpath, event)
        except PluginError as exc:
            self.state.delete_shipped(rule_name, relpath)  # so that it is sent again
            return self._failed(rule, relpath, exc)
        self.emit(event)
        for lazy in derived:  # after the event, so that listeners see cause before effect
            self._refresh_lazy(lazy)
        return None

    def _after_send(
        self,
        engine: UploadEngine,
        relpath: str,
        event: Event,
    ) -> list[LazyExprEngine]:
        """Plugins' follow-up work on the server after a file was sent; returns the
        lazy expressions that plugins want computed from it."""
        if event.remote is None:
            return []
        if event.kind == EventKind.UPLOADED:
            self.plugins.uploaded(
                engine.rule, engine.local_for(relpath), event.remote, engine.client
            )
        if event.kind not in (EventKind.UPLOADED, EventKind.APPENDED) or event.rows is None:
            return []
        rec = self.state.get_shipped(engine.rule.name, relpath)
        info = {
            "shape": rec.shape if rec else None,
            "dtype": rec.dtype if rec else None,
            "rows": event.rows,
        }
        return [
            LazyExprEngine.from_request(request, engine.client, self.emit)
            for request in self.plugins.lazyexprs(engine.rule, event.remote, info)
        ]

    def _not_ready(self, rule: UploadRule, relpath: str, reason: str) -> float | None:
        attempts = self.state.fail_pending(rule.name, relpath, reason, 0)
        if self._once:  # each run gives a file its own chances (the file may be new)
            attempts = self._once_attempts[(rule.name, relpath)] = (
                self._once_attempts.get((rule.name, relpath), 0) + 1
            )
        give_up = self._once and attempts >= _ONCE_NOT_READY_LIMIT
        if attempts == _NOT_READY_REPORT_AFTER or give_up:
            self.emit(Event(kind=EventKind.SKIPPED, rule=rule.name, path=relpath, message=reason))
        if give_up:
            self.failures += 1
            return None
        return time.time() + self._backoff(attempts, base=max(rule.settle, 0.5))

    def _failed(self, rule: UploadRule, relpath: str, exc: Exception) -> float | None:
        message = str(exc) or exc.__class__.__name__
        if not isinstance(exc, Cat2Error | OSError):
            log.debug("%s: %s", relpath, message, exc_info=exc)
            message = f"{exc.__class__.__name__}: {message}"
        attempts = self.state.fail_pending(rule.name, relpath, message, 0)
        self.emit(
            Event(
                kind=EventKind.FAILED,
                rule=rule.name,
                path=relpath,
                remote=f"{rule.remote}/{relpath}",
                message=message,
            )
        )
        if self._once:
            self.failures += 1
            return None
        return time.time() + self._backoff(attempts)

    def _backoff(self, attempts: int, base: float = _RETRY_BASE) -> float:
        """Exponential backoff with jitter, capped by ``daemon.retry_max``."""
        delay = min(self.manifest.daemon.retry_max, base * 2 ** min(attempts - 1, 20))
        return float(delay * random.uniform(0.5, 1.0))

    # -- mirror passes and lazy expressions ------------------------------------

    def mirror_pass(self, rule_name: str) -> int:
        """One pass of a subscription; returns the number of entries that failed."""
        engine = self.mirrors.get(rule_name)
        if engine is None:
            return 0
        started = time.time()
        try:
            result = engine.run_pass()
        except (Cat2Error, OSError) as exc:  # server away, or the mirror folder unwritable
            log.warning("%s: pass failed: %s", rule_name, exc)
            self.state.record_pass(rule_name, started=started, error=str(exc))
            return 1
        self.state.record_pass(
            rule_name,
            started=started,
            error=result.errors[-1] if result.errors else None,
            files=result.downloaded + result.extended,
            nbytes=result.bytes,
        )
        log.info(
            "%s: pass done: %d listed, %d downloaded, %d extended, %d unchanged, "
            "%d deleted, %d skipped, %d failed",
            rule_name,
            result.listed,
            result.downloaded,
            result.extended,
            result.unchanged,
            result.deleted,
            result.skipped,
            result.failed,
        )
        for remote in result.changed_remotes:
            self._operand_changed(remote)
        return result.failed

    # -- watching --------------------------------------------------------------

    def _on_changes(self, batch: Batch) -> None:
        for change, raw in batch:
            path = Path(raw)
            for engine in list(self.uploads.values()):
                relpath = engine.relpath_of(path)
                if relpath is None:
                    continue
                if change == Change.added and path.is_dir():
                    # Files written into a new folder at once raise no event: a pass finds
                    # them.
                    self.scheduler.later(
                        f"appeared:{engine.rule.name}",
                        _DELETION_DEBOUNCE,
                        partial(self.reconcile, engine.rule.name),
                    )
                elif change == Change.deleted:
                    self.scheduler.later(
                        f"vanished:{engine.rule.name}",
                        _DELETION_DEBOUNCE,
                        partial(self.reconcile, engine.rule.name),
                    )
                elif engine.wants(relpath) and path.is_file():
                    mtime = _mtime(path)
                    if mtime is not None:  # due at the last write + settle, not at our
                        self._queue_file(engine.rule, relpath, mtime)  # hearing of it

    def _on_watch_failure(self, reason: str) -> None:
        for name in self.uploads:
            self.scheduler.every(f"poll:{name}", 5.0, partial(self.reconcile, name))

    def _watched_folders(self) -> list[Path]:
        return sorted(e.rule.local for e in self.uploads.values())

    def _arm_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = Watcher(self._watched_folders(), self._on_changes, self._on_watch_failure)
        self.watcher.start()

    def _schedule(self) -> None:
        """(Re)create the periodic jobs of the current rules."""
        keep = ("manifest", "vanished:", "appeared:", "lazy-now:", "plugin:", "poll:")
        for job_id in self.scheduler.job_ids():
            if not job_id.startswith(keep):
                self.scheduler.remove(job_id)
        for name in self.uploads:
            self.scheduler.every(
                f"rescan:{name}", self.manifest.daemon.rescan, partial(self.reconcile, name)
            )
        for name, mirror in self.mirrors.items():
            job = f"mirror:{name}"
            if mirror.rule.cron:
                self.scheduler.cron(job, mirror.rule.cron, partial(self.mirror_pass, name))
            else:
                every = mirror.rule.every or 300.0
                self.scheduler.every(job, every, partial(self.mirror_pass, name), first_in=0.1)
        for name, lazy in self.lazy.items():
            if lazy.rule.refresh == "every" and lazy.rule.every:
                self.scheduler.every(f"lazy:{name}", lazy.rule.every, lazy.refresh)

    # -- hot reload ------------------------------------------------------------

    def check_manifest(self) -> None:
        """Reload the manifest if its file changed; keep the old one if the new is bad."""
        sig = _file_signature(self.manifest.path)
        if sig is None or sig == self._manifest_sig:
            return
        self._manifest_sig = sig
        try:
            new = load_manifest(
                self.manifest.path, plugin_settings=self.plugins.declared_settings()
            )
        except ManifestError as exc:
            log.error("manifest not reloaded, the previous one keeps running: %s", exc)
            return
        self.reload(new)

    def reload(self, new: Manifest) -> None:
        """Apply ``new``: rules added, removed or changed, jobs rescheduled, watches moved."""
        with self._reload_lock:
            if new == self.manifest:
                return
            old_folders = self._watched_folders()
            old_lazy = dict(self.lazy)
            try:
                self._apply(new)
            except Cat2Error as exc:
                log.error("manifest not reloaded, the previous one keeps running: %s", exc)
                return
            if self._watched_folders() != old_folders:
                self._arm_watcher()
            self._schedule()
            # Every rule: a change made while the watches moved raised no event.
            for name in self.uploads:
                self.reconcile(name)
            for name, lazy in self.lazy.items():
                if old_lazy.get(name) is not lazy:
                    self._refresh_lazy(lazy)
            log.info(
                "manifest reloaded: %d upload, %d subscribe, %d lazyexpr rules",
                len(self.uploads),
                len(self.mirrors),
                len(self.lazy),
            )

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Reconcile every rule, arm the watches and the periodic jobs."""
        for engine in self.uploads.values():
            engine.cleanup_journal()
        self.queue.start()
        self._arm_watcher()  # before the first pass, so no change falls between the two
        for name in self.uploads:
            self.reconcile(name)
        for lazy in self.lazy.values():
            self._refresh_lazy(lazy)
        self._schedule()
        for job_id, when, func in self.plugins.jobs():
            if isinstance(when, str):
                self.scheduler.cron(f"plugin:{job_id}", when, func)
            else:
                self.scheduler.every(f"plugin:{job_id}", float(when), func)
        self.scheduler.every("manifest", _MANIFEST_POLL, self.check_manifest)
        self.scheduler.start()
        self._started = True
        log.info(
            "ready: watching %s; mirroring %s; server %s",
            ", ".join(str(e.rule.local) for e in self.uploads.values()) or "nothing",
            ", ".join(m.rule.remote for m in self.mirrors.values()) or "nothing",
            ", ".join(self.server_urls.values()) or "none",
        )
        _notify_systemd("READY=1")

    def run(self) -> None:
        """Start and keep going until :meth:`stop` (SIGINT/SIGTERM in the CLI)."""
        self.start()
        self._stopping.wait()

    def stop(self) -> None:
        self._stopping.set()

    def once(self) -> int:
        """One full pass of every rule; returns the number of things that failed."""
        self._once = True
        for engine in self.uploads.values():
            engine.cleanup_journal()
        self.queue.start()
        for name in self.uploads:
            self.reconcile(name)
        self.queue.wait_idle()
        for name in self.mirrors:
            self.failures += self.mirror_pass(name)
        for lazy in self.lazy.values():
            if not lazy.refresh():
                self.failures += 1
        return self.failures

    def close(self) -> None:
        """Stop everything and persist state; safe to call more than once."""
        _notify_systemd("STOPPING=1")
        if self.watcher is not None:
            self.watcher.stop()
        self.scheduler.shutdown()
        self.queue.stop()
        self.plugins.shutdown()
        for client in self.clients.values():
            client.close()
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
        self.state.close()
