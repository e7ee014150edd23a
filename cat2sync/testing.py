"""pytest fixtures for testing against a real local Caterva2 server.

cat2sync's own suite uses them, and so can plugin authors::

    # conftest.py
    pytest_plugins = ["cat2sync.testing"]

``server`` starts one real server per test session (users ``admin``, ``alice``,
``bob``); ``client`` is alice logged in; ``remote_dir`` is a fresh folder in her
``@personal`` root, so tests do not see each other's files. ``own_server`` is a server
of one test alone (superuser ``BOSS``), for tests that stop or kill it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .client import Client
from .server import LocalServer, LocalServer2025

__all__ = ["ADMIN", "ALICE", "BOB", "BOSS"]

ADMIN = ("admin@example.com", "adminpass1")
ALICE = ("alice@example.com", "alicepass1")
BOB = ("bob@example.com", "bobpass123")
BOSS = ("boss@example.com", "bosspass12")


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
