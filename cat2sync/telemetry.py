"""What the running daemon saw: the live facts behind its metrics, its status page and
the server line of ``cat2sync status``.

The daemon feeds a :class:`Telemetry` with every event, every pass and every HTTP
exchange of its clients; it decides nothing about syncing. Counting one of them is a
lock and a few additions, so the hot path does not notice it.

Whether each server answered its last request is also written to
``state_dir/servers.json`` when it changes (not at every request), so that
``cat2sync status`` can say it while the daemon runs and after it stopped.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.process_collector import ProcessCollector

from .events import Event, EventKind

__all__ = [
    "Reachability",
    "Telemetry",
    "direction_of",
    "metric_kind",
    "read_reachability",
]

log = logging.getLogger(__name__)

#: A server that got no request for this long is probed (when the endpoint is on).
_PROBE_IDLE = 5.0
EXTENDED = "extended"
#: How the mirror marks an extension (a ``downloaded`` event of the new rows only).
_EXTENSION_MESSAGE = "new rows only"
_RECENT_EVENTS = 50
_REACHABILITY_FILE = "servers.json"
#: Passes last from milliseconds (a quiet folder) to many minutes (a first mirror).
_PASS_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_UP_KINDS = frozenset({EventKind.UPLOADED.value, EventKind.APPENDED.value})
_DOWN_KINDS = frozenset({EventKind.DOWNLOADED.value, EXTENDED})


def metric_kind(event: Event) -> str:
    """The event's kind as counted: an extension of a mirrored dataset is ``extended``."""
    if (
        event.kind == EventKind.DOWNLOADED
        and event.rows is not None
        and event.message == _EXTENSION_MESSAGE
    ):
        return EXTENDED
    return event.kind.value


def direction_of(kind: str) -> str | None:
    """``up`` or ``down`` for the kinds that move file bytes over the network."""
    if kind in _UP_KINDS:
        return "up"
    if kind in _DOWN_KINDS:
        return "down"
    return None


@dataclass(frozen=True, slots=True)
class Reachability:
    """Whether a server answered the last request sent to it (any HTTP status is an
    answer; a refused connection, a reset or a timeout is not)."""

    url: str
    up: bool
    since: float  # when it last changed
    last_request: float | None = None  # known while the daemon runs


def read_reachability(state_dir: Path) -> dict[str, Reachability]:
    """What the daemon of ``state_dir`` last wrote; empty when it never did."""
    try:
        data = json.loads((state_dir / _REACHABILITY_FILE).read_text())
        return {name: Reachability(**fields) for name, fields in data.items()}
    except (OSError, ValueError, TypeError):
        return {}


def _saved(seen: Reachability) -> dict[str, Any]:
    """What ``servers.json`` keeps (written on changes only: no request times)."""
    return {"url": seen.url, "up": seen.up, "since": seen.since}


class Telemetry:
    """Live counters, passes, recent events and server reachability of one daemon.

    :param state_dir: where ``servers.json`` is kept.
    """

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._files = Counter(
            "cat2sync_files",
            "Files by rule and event kind, since the daemon started.",
            ["rule", "event"],
            registry=self.registry,
        )
        self._bytes = Counter(
            "cat2sync_bytes",
            "File bytes on the wire (request or response bodies) by rule and direction.",
            ["rule", "direction"],
            registry=self.registry,
        )
        self._requests = Counter(
            "cat2sync_requests",
            "HTTP requests to each server by API endpoint and outcome, retries included.",
            ["server", "endpoint", "outcome"],
            registry=self.registry,
        )
        self._pass_seconds = Histogram(
            "cat2sync_pass_duration_seconds",
            "How long full passes of a rule take.",
            ["rule"],
            buckets=_PASS_BUCKETS,
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._running: collections.Counter[str] = collections.Counter()
        self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=_RECENT_EVENTS)
        self._servers: dict[str, Reachability] = {}
        self._probing: set[str] = set()
        self._file_lock = threading.Lock()

    # -- events ----------------------------------------------------------------

    def event(self, event: Event) -> None:
        kind = metric_kind(event)
        self._files.labels(event.rule, kind).inc()
        direction = direction_of(kind)
        if direction is not None and event.bytes:
            self._bytes.labels(event.rule, direction).inc(event.bytes)
        seen = {
            "time": time.time(),
            "rule": event.rule,
            "kind": kind,
            "path": event.path,
            "remote": event.remote,
            "bytes": event.bytes,
            "rows": event.rows,
            "message": event.message,
        }
        with self._lock:
            self._recent.append(seen)

    def recent_events(self) -> list[dict[str, Any]]:
        """The last events, newest first."""
        with self._lock:
            return list(reversed(self._recent))

    # -- passes ----------------------------------------------------------------

    @contextlib.contextmanager
    def pass_of(self, rule: str) -> Iterator[None]:
        """Around a full pass of ``rule``: it is *working* meanwhile, and its duration
        is observed."""
        with self._lock:
            self._running[rule] += 1
        started = time.perf_counter()
        try:
            yield
        finally:
            self._pass_seconds.labels(rule).observe(time.perf_counter() - started)
            with self._lock:
                self._running[rule] -= 1

    def passes_running(self) -> frozenset[str]:
        with self._lock:
            return frozenset(rule for rule, n in self._running.items() if n > 0)

    # -- servers ---------------------------------------------------------------

    def observer(self, server: str, url: str) -> Callable[[str, str], None]:
        """The client's ``observer`` for ``server``: counts each request and keeps
        whether the server answered."""

        def observe(endpoint: str, outcome: str) -> None:
            self._requests.labels(server, endpoint, outcome).inc()
            self._answered(server, url, outcome != "transport_error")

        return observe

    def _answered(self, server: str, url: str, up: bool) -> None:
        now = time.time()
        with self._lock:
            known = self._servers.get(server)
            changed = known is None or known.up != up or known.url != url
            since = now if changed or known is None else known.since
            self._servers[server] = Reachability(url, up, since, now)
        if changed:
            self._save_reachability()

    def servers(self) -> dict[str, Reachability]:
        with self._lock:
            return dict(self._servers)

    def probe(self, server: str, request: Callable[[], object]) -> None:
        """Send ``request`` (a cheap read) if ``server`` has been idle for
        a few seconds, so that its reachability stays current; at most one probe
        of a server at a time. Its outcome is seen by the observer."""
        with self._lock:
            known = self._servers.get(server)
            last = known.last_request if known is not None else None
            if server in self._probing or (last is not None and time.time() - last < _PROBE_IDLE):
                return
            self._probing.add(server)
        try:
            request()
        except Exception as exc:  # the observer saw the outcome; the error is not ours
            log.debug("probe of server %s: %s", server, exc)
        finally:
            with self._lock:
                self._probing.discard(server)

    def _save_reachability(self) -> None:
        """Write ``servers.json`` (atomically; it holds URLs, never a login)."""
        with self._file_lock:
            with self._lock:
                data = {n: _saved(r) for n, r in self._servers.items()}
            path = self._state_dir / _REACHABILITY_FILE
            temporary = path.with_name(f".{path.name}.tmp")
            try:
                temporary.write_text(json.dumps(data, indent=1))
                temporary.replace(path)
            except OSError as exc:  # a full disk must not fail a request
                log.debug("cannot write %s: %s", path, exc)
