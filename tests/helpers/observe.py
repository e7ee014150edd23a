"""A daemon with its status endpoint on a free loopback port, against the real server,
and readers of what it serves (the tests in ``tests/observability/``).

``observe(manifest)`` starts the daemon (``Daemon.start()``, as ``cat2sync run`` does)
and gives the endpoint's URL, the events so far, the parsed ``/metrics`` (with
prometheus-client's own parser) and ``/status.json``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from prometheus_client.parser import text_string_to_metric_families

from cat2sync.daemon import Daemon
from cat2sync.events import Event, EventKind
from cat2sync.manifest import Manifest, load_manifest

SETTLE = "0.2s"
ANY_PORT = "127.0.0.1:0"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def observed_manifest(
    tmp_path: Path,
    *,
    url: str,
    login: tuple[str, str],
    uploads: list[dict[str, Any]] | None = None,
    subscribe: list[dict[str, Any]] | None = None,
    daemon: dict[str, Any] | None = None,
) -> Manifest:
    """``tmp_path/cat2sync.toml`` with the endpoint on any free port, loaded."""
    doc: dict[str, Any] = {
        "daemon": {"state_dir": "state", "http": ANY_PORT, **(daemon or {})},
        "server": {"url": url, "username": login[0], "password": login[1]},
    }
    if uploads:
        doc["upload"] = uploads
    if subscribe:
        doc["subscribe"] = subscribe
    path = tmp_path / "cat2sync.toml"
    path.write_text(tomli_w.dumps(doc))
    return load_manifest(path)


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of one sample, None when there is no such series."""
    return samples.get((name, frozenset(labels.items())))


class Observed:
    """A running daemon and its endpoint."""

    def __init__(self, manifest: Manifest) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self.daemon = Daemon(manifest, emit=self._collect)

    def _collect(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def events(self, kind: EventKind | None = None) -> list[Event]:
        with self._lock:
            return [e for e in self._events if kind is None or e.kind == kind]

    @property
    def url(self) -> str:
        assert self.daemon.web is not None, "the endpoint is not on"
        return self.daemon.web.url

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path.lstrip("/"), timeout=10)

    def metrics_text(self) -> str:
        response = self.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    def metrics(self) -> Samples:
        """Every sample of ``/metrics``, by name and labels."""
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(self.metrics_text())
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return sample(self.metrics(), name, **labels)

    def status(self) -> dict[str, Any]:
        response = self.get("/status.json")
        assert response.status_code == 200
        doc: dict[str, Any] = response.json()
        return doc

    def settled(self) -> bool:
        """Nothing queued, in flight or pending."""
        return self.daemon.queue.idle() and not self.daemon.state.pending()


@contextlib.contextmanager
def observe(manifest: Manifest) -> Iterator[Observed]:
    """The daemon started on ``manifest``; always closed afterwards."""
    observed = Observed(manifest)
    try:
        observed.daemon.start()
        yield observed
    finally:
        observed.daemon.close()
