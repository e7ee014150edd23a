"""What ``cat2sync status`` reports, read from the state store (the daemon may be running
or not): per rule, the files and bytes it moved since the state folder was created, its
backlog and how old the oldest file in it is, its last pass and last success, the last
error and when a failed file is tried next, whether its server answered at the last
attempt, and the conflicts it kept.

A running daemon serves the same document as ``/status.json``, plus what only it knows
(:func:`live_document`): the state of each rule (idle, working, waiting for retry,
error), the files in flight and the latest events.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from . import __version__
from .events import EventKind
from .manifest import Manifest, UploadRule
from .records import Conflict, Pending, RuleStatus, Total
from .state import StateStore
from .telemetry import Reachability, Telemetry, direction_of, read_reachability

__all__ = [
    "RuleReport",
    "Snapshot",
    "iso",
    "live_document",
    "report",
    "rule_reports",
    "snapshot",
]

_LISTED_FILES = 20
_LISTED_CONFLICTS = 5
IDLE: Final = "idle"
WORKING: Final = "working"
RETRYING: Final = "waiting for retry"
ERROR: Final = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleReport:
    """One rule as the state store knows it."""

    name: str
    kind: str  # "upload" or "subscribe"
    server: str
    status: RuleStatus
    totals: tuple[Total, ...] = ()
    conflicts: tuple[Conflict, ...] = ()  # the latest, newest first

    @property
    def failed(self) -> list[Pending]:
        """The pending files whose last attempt failed."""
        return [p for p in self.status.pending if p.last_error]

    @property
    def oldest_pending(self) -> float | None:
        """Since when the oldest file of the backlog has been waiting."""
        return min((p.since for p in self.status.pending), default=None)

    @property
    def last_error(self) -> str | None:
        failed = self.failed
        return failed[-1].last_error if failed else self.status.last_error

    @property
    def next_retry(self) -> float | None:
        """When the first failed file is tried again by time (some wait for a change)."""
        due = [p.next_attempt for p in self.failed if p.next_attempt > 0]
        return min(due) if due else None

    def bytes_moved(self, direction: str) -> int:
        return sum(t.bytes for t in self.totals if direction_of(t.kind) == direction)


def rule_reports(manifest: Manifest, store: StateStore | None) -> list[RuleReport]:
    """Every upload and subscribe rule of ``manifest``, from ``store`` (None: nothing
    was recorded yet)."""
    return [
        RuleReport(
            name=rule.name,
            kind="upload" if isinstance(rule, UploadRule) else "subscribe",
            server=rule.server,
            status=store.rule_status(rule.name) if store else RuleStatus(rule=rule.name),
            totals=tuple(store.totals(rule.name)) if store else (),
            conflicts=tuple(store.conflicts(rule.name, limit=_LISTED_CONFLICTS)) if store else (),
        )
        for rule in manifest.rules()
    ]


def report(manifest: Manifest) -> dict[str, Any]:
    """The status document (``cat2sync status --json`` prints it as it is)."""
    state_dir = manifest.daemon.state_dir
    servers = read_reachability(state_dir)
    if not (state_dir / "state.db").exists():
        return _document(manifest, rule_reports(manifest, None), servers, time.time())
    with StateStore(state_dir, readonly=True) as store:
        return _document(manifest, rule_reports(manifest, store), servers, time.time())


def _document(
    manifest: Manifest,
    reports: Iterable[RuleReport],
    servers: Mapping[str, Reachability],
    now: float,
) -> dict[str, Any]:
    return {
        "state_dir": str(manifest.daemon.state_dir),
        "rules": {r.name: _rule(r, servers.get(r.server), now) for r in reports},
        "servers": {
            name: _server(manifest, name, servers.get(name)) for name in _used_servers(manifest)
        },
    }


def _rule(r: RuleReport, server: Reachability | None, now: float) -> dict[str, Any]:
    st = r.status
    oldest = r.oldest_pending
    return {
        "kind": r.kind,
        "last_pass": iso(st.last_finished),
        "last_success": iso(st.last_success),
        "pass_error": st.last_error,
        "pending": len(st.pending),
        "pending_files": [p.relpath for p in st.pending[:_LISTED_FILES]],
        "oldest_pending": iso(oldest),
        "oldest_pending_age": 0.0 if oldest is None else max(0.0, now - oldest),
        "last_error": r.last_error,
        "next_retry": iso(r.next_retry),
        "moved": {t.kind: {"files": t.files, "bytes": t.bytes} for t in r.totals},
        "bytes_up": r.bytes_moved("up"),
        "bytes_down": r.bytes_moved("down"),
        "server": r.server,
        "server_answered": None if server is None else server.up,
        "conflicts": sum(t.files for t in r.totals if t.kind == EventKind.CONFLICT.value),
        "latest_conflicts": [_conflict(c) for c in r.conflicts],
    }


def _conflict(c: Conflict) -> dict[str, Any]:
    return {
        "time": iso(c.created),
        "side": c.side,
        "path": c.path,
        "remote": c.remote,
        "action": c.action,
        "copy": c.copy,
        "reason": c.reason,
    }


def _used_servers(manifest: Manifest) -> list[str]:
    rules = [*manifest.rules(), *manifest.lazyexprs]
    return sorted({r.server for r in rules})


def _server(manifest: Manifest, name: str, seen: Reachability | None) -> dict[str, Any]:
    """``answered``: whether the last request got an answer (None: none was sent yet)."""
    configured = manifest.servers[name].url
    return {
        "url": seen.url if seen is not None else configured,
        "embedded": configured is None,
        "answered": None if seen is None else seen.up,
        "since": None if seen is None else iso(seen.since),
        "last_request": None if seen is None else iso(seen.last_request),
    }


# -- the running daemon's view -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """A running daemon at one moment: what ``/status.json`` and ``/metrics`` show."""

    taken: float
    rules: list[RuleReport]
    states: dict[str, str]
    in_flight: dict[str, list[str]] = field(default_factory=dict)
    servers: dict[str, Reachability] = field(default_factory=dict)


def snapshot(
    manifest: Manifest,
    store: StateStore,
    telemetry: Telemetry,
    in_flight: Iterable[tuple[str, str]],
) -> Snapshot:
    """The rules from the daemon's own ``store``, what ``telemetry`` saw, and the
    ``(rule, relpath)`` of the files being sent now."""
    flying: dict[str, list[str]] = {}
    for rule, relpath in in_flight:
        flying.setdefault(rule, []).append(relpath)
    reports = rule_reports(manifest, store)
    running = telemetry.passes_running() | flying.keys()
    return Snapshot(
        taken=time.time(),
        rules=reports,
        states={r.name: rule_state(r, working=r.name in running) for r in reports},
        in_flight={rule: sorted(files) for rule, files in flying.items()},
        servers=telemetry.servers(),
    )


def rule_state(r: RuleReport, *, working: bool) -> str:
    """*error* when the last pass failed or a file waits until it is fixed (whatever
    runs meanwhile: a rule failing again and again is not shown as busy); else
    *working* while a pass runs or a file is sent, *waiting for retry* when a failed
    file will be tried again at a time, and *idle*."""
    if r.status.last_error or any(p.next_attempt <= 0 for p in r.failed):
        return ERROR
    if working:
        return WORKING
    if r.failed:
        return RETRYING
    return IDLE


def live_document(
    manifest: Manifest, snap: Snapshot, telemetry: Telemetry, *, started: float
) -> dict[str, Any]:
    """The status document of a running daemon (``/status.json``)."""
    doc = _document(manifest, snap.rules, snap.servers, snap.taken)
    for name, rule in doc["rules"].items():
        rule["state"] = snap.states[name]
        rule["in_flight"] = snap.in_flight.get(name, [])
    doc["events"] = [{**e, "time": iso(e["time"])} for e in telemetry.recent_events()]
    doc["daemon"] = {
        "version": __version__,
        "pid": os.getpid(),
        "started": iso(started),
        "now": iso(snap.taken),
    }
    return doc


def iso(stamp: float | None) -> str | None:
    """A local RFC 3339 time with its UTC offset (``2026-11-27T08:54:00+01:00``)."""
    if stamp is None:
        return None
    return dt.datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds")
