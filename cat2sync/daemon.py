"""The daemon: wires a manifest's rules to the engines, the watcher and the scheduler.

``Daemon.run()`` is ``cat2sync run``: reconcile every rule, arm the watches and the
periodic jobs, then react to changes (and to edits of the manifest) until stopped.
``Daemon.once()`` is ``cat2sync once``: one full pass of every rule, then return the
number of failures. What differs between the two is one :class:`~.engine.mode.Mode`.

Every decision is taken in :mod:`cat2sync.engine` (passes, files, retries, lazy
expressions); this module connects the pieces, keeps them running, and reloads them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from . import status
from .client import Client
from .embedded import EmbeddedServers
from .engine.backlog import Backlog
from .engine.lazy import LazyExprEngine, LazyRouter
from .engine.mirror import MirrorEngine
from .engine.mode import ONCE, RUN
from .engine.upload import UploadEngine
from .errors import Cat2Error, ManifestError
from .events import Event, EventKind, EventSink
from .manifest import HttpAddress, Manifest, ServerConfig, load_manifest
from .metrics import CONTENT_TYPE, Metrics
from .plugins.manager import Plugins
from .progress import Snapshot
from .scheduler import Scheduler
from .state import StateStore
from .telemetry import Telemetry
from .watcher import Batch, Change, Watcher
from .web import Route, StatusServer, routes

__all__ = ["Daemon"]

log = logging.getLogger("cat2sync")

_DELETION_DEBOUNCE = 1.0  # a deletion may be half of a rename: decide a moment later
_MANIFEST_POLL = 1.0
_WATCH_FALLBACK_POLL = 5.0  # seconds between rescans when the OS cannot watch
_PROBE_CHECK = 1.0  # seconds between looks at whether a server has been idle long enough
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


def _keep_or_build(
    engines: dict[str, _Engine], rule: object, build: Callable[[], _Engine]
) -> _Engine:
    """The running engine of a rule that did not change (so that its work carries on),
    or a new one."""
    engine = engines.get(getattr(rule, "name", ""))
    return engine if engine is not None and engine.rule == rule else build()


class Daemon:
    """One manifest at work.

    :param plugins: the plugins to use (default: the built-in ones only; the CLI loads
        the installed ones too).
    :param emit: also receives every :class:`Event` (tests collect them).
    :param http: serve the status page there instead of at the manifest's
        ``[daemon] http`` (``cat2sync run --http``).
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        plugins: Plugins | None = None,
        emit: EventSink | None = None,
        http: HttpAddress | None = None,
    ) -> None:
        self.manifest = manifest
        self.plugins = plugins if plugins is not None else Plugins(entry_points=False)
        self._extra_emit = emit
        self.state = StateStore(manifest.daemon.state_dir)
        self._started = time.time()
        self._http = http
        self.telemetry = Telemetry(manifest.daemon.state_dir)
        self.metrics = Metrics(self.telemetry, self._look)
        #: The status page and metrics endpoint, while ``run`` serves them.
        self.web: StatusServer | None = None
        self._embedded = EmbeddedServers(manifest.daemon.state_dir)
        self._server_cfgs: dict[str, ServerConfig] = {}
        self.clients: dict[str, Client] = {}
        self.uploads: dict[str, UploadEngine] = {}
        self.mirrors: dict[str, MirrorEngine] = {}
        self.lazyexprs: dict[str, LazyExprEngine] = {}
        self._stopping = threading.Event()
        self._reload_lock = threading.Lock()
        self._manifest_sig = _file_signature(manifest.path)
        self._rule_jobs: set[str] = set()  # the scheduler's jobs that belong to rules
        self._started = False  # engines started (journals repaired), once or for a run
        self.scheduler = Scheduler()
        self.lazy = LazyRouter(self.scheduler, RUN, stopping=self._stopping, emit=self.emit)
        workers = max([r.concurrency for r in manifest.uploads] or [1])
        self.backlog = Backlog(
            self.state, emit=self.emit, lazy=self.lazy, mode=RUN, workers=workers
        )
        #: The due-time queue of upload files (tests wait for it to be idle).
        self.queue = self.backlog.queue
        self.watcher: Watcher | None = None
        try:
            self._apply(manifest)
        except BaseException:
            self.close()
            raise

    # -- wiring ----------------------------------------------------------------

    def _apply(self, manifest: Manifest) -> None:
        """Build (or keep) clients and engines for ``manifest``'s rules."""
        self.plugins.check_manifest(manifest)
        self.plugins.configure(manifest)
        used = {r.server for r in manifest.rules()} | {r.server for r in manifest.lazyexprs}
        for name in sorted(used):
            cfg = manifest.servers[name]
            if self._server_cfgs.get(name) != cfg:
                old = self.clients.pop(name, None)
                if old is not None:
                    old.close()
                observe = partial(self.telemetry.observer, cfg.name)
                self.clients[name] = self._embedded.connect(cfg, observe=observe)
                self._server_cfgs[name] = cfg
        state, emit, plugins = self.state, self.emit, self.plugins
        old_uploads = self.uploads
        self.uploads = {
            r.name: _keep_or_build(
                self.uploads,
                r,
                partial(UploadEngine, r, self.clients[r.server], state, emit, plugins),
            )
            for r in manifest.uploads
        }
        self.mirrors = {
            r.name: _keep_or_build(
                self.mirrors,
                r,
                partial(MirrorEngine, r, self.clients[r.server], state, emit, plugins),
            )
            for r in manifest.subscriptions
        }
        self.lazyexprs = {
            r.name: _keep_or_build(
                self.lazyexprs, r, partial(LazyExprEngine, r, self.clients[r.server], emit)
            )
            for r in manifest.lazyexprs
        }
        self._retire(old_uploads)
        self.backlog.use(self.uploads, retry_max=manifest.daemon.retry_max)
        self.lazy.use(self.lazyexprs, retry_max=manifest.daemon.retry_max)
        self.manifest = manifest

    def _retire(self, old: dict[str, UploadEngine]) -> None:
        """Close the upload engines a reload replaced (their journals flush); start the
        new ones, when the daemon runs already."""
        current = set(map(id, self.uploads.values()))
        for engine in old.values():
            if id(engine) not in current:
                engine.close()
        if self._started:
            for engine in self.uploads.values():
                if engine not in old.values():
                    engine.start()

    @property
    def server_urls(self) -> dict[str, str]:
        return {name: c.urlbase for name, c in self.clients.items()}

    def emit(self, event: Event) -> None:
        """Every event: logged, counted in the rule's totals, given to plugins and to
        ``emit``, then followed by the lazy expressions that read what it changed."""
        level = (
            logging.WARNING if event.kind in (EventKind.FAILED, EventKind.SKIPPED) else logging.INFO
        )
        log.log(level, "%s: %s", event.rule, event.describe())
        self.state.add_total(event.rule, event.kind.value, event.bytes)
        self.telemetry.event(event)
        self.plugins.event(event)
        if self._extra_emit is not None:
            self._extra_emit(event)
        # After the listeners, so that they see a change before what it causes.
        if event.kind in _CHANGED_KINDS and event.remote:
            self.lazy.operand_changed(event.remote)

    def snapshot(self) -> Snapshot:
        """Counters for the progress display of ``cat2sync once``."""
        counts = self.backlog.counts()
        stats = [c.stats for c in self.clients.values()]
        return Snapshot(
            done=counts.done,
            queued=counts.queued,
            bytes_sent=sum(s.bytes_sent for s in stats),
            bytes_received=sum(s.bytes_received for s in stats),
            active=counts.active,
        )

    # -- passes ----------------------------------------------------------------

    def reconcile(self, rule_name: str) -> None:
        """A full pass of an upload rule; the files it finds changed go to the backlog."""
        engine = self.uploads.get(rule_name)
        if engine is None:
            return
        with self.telemetry.pass_of(rule_name):
            result = engine.run_pass()
        for file in result.to_send:
            self.backlog.add(engine.rule, file.relpath, file.mtime_ns / 1e9)

    def mirror_pass(self, rule_name: str, *, full: bool = False) -> int:
        """One pass of a subscription; returns the number of entries that failed.

        :param full: list the whole folder, whatever its journals say.
        """
        engine = self.mirrors.get(rule_name)
        if engine is None:
            return 0
        with self.telemetry.pass_of(rule_name):
            result = engine.run_pass(full=full)
        for remote in result.changed_remotes:
            self.lazy.operand_changed(remote)
        return result.failed

    # -- watching and jobs -----------------------------------------------------

    def _on_changes(self, batch: Batch) -> None:
        """Route the watcher's changes: a file to the backlog, due at its last write +
        settle (not at our hearing of it); a new folder or a deletion to a pass soon."""
        for change, raw in batch:
            path = Path(raw)
            for engine in list(self.uploads.values()):
                relpath = engine.relpath_of(path)
                if relpath is None:
                    continue
                if change == Change.added and path.is_dir():
                    # Files written into a new folder at once raise no event: a pass finds them.
                    self._pass_soon(f"appeared:{engine.rule.name}", engine.rule.name)
                elif change == Change.deleted:  # perhaps half of a rename
                    self._pass_soon(f"vanished:{engine.rule.name}", engine.rule.name)
                elif engine.wants(relpath) and path.is_file():
                    mtime = _mtime(path)
                    if mtime is not None:
                        self.backlog.add(engine.rule, relpath, mtime)

    def _pass_soon(self, job_id: str, rule_name: str) -> None:
        self.scheduler.later(job_id, _DELETION_DEBOUNCE, partial(self.reconcile, rule_name))

    def _on_watch_failure(self, reason: str) -> None:
        for name in self.uploads:
            self.scheduler.every(
                f"poll:{name}", _WATCH_FALLBACK_POLL, partial(self.reconcile, name)
            )

    def _watched_folders(self) -> list[Path]:
        return sorted(e.rule.local for e in self.uploads.values())

    def _arm_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = Watcher(self._watched_folders(), self._on_changes, self._on_watch_failure)
        self.watcher.start()

    def _schedule(self) -> None:
        """(Re)create the periodic jobs of the current rules."""
        for job_id in self._rule_jobs:
            self.scheduler.remove(job_id)
        every, jobs = self.scheduler.every, set()
        for name in self.uploads:
            rescan = partial(self.reconcile, name)
            jobs.add(every(f"rescan:{name}", self.manifest.daemon.rescan, rescan))
        for name, mirror in self.mirrors.items():
            job, run = f"mirror:{name}", partial(self.mirror_pass, name)
            if mirror.rule.cron:
                jobs.add(self.scheduler.cron(job, mirror.rule.cron, run))
            else:
                jobs.add(every(job, mirror.rule.every or 300.0, run, first_in=0.1))
        for name, lazy in self.lazyexprs.items():
            if lazy.rule.refresh == "every" and lazy.rule.every:
                jobs.add(every(f"lazy:{name}", lazy.rule.every, partial(self.lazy.refresh, lazy)))
        if self.web is not None:  # server_up stays current while nothing else is sent
            for name in self.clients:
                jobs.add(every(f"probe:{name}", _PROBE_CHECK, partial(self._probe, name)))
        self._rule_jobs = jobs

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
            old_lazy = dict(self.lazyexprs)
            try:
                web = self._web_for(new)
            except Cat2Error as exc:
                log.error("manifest not reloaded, the previous one keeps running: %s", exc)
                return
            try:
                self._apply(new)
            except Cat2Error as exc:
                log.error("manifest not reloaded, the previous one keeps running: %s", exc)
                if web is not self.web and web is not None:
                    web.stop()
                return
            self._swap_web(web)
            if self._watched_folders() != old_folders:
                self._arm_watcher()
            self._schedule()
            # Every rule: a change made while the watches moved raised no event.
            for name in self.uploads:
                self.reconcile(name)
            self.lazy.refresh_all(e for n, e in self.lazyexprs.items() if old_lazy.get(n) is not e)
            log.info(
                "manifest reloaded: %d upload, %d subscribe, %d lazyexpr rules",
                len(self.uploads),
                len(self.mirrors),
                len(self.lazyexprs),
            )

    # -- the status page and metrics --------------------------------------------

    def _web_for(self, manifest: Manifest) -> StatusServer | None:
        """The listener ``manifest`` asks for: the running one if its address is the
        same, else a new one, bound (not serving yet).

        :raises ConfigError: the address is busy or not this machine's.
        """
        address = self._http or manifest.daemon.http
        if address is None:
            return None
        if self.web is not None and self.web.address == address:
            return self.web
        return StatusServer(
            address, routes(Route(CONTENT_TYPE, self.metrics.render), self.live_status)
        )

    def _swap_web(self, web: StatusServer | None) -> None:
        if web is self.web:
            return
        old, self.web = self.web, web
        if old is not None:
            old.stop()
        if web is not None:
            web.start()
            log.info("status page at %s (metrics at %smetrics)", web.url, web.url)

    def _probe(self, server: str) -> None:
        client = self.clients.get(server)
        if client is not None:
            self.telemetry.probe(server, client.get_roots)

    def _look(self) -> tuple[Manifest, status.Snapshot]:
        manifest = self.manifest
        snap = status.snapshot(manifest, self.state, self.telemetry, self.backlog.in_flight())
        return manifest, snap

    def live_status(self) -> dict[str, object]:
        """The status document with what only the running daemon knows (``/status.json``)."""
        manifest, snap = self._look()
        return status.live_document(manifest, snap, self.telemetry, started=self._started)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Serve the status page (if asked to), reconcile every rule, arm the watches
        and the periodic jobs."""
        self._swap_web(self._web_for(self.manifest))
        self._begin()
        self._arm_watcher()  # before the first pass, so no change falls between the two
        for name in self.uploads:
            self.reconcile(name)
        self.lazy.refresh_all()
        self._schedule()
        for job_id, when, func in self.plugins.jobs():
            if isinstance(when, str):
                self.scheduler.cron(f"plugin:{job_id}", when, func)
            else:
                self.scheduler.every(f"plugin:{job_id}", float(when), func)
        self.scheduler.every("manifest", _MANIFEST_POLL, self.check_manifest)
        self.scheduler.start()
        self.lazy.start()
        log.info(
            "ready: watching %s; mirroring %s; server %s%s",
            ", ".join(str(e.rule.local) for e in self.uploads.values()) or "nothing",
            ", ".join(m.rule.remote for m in self.mirrors.values()) or "nothing",
            ", ".join(self.server_urls.values()) or "none",
            f"; status page {self.web.url}" if self.web is not None else "",
        )
        _notify_systemd("READY=1")

    def _begin(self) -> None:
        """Clean up after an interrupted run, and start sending files."""
        for engine in self.uploads.values():
            engine.start()
        self._started = True
        self.backlog.resume()
        self.backlog.start()

    def run(self) -> None:
        """Start and keep going until :meth:`stop` (SIGINT/SIGTERM in the CLI)."""
        self.start()
        self._stopping.wait()

    def stop(self) -> None:
        self._stopping.set()

    def once(self, *, full: bool = False) -> int:
        """One pass of every rule; returns the number of things that failed.

        :param full: subscriptions list their whole folders, whatever the journals say.
        """
        self.backlog.mode = self.lazy.mode = ONCE
        self._begin()
        for name in self.uploads:
            self.reconcile(name)
        self.backlog.wait_idle()
        for engine in self.uploads.values():
            engine.flush_journal()  # before the subscriptions read them
        failures = self.backlog.failures
        for name in self.mirrors:
            failures += self.mirror_pass(name, full=full)
        return failures + self.lazy.refresh_all()

    def close(self) -> None:
        """Stop everything and persist state; safe to call more than once."""
        _notify_systemd("STOPPING=1")
        self._swap_web(None)
        if self.watcher is not None:
            self.watcher.stop()
        self.scheduler.shutdown()
        self.backlog.stop()
        for engine in self.uploads.values():
            engine.close()
        self.plugins.shutdown()
        for client in self.clients.values():
            client.close()
        self._embedded.stop()
        self.state.close()
