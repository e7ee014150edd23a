"""``[[lazyexpr]]`` entries: derived datasets kept up to date on the server.

:class:`LazyExprEngine` computes one expression; :class:`LazyRouter` decides when: after
an operand changed (debounced, since operands change in bursts), for a plugin that asked
for one after a file was sent, and again later when a failure's remedy says it passes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from functools import partial

from ..client import Client
from ..errors import Cat2Error, Remedy, explain, remedy_for
from ..events import Event, EventKind, EventSink
from ..manifest import LazyExprRule
from ..plugins.hookspecs import LazyExprRequest
from ..scheduler import Scheduler
from .mode import Mode, backoff

__all__ = ["LazyExprEngine", "LazyRouter"]

log = logging.getLogger(__name__)

_DEBOUNCE = 0.5  # seconds: operands often change in bursts
_RETRY_BASE = 1.0


class LazyExprEngine:
    """Creates one lazy expression and recomputes it on request."""

    def __init__(self, rule: LazyExprRule, client: Client, emit: EventSink) -> None:
        self.rule = rule
        self.client = client
        self.emit = emit
        self.last_error: str | None = None

    @classmethod
    def from_request(
        cls, request: LazyExprRequest, client: Client, emit: EventSink
    ) -> LazyExprEngine:
        """An engine for an expression a plugin asked for (``cat2sync_lazyexprs``)."""
        rule = LazyExprRule(
            name=request.name,
            expression=request.expression,
            operands=request.operands,
            path=request.path,
        )
        return cls(rule, client, emit)

    @property
    def target(self) -> str:
        return self.rule.path or f"@personal/{self.rule.name}.b2nd"

    def depends_on(self, remote: str) -> bool:
        return remote.strip("/") in {p.strip("/") for p in self.rule.operands.values()}

    def refresh(self) -> Exception | None:
        """(Re)compute the expression on the server; reports the outcome as an event and
        returns the error (None on success)."""
        started = time.monotonic()
        try:
            if self.rule.path is None:
                self.client.lazyexpr(self.rule.name, self.rule.expression, self.rule.operands)
            else:
                self.client.lazyexpr_at(self.rule.path, self.rule.expression, self.rule.operands)
        except Exception as exc:
            # Not only Cat2Error: this runs inside start() and scheduler jobs, which an
            # unexpected error must not abort.
            self.last_error = explain(exc)
            if not isinstance(exc, Cat2Error):
                log.debug("lazyexpr %s failed", self.rule.name, exc_info=exc)
            self._report(EventKind.FAILED, self.last_error)
            return exc
        self.last_error = None
        self._report(
            EventKind.COMPUTED,
            f"computed {self.rule.expression}",
            seconds=time.monotonic() - started,
        )
        return None

    def _report(self, kind: EventKind, message: str, seconds: float | None = None) -> None:
        self.emit(
            Event(
                kind=kind,
                rule=f"lazyexpr:{self.rule.name}",
                path=self.rule.name,
                remote=self.target,
                message=message,
                seconds=seconds,
            )
        )


class LazyRouter:
    """When each lazy expression is computed.

    Until :meth:`start`, a change recomputes its dependents at once (the daemon's first
    passes); afterwards through the scheduler, debounced. A failure whose remedy is
    :attr:`~cat2sync.errors.Remedy.RETRY` is tried again with backoff when the mode
    retries; any other waits for the next change of an operand.
    """

    def __init__(
        self, scheduler: Scheduler, mode: Mode, *, stopping: threading.Event, emit: EventSink
    ) -> None:
        self.scheduler = scheduler
        self.mode = mode
        self.emit = emit
        self.engines: Mapping[str, LazyExprEngine] = {}
        self._stopping = stopping
        self._retry_max = 300.0
        self._live = False

    def use(self, engines: Mapping[str, LazyExprEngine], *, retry_max: float) -> None:
        """The manifest's expressions (again after a reload)."""
        self.engines = engines
        self._retry_max = retry_max

    def start(self) -> None:
        """From now on, changes are debounced through the scheduler."""
        self._live = True

    def operand_changed(self, remote: str) -> None:
        """``remote`` was written: recompute the expressions that read it."""
        if not self.mode.refresh_on_change:
            return
        for name, engine in self.engines.items():
            if engine.rule.refresh != "on-change" or not engine.depends_on(remote):
                continue
            if self._live:
                self.scheduler.later(f"lazy-now:{name}", _DEBOUNCE, partial(self.refresh, engine))
            else:
                self.refresh(engine)

    def refresh(self, engine: LazyExprEngine, attempt: int = 1) -> bool:
        """Compute ``engine``'s expression; a passing failure is tried again later."""
        error = engine.refresh()
        if error is None:
            return True
        if remedy_for(error) is Remedy.RETRY and self.mode.retry and not self._stopping.is_set():
            delay = backoff(attempt, base=_RETRY_BASE, cap=self._retry_max)
            retry = partial(self.refresh, engine, attempt + 1)
            self.scheduler.later(f"lazy-now:{engine.rule.name}", delay, retry)
        return False

    def compute(self, requests: Iterable[LazyExprRequest], client: Client) -> None:
        """The expressions a plugin asked for after a file was sent."""
        for request in requests:
            self.refresh(LazyExprEngine.from_request(request, client, self.emit))

    def refresh_all(self, engines: Iterable[LazyExprEngine] | None = None) -> int:
        """Compute every expression (or ``engines``) now; returns how many failed."""
        todo = self.engines.values() if engines is None else engines
        return sum(not self.refresh(engine) for engine in todo)
