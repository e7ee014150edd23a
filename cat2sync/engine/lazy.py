"""``[[lazyexpr]]`` entries: derived datasets kept up to date on the server."""

from __future__ import annotations

import logging
import time

from ..client import Client
from ..errors import Cat2Error, TransportError
from ..events import Event, EventKind, EventSink
from ..manifest import LazyExprRule
from ..plugins.hookspecs import LazyExprRequest

__all__ = ["LazyExprEngine"]

log = logging.getLogger(__name__)


class LazyExprEngine:
    """Creates one lazy expression and refreshes it when an operand changes."""

    def __init__(self, rule: LazyExprRule, client: Client, emit: EventSink) -> None:
        self.rule = rule
        self.client = client
        self.emit = emit
        self.last_error: str | None = None
        self.transient = False  # the last failure was the network's, not the expression's

    @classmethod
    def from_request(
        cls,
        request: LazyExprRequest,
        client: Client,
        emit: EventSink,
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

    def refresh(self) -> bool:
        """(Re)compute the expression on the server; reports errors, returns success."""
        started = time.monotonic()
        try:
            if self.rule.path is None:
                self.client.lazyexpr(self.rule.name, self.rule.expression, self.rule.operands)
            else:
                self.client.lazyexpr_at(self.rule.path, self.rule.expression, self.rule.operands)
        except Exception as exc:
            self.transient = isinstance(exc, TransportError)
            # Retried on the next change of an operand, or on the next scheduled refresh.
            # Not only Cat2Error: this runs inside start() and scheduler jobs, which an
            # unexpected error must not abort.
            self.last_error = (
                str(exc) if isinstance(exc, Cat2Error) else f"{exc.__class__.__name__}: {exc}"
            )
            log.debug("lazyexpr %s failed", self.rule.name, exc_info=exc)
            self.emit(
                Event(
                    kind=EventKind.FAILED,
                    rule=f"lazyexpr:{self.rule.name}",
                    path=self.rule.name,
                    remote=self.target,
                    message=self.last_error,
                )
            )
            return False
        self.last_error = None
        self.transient = False
        self.emit(
            Event(
                kind=EventKind.COMPUTED,
                rule=f"lazyexpr:{self.rule.name}",
                path=self.rule.name,
                remote=self.target,
                message=f"computed {self.rule.expression}",
                seconds=time.monotonic() - started,
            )
        )
        return True
