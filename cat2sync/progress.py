"""A one-line progress display for ``cat2sync once`` on a terminal.

Redrawn twice a second: files done of queued, bytes up and down with their rates, and
the files in flight. Log lines are printed above it (see :class:`ProgressHandler`).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from .events import human_bytes

__all__ = ["Progress", "ProgressHandler", "Snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    done: int
    queued: int
    bytes_sent: int
    bytes_received: int
    active: tuple[str, ...]


class Progress:
    def __init__(
        self, snapshot: Callable[[], Snapshot], stream: TextIO, interval: float = 0.5
    ) -> None:
        self._snapshot = snapshot
        self._stream = stream
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="cat2sync-progress", daemon=True)
        self._last: tuple[float, int, int] | None = None
        self._line = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.redraw()
        with self._lock:
            if self._line:
                self._stream.write("\n")
                self._stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.redraw()

    def render(self, snap: Snapshot, now: float) -> str:
        up = down = 0.0
        if self._last is not None:
            then, sent, received = self._last
            elapsed = max(now - then, 1e-6)
            up = (snap.bytes_sent - sent) / elapsed
            down = (snap.bytes_received - received) / elapsed
        self._last = (now, snap.bytes_sent, snap.bytes_received)
        text = (
            f"{snap.done}/{snap.queued} files · ↑ {human_bytes(snap.bytes_sent)} "
            f"({human_bytes(int(up))}/s) · ↓ {human_bytes(snap.bytes_received)} "
            f"({human_bytes(int(down))}/s)"
        )
        if snap.active:
            text += " · " + ", ".join(snap.active[:3])
        return text

    def redraw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        line = self.render(self._snapshot(), time.monotonic())[:width]
        with self._lock:
            self._stream.write("\r" + line.ljust(len(self._line)))
            self._stream.flush()
            self._line = line

    def clear(self) -> None:
        with self._lock:
            if self._line:
                self._stream.write("\r" + " " * len(self._line) + "\r")
                self._stream.flush()


class ProgressHandler(logging.Handler):
    """Writes log records above the progress line instead of through it."""

    def __init__(self, inner: logging.Handler, progress: Progress) -> None:
        super().__init__(inner.level)
        self._inner = inner
        self._progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self._progress.clear()
        self._inner.handle(record)
        self._progress.redraw()
