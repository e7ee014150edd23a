"""Keeping both versions when two writers disagree: free conflict names (never taken
over), the record of each conflict, and its event. The decision itself is the
planner's (:class:`.plan.Clash`); this module only carries it out."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from ..client import Client
from ..errors import NotFound
from ..events import Event, EventKind
from ..records import Conflict
from ..state import StateStore
from .plan import Clash, conflict_name

__all__ = ["free_remote_name", "place_beside", "record", "same_bytes"]

_MAX_COUNTER = 1000  # conflict copies of one file within one second
_COMPARE_BLOCK = 4 * 2**20


def free_remote_name(client: Client, remote: str, when: float) -> str:
    """A conflict name for ``remote`` that is free on the server now (a counter when the
    stamped name is taken). What remains racy: another writer taking it before our move."""
    for counter in range(_MAX_COUNTER):
        candidate = conflict_name(remote, when, counter)
        try:
            client.stat(candidate)
        except NotFound:
            return candidate
    raise FileExistsError(f"{remote}: no free conflict name after {_MAX_COUNTER} tries")


def place_beside(tmp: Path, target: Path, when: float) -> Path:
    """Give the finished temporary ``tmp`` a free conflict name beside ``target``; a hard
    link, so that an existing file is never replaced (a counter when the name is taken)."""
    for counter in range(_MAX_COUNTER):
        candidate = target.with_name(Path(conflict_name(target.name, when, counter)).name)
        try:
            os.link(tmp, candidate)
        except FileExistsError:
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        return candidate
    raise FileExistsError(f"{target}: no free conflict name after {_MAX_COUNTER} tries")


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two local files hold the same bytes (read a block at a time)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            block = fa.read(_COMPARE_BLOCK)
            if block != fb.read(_COMPARE_BLOCK):
                return False
            if not block:
                return True


def record(
    state: StateStore,
    conflict: Clash,
    *,
    rule: str,
    side: str,
    path: str,
    remote: str,
    copy: str | None,
    outcome: str,
) -> Event:
    """Record a conflict; returns its event: one line with both paths, ``outcome``
    saying where each version is."""
    state.add_conflict(
        Conflict(
            rule=rule,
            side=side,
            path=path,
            remote=remote,
            action=conflict.action,
            copy=copy,
            reason=conflict.reason,
            created=time.time(),
        )
    )
    return Event(
        kind=EventKind.CONFLICT,
        rule=rule,
        path=path,
        remote=remote,
        message=f"{conflict.reason}: {outcome}",
    )
