"""A queue of (rule, path) work items that become due at a time, run on a thread pool.

Touching an item again postpones it (this is how files *settle*); an item never runs
twice at once: a touch while it runs makes it run again afterwards.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["DueQueue"]

log = logging.getLogger(__name__)

#: The handler returns None when done, or the time at which to run the item again.
Handler = Callable[[Hashable], float | None]


class DueQueue:
    def __init__(self, handler: Handler, *, workers: int) -> None:
        self._handler = handler
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cat2sync-io")
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._running: set[Hashable] = set()
        self._again: dict[Hashable, float] = {}
        self._seq = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="cat2sync-queue", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def touch(self, key: Hashable, due: float | None = None) -> None:
        """Run ``key`` at ``due`` (default now); a later touch replaces the time."""
        due = time.time() if due is None else due
        with self._cond:
            if key in self._running:
                self._again[key] = max(due, self._again.get(key, 0.0))
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._seq), key))
            self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._due) + len(self._running)

    def idle(self) -> bool:
        return len(self) == 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._due or self._running:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is not None else 1.0)
        return True

    def stop(self) -> None:
        """Stop taking items; wait for the running ones to finish."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.time()
                while self._heap and self._heap[0][0] <= now:
                    due, _, key = heapq.heappop(self._heap)
                    if self._due.get(key) != due:
                        continue  # superseded by a later touch
                    del self._due[key]
                    self._running.add(key)
                    self._pool.submit(self._run, key)
                wait = self._heap[0][0] - now if self._heap else None
                self._cond.wait(wait)

    def _run(self, key: Hashable) -> None:
        again: float | None = None
        try:
            again = self._handler(key)
        except Exception:  # the handler reports its own errors; never lose the item
            log.exception("unexpected error on %s", key)
            again = time.time() + 30
        with self._cond:
            self._running.discard(key)
            later = self._again.pop(key, None)
            if later is not None:
                again = later if again is None else min(again, later)
            if again is not None and not self._stopped:
                self._due[key] = again
                heapq.heappush(self._heap, (again, next(self._seq), key))
            self._cond.notify_all()
