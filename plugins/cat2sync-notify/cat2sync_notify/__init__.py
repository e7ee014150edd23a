"""cat2sync-notify: every event as a JSON line in a file, and optionally POSTed to a webhook.

::

    [plugins.notify]
    file = "events.jsonl"                 # relative to the manifest's folder
    kinds = ["uploaded", "failed"]        # default: every kind
    webhook = "https://hooks.example.org/cat2sync"
    webhook_timeout = 5

Each line (and each POST body) is one JSON object::

    {"time": "2025-01-31T12:00:00.123Z", "kind": "uploaded", "rule": "camera",
     "path": "run_1.b2nd", "remote": "@shared/camera/run_1.b2nd", "rows": 100,
     "bytes": 81920, "message": null}

Writing the file is synchronous (one locked append and flush per event). Webhook POSTs
are sent by one background thread from a small bounded queue: a slow or unreachable
receiver never blocks transfers; a failed POST is logged as one warning, and events
that find the queue full are dropped (with one warning per burst).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import httpx

from cat2sync.errors import SettingError
from cat2sync.events import Event, EventKind
from cat2sync.manifest import SettingSpec
from cat2sync.plugins import hookimpl, read_settings

if TYPE_CHECKING:
    from cat2sync.manifest import Manifest

__all__ = [
    "KINDS",
    "NAME",
    "QUEUE_SIZE",
    "SETTINGS",
    "Notifier",
    "NotifyOptions",
    "event_record",
]

log = logging.getLogger(__name__)

#: The plugin's name: its entry point, ``[plugins.notify]`` and ``disable = ["notify"]``.
NAME: Final = "notify"
KINDS: Final = tuple(kind.value for kind in EventKind)
#: Webhook POSTs waiting to be sent; more are dropped.
QUEUE_SIZE: Final = 100

SETTINGS: Final[Mapping[str, SettingSpec]] = {
    "file": SettingSpec(
        type=Path,
        default=None,
        description="append events as JSON lines to this file (relative "
        "to the manifest's folder); absent: no file",
    ),
    "kinds": SettingSpec(
        type=list,
        default=None,
        description="event kinds to report (" + ", ".join(KINDS) + "); absent: all",
    ),
    "webhook": SettingSpec(
        type=str, default=None, description="POST each event as JSON to this http(s) URL"
    ),
    "webhook_timeout": SettingSpec(
        type=float, default=5.0, description="seconds to wait for the webhook"
    ),
}
DEFAULTS: Final[Mapping[str, Any]] = {key: spec.default for key, spec in SETTINGS.items()}


def _where(url: str) -> str:
    """A URL without its path, query or credentials: webhook paths often hold a secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyOptions:
    file: Path | None = None
    kinds: frozenset[str] | None = None
    webhook: str | None = None
    webhook_timeout: float = 5.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> NotifyOptions:
        """Validate a (possibly partial) settings table. :raises SettingError:"""
        merged = {**DEFAULTS, **settings}
        file = merged["file"]
        if file is not None:
            file = Path(file)
            if file.is_dir():
                raise SettingError(NAME, "file", f"is a folder: {file}")
        kinds = merged["kinds"]
        if kinds is not None:
            if not isinstance(kinds, list):
                raise SettingError(NAME, "kinds", f"expected an array of strings, got {kinds!r}")
            for index, kind in enumerate(kinds):
                if kind not in KINDS:
                    raise SettingError(
                        NAME,
                        f"kinds[{index}]",
                        f"unknown event kind {kind!r} (expected one of: {', '.join(KINDS)})",
                    )
            kinds = frozenset(kinds)
        webhook = merged["webhook"]
        if webhook is not None:
            try:
                parts = urlsplit(webhook) if isinstance(webhook, str) else None
            except ValueError:
                parts = None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise SettingError(NAME, "webhook", "expected an http:// or https:// URL")
        timeout = merged["webhook_timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise SettingError(
                NAME, "webhook_timeout", f"expected a positive number of seconds, got {timeout!r}"
            )
        return cls(file=file, kinds=kinds, webhook=webhook, webhook_timeout=float(timeout))


def event_record(event: Event, now: _dt.datetime | None = None) -> dict[str, Any]:
    """The JSON object written and POSTed for one event."""
    when = (now or _dt.datetime.now(_dt.UTC)).astimezone(_dt.UTC)
    return {
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "kind": EventKind(event.kind).value,
        "rule": event.rule,
        "path": event.path,
        "remote": event.remote,
        "rows": event.rows,
        "bytes": event.bytes,
        "message": event.message,
    }


_Job = tuple[str, float, dict[str, Any]]


class Notifier:
    """Writes events to the file and hands them to the webhook thread; thread-safe."""

    def __init__(self, options: NotifyOptions | None = None) -> None:
        self._options = options or NotifyOptions()
        self._file_lock = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._dropping = False

    @property
    def options(self) -> NotifyOptions:
        return self._options

    def configure(self, options: NotifyOptions) -> None:
        self._options = options  # one rebinding: a concurrent event sees old or new

    def handle(self, event: Event) -> None:
        options = self._options
        if options.file is None and options.webhook is None:
            return
        if options.kinds is not None and EventKind(event.kind).value not in options.kinds:
            return
        record = event_record(event)
        if options.file is not None:
            self._append(options.file, json.dumps(record, ensure_ascii=False) + "\n")
        if options.webhook is not None:
            self._post_later((options.webhook, options.webhook_timeout, record))

    # -- file

    def _append(self, path: Path, line: str) -> None:
        # Opened per line: a log rotated away is followed by a fresh file.
        with self._file_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()

    # -- webhook

    def _post_later(self, job: _Job) -> None:
        self._ensure_worker()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            if not self._dropping:
                self._dropping = True
                log.warning(
                    "notify: webhook %s is behind (%d events waiting): dropping "
                    "events until it catches up",
                    _where(job[0]),
                    QUEUE_SIZE,
                )
            return
        self._dropping = False

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._run, name="cat2sync-notify", daemon=True
                )
                self._worker.start()

    def _run(self) -> None:
        with httpx.Client(follow_redirects=False) as http:
            while True:
                job = self._queue.get()
                try:
                    if job is None:
                        return
                    self._post(http, *job)
                finally:
                    self._queue.task_done()

    @staticmethod
    def _post(http: httpx.Client, url: str, timeout: float, record: dict[str, Any]) -> None:
        try:
            response = http.post(url, json=record, timeout=timeout)
        except Exception as exc:  # never let the thread die
            reason = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
            log.warning("notify: webhook POST to %s failed: %s", _where(url), reason)
            return
        if not response.is_success:
            log.warning(
                "notify: webhook POST to %s failed: HTTP %d %s",
                _where(url),
                response.status_code,
                response.reason_phrase,
            )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued POST was attempted; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (within ``timeout``), then stop the thread."""
        worker = self._worker
        if worker is None or not worker.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        worker.join(timeout)


# -- hooks --------------------------------------------------------------------------------

_notifier: Final = Notifier()


def notifier() -> Notifier:
    """The notifier that the hooks use."""
    return _notifier


@hookimpl
def cat2sync_declare_settings(
    declare: Callable[[str, Mapping[str, SettingSpec]], None],
) -> None:
    declare(NAME, SETTINGS)


@hookimpl
def cat2sync_configure(manifest: Manifest) -> None:
    _notifier.configure(read_settings(manifest, NAME, NotifyOptions.from_settings))


@hookimpl
def cat2sync_event(event: Event) -> None:
    _notifier.handle(event)


@hookimpl
def cat2sync_shutdown() -> None:
    _notifier.close()
