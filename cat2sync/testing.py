"""pytest fixtures for testing against a real local Caterva2 server, and the helpers that
tests of the daemon and of plugins need.

cat2sync's own suite uses them, and so can plugin authors::

    # conftest.py
    pytest_plugins = ["cat2sync.testing"]

``server`` starts one real server per test session (users ``admin``, ``alice``,
``bob``); ``client`` is alice logged in; ``remote_dir`` is a fresh folder in her
``@personal`` root, so tests do not see each other's files. ``own_server`` is a server
of one test alone (superuser ``BOSS``), for tests that stop or kill it.

The helpers write manifests (:func:`write_manifest`, :func:`plugin_manifest`) and load
them as the CLI does (:func:`load_with_plugins`), write, grow and read ``.b2nd`` files,
wait for a condition (:func:`wait_until`, :func:`poll`) and run the daemon: one pass
(:func:`run_once`) or in the background (:func:`running`)::

    def test_my_plugin(tmp_path, server, remote_dir, data_dir):
        plugins = Plugins(entry_points=False, extra=[my_plugin])
        path = write_manifest(
            tmp_path / "cat2sync.toml",
            url=server.url,
            username=ALICE[0],
            password=ALICE[1],
            upload=[{"name": "up", "local": str(data_dir), "remote": remote_dir}],
            plugins={"mine": {"level": 3}},
        )
        write_b2nd(data_dir / "run.b2nd", np.arange(10))
        done = run_once(load_with_plugins(path, plugins), plugins)
        assert done.failures == 0 and done.paths(EventKind.UPLOADED) == ["run.b2nd"]
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import blosc2
import numpy as np
import pytest
import tomli_w

from .client import Client
from .daemon import Daemon
from .events import Event, EventKind
from .manifest import Manifest, load_manifest
from .plugins.manager import Plugins
from .server import LocalServer, LocalServer2025

__all__ = [
    "ADMIN",
    "ALICE",
    "BOB",
    "BOSS",
    "Pass",
    "Running",
    "grow_b2nd",
    "load_with_plugins",
    "plugin_manifest",
    "poll",
    "read_b2nd",
    "run_once",
    "running",
    "wait_until",
    "write_b2nd",
    "write_manifest",
]

ADMIN = ("admin@example.com", "adminpass1")
ALICE = ("alice@example.com", "alicepass1")
BOB = ("bob@example.com", "bobpass123")
BOSS = ("boss@example.com", "bosspass12")

_T = TypeVar("_T")


# -- waiting ------------------------------------------------------------------------------


def poll(cond: Callable[[], _T], timeout: float, *, interval: float = 0.05) -> _T:
    """Call ``cond`` every ``interval`` s until it returns something truthy or ``timeout`` s
    have passed; returns its last value. A wait that never fails (see :func:`wait_until`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_until(
    cond: Callable[[], _T],
    timeout: float = 20.0,
    *,
    interval: float = 0.05,
    message: str = "condition",
    state: Callable[[], object] | None = None,
) -> _T:
    """Poll ``cond`` until it returns something truthy, and return that; fail the test
    after ``timeout`` s.

    :param message: what is waited for, for the failure message.
    :param state: describes what was seen instead, for the failure message.
    """
    value = poll(cond, timeout, interval=interval)
    if not value:
        seen = f"; seen: {state()}" if state is not None else ""
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}{seen}")
    return value


# -- manifests ----------------------------------------------------------------------------


def write_manifest(
    path: Path,
    *,
    url: str | None,
    username: str | None = None,
    password: str | None = None,
    server: Mapping[str, Any] | None = None,
    daemon: Mapping[str, Any] | None = None,
    upload: Sequence[Mapping[str, Any]] = (),
    subscribe: Sequence[Mapping[str, Any]] = (),
    lazyexpr: Sequence[Mapping[str, Any]] = (),
    plugins: Mapping[str, Any] | None = None,
) -> Path:
    """Write a manifest to ``path`` (its state in ``state/`` beside it) and return the path.

    :param url: the server; ``None``: the embedded one.
    :param server: more ``[server]`` keys (``timeout``, ``verify``, ``password_file``...).
    :param daemon: ``[daemon]`` keys (``state_dir`` included, to put it elsewhere).
    :param upload: the ``[[upload]]`` tables; likewise ``subscribe`` and ``lazyexpr``.
    :param plugins: the ``[plugins]`` table (``{"notify": {...}, "disable": [...]}``).

    The file is replaced atomically, as a careful editor would: a running daemon reloads
    it, and must never read half of it.
    """
    login = {"url": url, "username": username, "password": password}
    doc: dict[str, Any] = {"daemon": {"state_dir": str(path.parent / "state"), **(daemon or {})}}
    srv = {key: value for key, value in login.items() if value is not None} | dict(server or {})
    if srv:
        doc["server"] = srv
    for key, rules in (("upload", upload), ("subscribe", subscribe), ("lazyexpr", lazyexpr)):
        if rules:
            doc[key] = [dict(rule) for rule in rules]
    if plugins:
        doc["plugins"] = dict(plugins)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(tomli_w.dumps(doc))
    tmp.replace(path)
    return path


def load_with_plugins(path: Path, plugins: Plugins, *, check_paths: bool = True) -> Manifest:
    """Load the manifest ``path`` the way the CLI does: every ``[plugins.NAME]`` table is
    checked against the settings that ``plugins`` declare (and defaults filled in)."""
    return load_manifest(path, plugin_settings=plugins.declared_settings(), check_paths=check_paths)


def plugin_manifest(
    folder: Path, plugins: Plugins, text: str, *, section: str | None = None
) -> Manifest:
    """A manifest for a plugin's unit tests: the TOML ``text`` written as
    ``folder/cat2sync.toml`` (below a ``[plugins.<section>]`` header when ``section`` is
    given), then loaded by :func:`load_with_plugins` without checking its folders.

    :raises ManifestError: what ``plugins`` declare refuses the tables.
    """
    path = folder / "cat2sync.toml"
    path.write_text(f"[plugins.{section}]\n{text}\n" if section else text)
    return load_with_plugins(path, plugins, check_paths=False)


# -- .b2nd files --------------------------------------------------------------------------


def write_b2nd(path: Path, array: Any, **layout: Any) -> Path:
    """Save ``array`` as the Blosc2 file ``path`` (its folder made) and return the path.

    :param layout: ``chunks``, ``blocks``, ``cparams``... as :func:`blosc2.asarray` takes them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    blosc2.asarray(array, urlpath=str(path), mode="w", **layout)
    return path


def grow_b2nd(path: Path, rows: Any) -> None:
    """Append ``rows`` to a ``.b2nd`` in place (resize, then write), as an instrument would."""
    arr = blosc2.open(str(path), mode="a")
    start = arr.shape[0]
    arr.resize((start + rows.shape[0], *arr.shape[1:]))
    arr[start : start + rows.shape[0]] = rows
    del arr  # flushes the frame
    # A second write within the file system's timestamp resolution must still look new.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def read_b2nd(path: Path) -> np.ndarray:
    """The whole content of the Blosc2 file ``path`` (scalars included)."""
    return np.asarray(blosc2.open(str(path), mode="r")[()])


# -- the daemon ---------------------------------------------------------------------------


@dataclass
class Pass:
    """What one :meth:`Daemon.once` did: its failures, its events and its traffic."""

    failures: int
    events: list[Event] = field(default_factory=list)
    bytes_sent: int = 0
    requests: int = 0

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]

    def of(self, kind: EventKind, path: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind == kind and (path is None or e.path == path)]

    def paths(self, kind: EventKind) -> list[str]:
        return sorted(e.path for e in self.of(kind))


def run_once(
    manifest: Manifest,
    plugins: Plugins | None = None,
    *,
    prepare: Callable[[Daemon], None] | None = None,
) -> Pass:
    """One full pass of every rule by a fresh daemon, closed afterwards.

    :param plugins: the plugins it uses (default: the built-in ones only).
    :param prepare: sees the daemon before the pass (to wrap its client, say).
    """
    events: list[Event] = []
    daemon = Daemon(manifest, plugins=plugins, emit=events.append)
    try:
        if prepare is not None:
            prepare(daemon)
        failures = daemon.once()
        stats = [c.stats for c in daemon.clients.values()]
        return Pass(
            failures,
            events,
            bytes_sent=sum(s.bytes_sent for s in stats),
            requests=sum(s.requests for s in stats),
        )
    finally:
        daemon.close()


class Running:
    """A daemon started by :func:`running`. Its events are collected as they come;
    ``on_event`` sees each one first, in the daemon's thread."""

    def __init__(
        self,
        manifest: Manifest,
        plugins: Plugins | None,
        on_event: Callable[[Event], None] | None,
    ) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.on_event = on_event
        self.daemon = Daemon(manifest, plugins=plugins, emit=self._emit)

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)
        with self.lock:
            self.events.append(event)

    def of(self, kind: EventKind, path: str | None = None) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.kind == kind and (path is None or e.path == path)]

    @property
    def client(self) -> Client:
        return self.daemon.clients["default"]

    def settled(self) -> bool:
        """Nothing queued, running or pending (a file that failed stays pending)."""
        return self.daemon.queue.idle() and not self.daemon.state.pending()

    def describe(self) -> str:
        """Where the daemon is, for failure messages."""
        with self.lock:
            kinds = Counter(e.kind.value for e in self.events)
            errors = [e.message for e in self.events if e.kind == EventKind.FAILED][-3:]
        pending = self.daemon.state.pending()
        return (
            f"events {dict(kinds)}, queue {len(self.daemon.queue)}, "
            f"pending {len(pending)} {[(p.relpath, p.attempts) for p in pending[:5]]}, "
            f"last errors {errors}"
        )


@contextlib.contextmanager
def running(
    manifest: Manifest,
    plugins: Plugins | None = None,
    *,
    on_event: Callable[[Event], None] | None = None,
) -> Iterator[Running]:
    """The daemon started (first passes done, watches armed); always closed afterwards.

    :param plugins: the plugins it uses (default: the built-in ones only).
    """
    run = Running(manifest, plugins, on_event)
    try:
        run.daemon.start()
        yield run
    finally:
        run.daemon.close()


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """The real Caterva2 server on a free loopback port, with admin, alice and bob."""
    srv = LocalServer(tmp_path_factory.mktemp("caterva2"), superuser=ADMIN)
    srv.start()
    try:
        srv.add_user(*ALICE)
        srv.add_user(*BOB)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A server of this test alone, with the superuser ``BOSS``: stop or kill it at will."""
    srv = LocalServer(tmp_path / "server", superuser=BOSS)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: LocalServer) -> Iterator[Client]:
    """Alice, logged in."""
    with Client(server.url, ALICE) as c:
        yield c


@pytest.fixture
def admin_client(server: LocalServer) -> Iterator[Client]:
    with Client(server.url, ADMIN) as c:
        yield c


@pytest.fixture
def anon_client(server: LocalServer) -> Iterator[Client]:
    with Client(server.url) as c:
        yield c


@pytest.fixture
def remote_dir() -> str:
    """A fresh folder in alice's @personal."""
    return f"@personal/t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


# -- the Caterva2 2025.8.7 server ------------------------------------------------------
#
# ``old_server`` is the seed-era server (``cat2sub``), started from a virtual environment
# of its own (``make caterva2-2025``) with the same users as ``server``. Its tests are
# skipped when that environment is missing, unless CAT2SYNC_CATERVA2_2025_BIN names it
# (``make test`` does): then a missing server is an error, not a skip.

CATERVA2_2025_BIN = "CAT2SYNC_CATERVA2_2025_BIN"


def caterva2_2025_bindir(config: pytest.Config) -> Path:
    """The ``bin`` folder of the 2025.8.7 server's environment; skips the test if absent."""
    named = os.environ.get(CATERVA2_2025_BIN)
    if named:
        return Path(named)
    default = config.rootpath / ".venv-c2-2025" / "bin"
    if not (default / "cat2sub").exists():
        pytest.skip(
            f"no Caterva2 2025.8.7 server: run 'make caterva2-2025' or set {CATERVA2_2025_BIN}"
        )
    return default


@contextlib.contextmanager
def running_with_users(srv: LocalServer) -> Iterator[LocalServer]:
    """Start ``srv``, add alice and bob; stop it afterwards."""
    srv.start()
    try:
        srv.add_user(*ALICE)
        srv.add_user(*BOB)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def old_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalServer]:
    """A real Caterva2 2025.8.7 server on a free loopback port, with admin, alice and bob."""
    bindir = caterva2_2025_bindir(request.config)
    srv = LocalServer2025(tmp_path_factory.mktemp("caterva2-2025"), bindir=bindir, superuser=ADMIN)
    with running_with_users(srv) as started:
        yield started
