"""What ``cat2sync status`` reports, read from the state store (the daemon may be running
or not): per rule, its last pass and last success, its pending files, the last error and
when a failed file is tried next."""

from __future__ import annotations

import time
from typing import Any

from .manifest import Manifest
from .records import Pending, RuleStatus
from .state import StateStore

__all__ = ["report"]

_LISTED_FILES = 20


def report(manifest: Manifest) -> dict[str, Any]:
    """The status document (``cat2sync status --json`` prints it as it is)."""
    rules = [r.name for r in manifest.rules()]
    state_dir = manifest.daemon.state_dir
    if not (state_dir / "state.db").exists():
        return {"state_dir": str(state_dir), "rules": {n: _rule(RuleStatus(rule=n)) for n in rules}}
    with StateStore(state_dir, readonly=True) as store:
        return {
            "state_dir": str(state_dir),
            "rules": {n: _rule(store.rule_status(n)) for n in rules},
        }


def _rule(st: RuleStatus) -> dict[str, Any]:
    failed = [p for p in st.pending if p.last_error]
    return {
        "last_pass": iso(st.last_finished),
        "last_success": iso(st.last_success),
        "pass_error": st.last_error,
        "pending": len(st.pending),
        "pending_files": [p.relpath for p in st.pending[:_LISTED_FILES]],
        "last_error": failed[-1].last_error if failed else st.last_error,
        "next_retry": iso(_next_retry(st.pending)),
    }


def _next_retry(pending: list[Pending]) -> float | None:
    """When the first failed file is tried again by time (some wait for a change)."""
    due = [p.next_attempt for p in pending if p.last_error and p.next_attempt > 0]
    return min(due) if due else None


def iso(stamp: float | None) -> str | None:
    """A local ISO-8601 time with its UTC offset."""
    return None if stamp is None else time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(stamp))
