"""The upload queue's retries follow each error's remedy, and ``pending`` says when.

The engine here is a stand-in that raises the error under test: these tests are about
the queue's policy, not about sending (the daemon tests send to the real server).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cat2sync.engine.backlog import Backlog
from cat2sync.engine.lazy import LazyRouter
from cat2sync.engine.mode import ONCE, RUN, Mode
from cat2sync.errors import FileChanged, NotReady, Remedy, ServerError, TransformError
from cat2sync.events import Event, EventKind
from cat2sync.manifest import UploadRule
from cat2sync.scheduler import Scheduler
from cat2sync.state import StateStore


class _Engine:
    """Raises ``error`` (when set) where the real engine would send the file."""

    def __init__(self, rule: UploadRule) -> None:
        self.rule = rule
        self.client = None
        self.error: Exception | None = None

    def local_for(self, relpath: str) -> Path:
        return self.rule.local / relpath

    def sync_file(self, relpath: str) -> Event:
        if self.error is not None:
            raise self.error
        return Event(kind=EventKind.UPLOADED, rule=self.rule.name, path=relpath)

    def follow_up(self, relpath: str, event: Event) -> list[Any]:
        return []


class _Setup:
    def __init__(self, tmp_path: Path, mode: Mode) -> None:
        self.rule = UploadRule(name="up", local=tmp_path / "data", remote="@personal/x", settle=0)
        self.rule.local.mkdir()
        self.file = self.rule.local / "a.b2nd"
        self.file.write_bytes(b"x")
        old = time.time() - 3600  # settled long ago
        os.utime(self.file, (old, old))
        self.state = StateStore(tmp_path / "state")
        self.events: list[Event] = []
        lazy = LazyRouter(Scheduler(), mode, stopping=threading.Event(), emit=self.events.append)
        self.backlog = Backlog(self.state, emit=self.events.append, lazy=lazy, mode=mode, workers=1)
        self.engine = _Engine(self.rule)
        self.backlog.use({"up": self.engine}, retry_max=60.0)  # type: ignore[dict-item]

    def attempt(self, error: Exception | None) -> float | None:
        self.engine.error = error
        self.state.add_pending("up", "a.b2nd")
        return self.backlog.run_due(("up", "a.b2nd"))

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]


@pytest.fixture
def run_mode(tmp_path: Path) -> Any:
    setup = _Setup(tmp_path, RUN)
    yield setup
    setup.state.close()


@pytest.fixture
def once_mode(tmp_path: Path) -> Any:
    setup = _Setup(tmp_path, ONCE)
    yield setup
    setup.state.close()


def test_a_passing_failure_is_retried_with_backoff_and_pending_says_when(run_mode: Any) -> None:
    before = time.time()
    again = run_mode.attempt(ServerError("503 Service Unavailable"))
    assert again is not None and before < again <= time.time() + 1.0  # 1 s base, jittered
    [pending] = run_mode.state.pending()
    assert (pending.attempts, pending.remedy, pending.next_attempt) == (1, "retry later", again)
    assert run_mode.kinds() == [EventKind.FAILED]
    second = run_mode.attempt(ServerError("503 Service Unavailable"))
    assert second is not None and second - time.time() <= 2.0  # doubled
    assert run_mode.state.pending()[0].attempts == 2


def test_a_file_that_cannot_be_sent_waits_for_a_change(run_mode: Any) -> None:
    assert run_mode.attempt(TransformError("transform 'scale' failed")) is None
    [pending] = run_mode.state.pending()
    assert (pending.remedy, pending.next_attempt) == (Remedy.FIX_FILE.value, 0.0)
    assert pending.last_error == "transform 'scale' failed"
    assert run_mode.kinds() == [EventKind.FAILED]


def test_a_file_still_being_written_is_tried_once_it_settles(run_mode: Any) -> None:
    for attempt in range(1, 6):
        again = run_mode.attempt(NotReady("does not open as a Blosc2 container yet"))
        assert again is not None
        assert run_mode.state.pending()[0].remedy == Remedy.WAIT.value
        # Reported once, after five attempts, not at each one.
        assert run_mode.kinds() == ([EventKind.SKIPPED] if attempt == 5 else [])
    assert run_mode.attempt(FileChanged("changed during the transfer")) is not None


def test_success_takes_the_file_off_pending(run_mode: Any) -> None:
    run_mode.attempt(ServerError("503"))
    assert run_mode.attempt(None) is None
    assert run_mode.state.pending() == []
    assert run_mode.kinds() == [EventKind.FAILED, EventKind.UPLOADED]


def test_once_counts_failures_instead_of_retrying(once_mode: Any) -> None:
    assert once_mode.attempt(ServerError("503")) is None
    assert once_mode.backlog.failures == 1
    assert once_mode.state.pending()[0].next_attempt == 0.0


def test_once_gives_a_file_being_written_three_chances(once_mode: Any) -> None:
    assert once_mode.attempt(NotReady("not yet")) is not None
    assert once_mode.attempt(NotReady("not yet")) is not None
    assert once_mode.attempt(NotReady("not yet")) is None
    assert once_mode.backlog.failures == 1
    assert once_mode.kinds() == [EventKind.SKIPPED]


def test_a_file_deleted_meanwhile_is_forgotten(run_mode: Any) -> None:
    run_mode.file.unlink()
    assert run_mode.attempt(ServerError("503")) is None
    assert run_mode.state.pending() == []
    assert run_mode.kinds() == []
