"""The files of upload rules waiting to be shipped: the one owner of the ``pending``
table, and of the retries.

A file noticed by the watcher or by a pass is added, due at its last write + settle,
and a pool thread sends it when it is due and quiet. A failure is classified by its
remedy (:func:`cat2sync.errors.remedy_for`) alone: a passing failure is tried again
with capped exponential backoff and jitter, a file still being written once it
settles, a file that cannot be sent as it is when it changes (the watcher or the next
pass brings it back). When the next attempt is due goes to ``pending.next_attempt``,
which ``cat2sync status`` shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import Cat2Error, Remedy, explain, remedy_for
from ..events import Event, EventKind, EventSink
from ..manifest import UploadRule
from ..state import StateStore
from .lazy import LazyRouter
from .mode import Mode, backoff
from .queue import DueQueue
from .upload import UploadEngine

__all__ = ["Backlog", "Counts"]

log = logging.getLogger(__name__)

_RETRY_BASE = 1.0  # seconds before the first retry of a passing failure
_WAIT_REPORT_AFTER = 5  # attempts before a file that does not settle is reported

Key = tuple[str, str]  # (rule, relpath)


@dataclass(frozen=True, slots=True)
class Counts:
    """Files done of those noticed, and the ones in flight (the progress line of
    ``cat2sync once``)."""

    done: int
    queued: int
    active: tuple[str, ...]


class Backlog:
    """Upload files from noticed to shipped.

    :param workers: how many files are sent at once.
    """

    def __init__(
        self,
        state: StateStore,
        *,
        emit: EventSink,
        lazy: LazyRouter,
        mode: Mode,
        workers: int,
    ) -> None:
        self.state = state
        self.emit = emit
        self.lazy = lazy
        self.mode = mode
        #: Files that failed for good in this run (``once`` counts them).
        self.failures = 0
        self.queue = DueQueue(self.run_due, workers=workers)
        self._engines: Mapping[str, UploadEngine] = {}
        self._retry_max = 300.0
        self._attempts: dict[Key, int] = {}  # failed attempts in this run
        self._noticed: set[Key] = set()
        self._done = 0
        self._active: dict[Key, str] = {}
        self._books = threading.Lock()

    def use(self, engines: Mapping[str, UploadEngine], *, retry_max: float) -> None:
        """The upload rules to work for (again after a reload)."""
        self._engines = engines
        self._retry_max = retry_max

    # -- adding work -----------------------------------------------------------

    def add(self, rule: UploadRule, relpath: str, mtime: float) -> None:
        """``relpath`` changed at ``mtime``: send it once it has settled."""
        key = (rule.name, relpath)
        self.state.add_pending(rule.name, relpath)
        with self._books:
            self._noticed.add(key)
        self.queue.touch(key, max(time.time(), mtime + rule.settle))

    def resume(self) -> None:
        """Queue again the files a previous run left pending (it stopped, or crashed
        between sending a file and taking it off the table)."""
        self.state.drop_pending_of_other_rules(set(self._engines))
        for pending in self.state.pending():
            key = (pending.rule, pending.relpath)
            with self._books:
                self._noticed.add(key)
            self.queue.touch(key)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self.queue.start()

    def stop(self) -> None:
        self.queue.stop()

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self.queue.wait_idle(timeout)

    def counts(self) -> Counts:
        with self._books:
            return Counts(self._done, len(self._noticed), tuple(self._active.values()))

    def in_flight(self) -> tuple[Key, ...]:
        """The ``(rule, relpath)`` of the files being sent now."""
        with self._books:
            return tuple(self._active)

    # -- one file --------------------------------------------------------------

    def run_due(self, key: object) -> float | None:
        """Run one due ``(rule, relpath)`` (the queue calls it); returns when to try it
        again, or None when it is done."""
        assert isinstance(key, tuple)
        rule, relpath = key
        engine = self._engines.get(rule)
        if engine is None:  # the rule left the manifest
            self._forget(key)
            return None
        with self._books:
            self._active[key] = relpath
        try:
            again = self._ship(engine, relpath)
        finally:
            with self._books:
                del self._active[key]
                self._done += again is None
        return again

    def _ship(self, engine: UploadEngine, relpath: str) -> float | None:
        key = (engine.rule.name, relpath)
        path = engine.local_for(relpath)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            self._forget(key)
            return None
        settled_at = mtime + engine.rule.settle
        if settled_at > time.time():
            return settled_at  # still being written
        try:
            event = engine.sync_file(relpath)
            derived = engine.follow_up(relpath, event) if event is not None else []
        except Exception as exc:
            if not path.exists():
                # Deleted while it was being sent: nothing to send, and the next pass
                # decides about the remote copy.
                self._forget(key)
                return None
            return self._failed(engine.rule, relpath, exc)
        self._forget(key)
        if event is not None:
            self.emit(event)
            # After the event, so that listeners see the cause before its effect.
            self.lazy.compute(derived, engine.client)
        return None

    def _forget(self, key: Key) -> None:
        self.state.done_pending(*key)
        with self._books:
            self._attempts.pop(key, None)

    def _failed(self, rule: UploadRule, relpath: str, exc: Exception) -> float | None:
        """Record a failed attempt; returns when to try again (None: not by time)."""
        key = (rule.name, relpath)
        with self._books:
            attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
        remedy = remedy_for(exc)
        message = explain(exc)
        if not isinstance(exc, Cat2Error | OSError):  # not ours: keep the traceback
            log.debug("%s: %s", relpath, message, exc_info=exc)
        if remedy is Remedy.WAIT:
            return self._wait(rule, relpath, message, attempts)
        retry_at = None
        if self.mode.retry and remedy is not Remedy.FIX_FILE:
            retry_at = time.time() + backoff(attempts, base=_RETRY_BASE, cap=self._retry_max)
        self.state.fail_pending(
            rule.name, relpath, message, next_attempt=retry_at or 0.0, remedy=remedy.value
        )
        self.emit(
            Event(
                kind=EventKind.FAILED,
                rule=rule.name,
                path=relpath,
                remote=f"{rule.remote}/{relpath}",
                message=message,
            )
        )
        if not self.mode.retry:
            self.failures += 1
        return retry_at

    def _wait(self, rule: UploadRule, relpath: str, reason: str, attempts: int) -> float | None:
        """The file is still being written (or changed while it was sent)."""
        limit = self.mode.wait_attempts
        give_up = limit is not None and attempts >= limit
        retry_at = None
        if not give_up:
            base = max(rule.settle, 0.5)
            retry_at = time.time() + backoff(attempts, base=base, cap=self._retry_max)
        self.state.fail_pending(
            rule.name, relpath, reason, next_attempt=retry_at or 0.0, remedy=Remedy.WAIT.value
        )
        if attempts == _WAIT_REPORT_AFTER or give_up:
            self.emit(Event(kind=EventKind.SKIPPED, rule=rule.name, path=relpath, message=reason))
        if give_up:
            self.failures += 1
        return retry_at
