"""Helpers for the plugin tests: small plugins made on the spot, manifests with
``[plugins.NAME]`` tables for the session server, one-shot and running daemons.

Every test gets its own local folder, remote folder and state dir. The first-party
plugins keep their configuration in module globals: :func:`first_party` puts them back
after each test that uses them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
import tomli_w

from cat2sync import Client
from cat2sync.daemon import Daemon
from cat2sync.errors import NotFound
from cat2sync.events import Event, EventKind
from cat2sync.manifest import Manifest, load_manifest
from cat2sync.plugins import hookimpl
from cat2sync.plugins.manager import Plugins
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE

SETTLE = "0.2s"
REPO = Path(__file__).resolve().parents[2]


# -- plugins made on the spot -----------------------------------------------------


def make_plugin(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    """A plugin module called ``name`` (its registered name, as in error messages) whose
    hooks are the given functions, keyword = hook name (``cat2sync_event=...``)."""
    module = types.ModuleType(name)
    for hook, func in hooks.items():
        assert hook.startswith("cat2sync_"), hook
        setattr(module, hook, hookimpl(func))
    return module


def transforms_plugin(
    name: str,
    **transforms: Callable[[np.ndarray, Any], np.ndarray],
) -> types.ModuleType:
    """A plugin that registers ``transforms`` (name -> function)."""

    def cat2sync_register_transforms(register: Callable[[str, Any], None]) -> None:
        for key, func in transforms.items():
            register(key, func)

    return make_plugin(name, cat2sync_register_transforms=cat2sync_register_transforms)


class Recorder:
    """A plugin that records every event it is told about (thread-safe)."""

    def __init__(self, name: str = "recorder") -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

        def cat2sync_event(event: Event) -> None:
            with self.lock:
                self.events.append(event)

        self.module = make_plugin(name, cat2sync_event=cat2sync_event)

    def of(self, kind: EventKind) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.kind == kind]


# -- manifests ----------------------------------------------------------------------


@dataclass
class Env:
    """One test's folders and the session server."""

    tmp_path: Path
    server: LocalServer
    remote_dir: str
    data_dir: Path

    def upload_rule(self, **keys: Any) -> dict[str, Any]:
        """An ``[[upload]]`` table: ``data_dir`` -> ``remote_dir`` (keys override)."""
        return {
            "name": "up",
            "local": str(self.data_dir),
            "remote": self.remote_dir,
            "settle": SETTLE,
            **keys,
        }

    def subscribe_rule(self, **keys: Any) -> dict[str, Any]:
        """A ``[[subscribe]]`` table: ``remote_dir`` -> ``tmp_path/mirror``."""
        return {
            "name": "down",
            "remote": self.remote_dir,
            "local": str(self.tmp_path / "mirror"),
            "every": "1h",
            **keys,
        }

    def write(
        self,
        *,
        uploads: list[dict[str, Any]] | None = None,
        subscribes: list[dict[str, Any]] | None = None,
        tables: dict[str, Any] | None = None,
        name: str = "cat2sync",
    ) -> Path:
        """Write ``tmp_path/<name>.toml`` (state in ``tmp_path/state``, alice's login);
        ``tables`` is the ``[plugins]`` table (``{"notify": {...}, "disable": [...]}``)."""
        doc: dict[str, Any] = {
            "daemon": {"state_dir": "state"},
            "server": {"url": self.server.url, "username": ALICE[0], "password": ALICE[1]},
        }
        if uploads:
            doc["upload"] = uploads
        if subscribes:
            doc["subscribe"] = subscribes
        if tables:
            doc["plugins"] = tables
        path = self.tmp_path / f"{name}.toml"
        path.write_text(tomli_w.dumps(doc))
        return path

    def manifest(self, plugins: Plugins, **doc: Any) -> Manifest:
        """:meth:`write`, then load it the way the CLI does (plugin tables checked)."""
        return load_manifest(self.write(**doc), plugin_settings=plugins.declared_settings())


@pytest.fixture
def env(tmp_path: Path, server: LocalServer, remote_dir: str, data_dir: Path) -> Env:
    return Env(tmp_path, server, remote_dir, data_dir)


# -- running the daemon ---------------------------------------------------------------


@dataclass
class Pass:
    """What one ``Daemon.once()`` did."""

    failures: int
    events: list[Event] = field(default_factory=list)

    def of(self, kind: EventKind, path: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind == kind and (path is None or e.path == path)]

    def paths(self, kind: EventKind) -> list[str]:
        return sorted(e.path for e in self.of(kind))


def run_once(manifest: Manifest, plugins: Plugins) -> Pass:
    """One full pass with a fresh daemon using ``plugins`` (closed afterwards)."""
    events: list[Event] = []
    daemon = Daemon(manifest, plugins=plugins, emit=events.append)
    try:
        failures = daemon.once()
    finally:
        daemon.close()
    return Pass(failures, events)


class Running:
    """A started daemon; events are collected as they come."""

    def __init__(self, manifest: Manifest, plugins: Plugins) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.daemon = Daemon(manifest, plugins=plugins, emit=self._emit)

    def _emit(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, kind: EventKind, path: str | None = None) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.kind == kind and (path is None or e.path == path)]

    def describe(self) -> str:
        with self.lock:
            kinds = Counter(e.kind.value for e in self.events)
            errors = [e.message for e in self.events if e.kind == EventKind.FAILED][-3:]
        pending = [(p.relpath, p.attempts) for p in self.daemon.state.pending()]
        return f"events {dict(kinds)}, pending {pending}, last errors {errors}"


@contextlib.contextmanager
def running(manifest: Manifest, plugins: Plugins) -> Iterator[Running]:
    """``Daemon.start()``; always closed afterwards."""
    run = Running(manifest, plugins)
    try:
        run.daemon.start()
        yield run
    finally:
        run.daemon.close()


def wait_until(
    cond: Callable[[], Any],
    timeout: float = 20.0,
    message: str = "condition",
    state: Callable[[], object] | None = None,
) -> Any:
    """Poll ``cond`` until it is truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; seen: {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}{seen}")
        time.sleep(0.05)


# -- local and remote data --------------------------------------------------------------


def write_b2nd(path: Path, array: np.ndarray, chunks: tuple[int, ...] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    blosc2.asarray(array, urlpath=str(path), mode="w", chunks=chunks)
    return path


def grow_b2nd(path: Path, rows: np.ndarray) -> None:
    """Append ``rows`` to a ``.b2nd`` in place (resize, then write), as an instrument would."""
    arr = blosc2.open(str(path), mode="a")
    start = arr.shape[0]
    arr.resize((start + rows.shape[0], *arr.shape[1:]))
    arr[start : start + rows.shape[0]] = rows
    del arr  # flushes the frame
    # A second write within the file system's timestamp resolution must still look new.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def local_array(path: Path) -> np.ndarray:
    return np.asarray(blosc2.open(str(path), mode="r")[:])


def remote_array(client: Client, remote: str) -> np.ndarray:
    return np.asarray(client.fetch(remote))


def remote_info(client: Client, remote: str) -> dict[str, Any] | None:
    try:
        info, _ = client.stat(remote)
    except NotFound:
        return None
    return info


# -- the CLI ----------------------------------------------------------------------------


def cli_env(*paths: Path) -> dict[str, str]:
    """The environment for ``python -m cat2sync`` with ``paths`` importable too."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*(str(p) for p in paths), str(REPO)])}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("CAT2SYNC_TRACE_PLUGINS", None)
    return env


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cat2sync", *args]


# -- the first-party plugins ------------------------------------------------------------


@pytest.fixture
def first_party(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.SimpleNamespace]:
    """The four first-party plugin modules; their global configuration is put back
    afterwards (and the notifier's webhook thread stopped)."""
    import cat2sync_convert
    import cat2sync_derive
    import cat2sync_hdf5
    import cat2sync_notify

    monkeypatch.setattr(cat2sync_derive, "_rules", cat2sync_derive._rules)
    monkeypatch.setattr(cat2sync_hdf5, "_options", cat2sync_hdf5._options)
    if hasattr(cat2sync_convert, "_options"):
        monkeypatch.setattr(cat2sync_convert, "_options", cat2sync_convert._options)
    notifier = cat2sync_notify.notifier()
    before = notifier.options
    yield types.SimpleNamespace(
        convert=cat2sync_convert, derive=cat2sync_derive, hdf5=cat2sync_hdf5, notify=cat2sync_notify
    )
    notifier.close(timeout=5)
    notifier.configure(before)


# -- a loopback webhook receiver ---------------------------------------------------------


class Receiver:
    """Collects the JSON bodies POSTed to it; listens on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.got = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.got:
                    receiver.bodies.append(json.loads(body))
                    receiver.got.notify_all()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(
        self, cond: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        with self.got:
            self.got.wait_for(lambda: cond(self.bodies), timeout)
            return list(self.bodies)
