"""A thin adapter over watchfiles: changes below the watched folders, in batches.

Runs ``watchfiles.watch`` in a thread and hands each batch of ``(change, path)`` to a
callback. When the OS cannot watch (the inotify watch limit is reached, say) it says so
in one line and the daemon falls back to periodic rescans.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import watchfiles

__all__ = ["Change", "Watcher"]

log = logging.getLogger(__name__)

Change = watchfiles.Change
Batch = set[tuple[watchfiles.Change, str]]


class Watcher:
    """Watches ``folders`` until :meth:`stop`; calls ``on_changes(batch)`` from its thread.

    :param on_failure: called once with the reason if watching stops working.
    """

    def __init__(
        self,
        folders: Sequence[Path],
        on_changes: Callable[[Batch], None],
        on_failure: Callable[[str], None],
        *,
        step_ms: int = 50,
        debounce_ms: int = 200,
    ) -> None:
        self.folders = list(folders)
        self._on_changes = on_changes
        self._on_failure = on_failure
        self._step = step_ms
        self._debounce = debounce_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cat2sync-watch", daemon=True)
        self.failed: str | None = None

    def start(self) -> None:
        if self.folders:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            for batch in watchfiles.watch(
                *self.folders,
                stop_event=self._stop,
                step=self._step,
                debounce=self._debounce,
                rust_timeout=1000,
                yield_on_timeout=False,
                raise_interrupt=False,
                ignore_permission_denied=False,
                watch_filter=None,
            ):
                self._on_changes(batch)
        except Exception as exc:  # OSError from the notifier: watch limit, unmounted folder
            self.failed = f"{exc.__class__.__name__}: {exc}"
            log.warning(
                "cannot watch %s (%s); falling back to periodic rescans",
                ", ".join(map(str, self.folders)),
                self.failed,
            )
            self._on_failure(self.failed)
