"""Fixtures for the client tests: local array files, fresh users, public folders."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest

from cat2sync import Client
from cat2sync.server import LocalServer, LocalServer2025

NEWCOMER_PASSWORD = "newcomerpass1"  # the server refuses passwords under 8 characters
ALICE = ("alice@example.com", "alicepass1")  # created by tests/conftest.py
ADMIN = ("admin@example.com", "adminpass1")

MakeB2nd = Callable[..., Path]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_2026(reason): the test needs what only a 2026 server offers"
    )
    config.addinivalue_line(
        "markers", "needs_2025(reason): the test is about how the client copes with a 2025 server"
    )


@pytest.fixture(scope="session", params=["2026.9.2", "2025.8.7"])
def server(request: pytest.FixtureRequest, server: LocalServer) -> LocalServer:
    """Every client test runs against both server versions: the session's 2026.9.2
    server, and the seed-era 2025.8.7 one (``old_server``)."""
    if request.param == "2025.8.7":
        old: LocalServer = request.getfixturevalue("old_server")
        return old
    return server


@pytest.fixture(scope="session")
def legacy(server: LocalServer) -> bool:
    """Whether this run of the test is against the 2025.8.7 server."""
    return isinstance(server, LocalServer2025)


@pytest.fixture(autouse=True)
def _server_version_marks(request: pytest.FixtureRequest) -> None:
    """Skip a ``needs_2026`` test on the 2025 server, and a ``needs_2025`` one on 2026."""
    if "server" not in request.fixturenames:
        return
    old = request.getfixturevalue("legacy")
    for name, skip in (("needs_2026", old), ("needs_2025", not old)):
        mark = request.node.get_closest_marker(name)
        if mark is not None and skip:
            pytest.skip(f"{name}: {mark.args[0]}")


@pytest.fixture
def make_b2nd(data_dir: Path) -> MakeB2nd:
    """Write ``array`` as a local ``.b2nd`` file named ``name``; returns its path."""

    def make(name: str, array: Any, **kwargs: Any) -> Path:
        path = data_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        blosc2.asarray(np.asarray(array), urlpath=str(path), mode="w", **kwargs)
        return path

    return make


@pytest.fixture(scope="module")
def alice(server: LocalServer) -> Iterator[Client]:
    """Alice, logged in once per module (a login costs the server ~0.2 s of hashing).

    For tests that only need a working login and keep to their own remote folders;
    tests that touch client state (cookies, subscriptions) use ``client``.
    """
    with Client(server.url, ALICE) as c:
        yield c


@pytest.fixture(scope="module")
def admin(server: LocalServer) -> Iterator[Client]:
    """The superuser, logged in once per module."""
    with Client(server.url, ADMIN) as c:
        yield c


@pytest.fixture
def newcomer(server: LocalServer, admin: Client) -> Iterator[Client]:
    """A client for a user created just for this test: an empty, private @personal."""
    email = f"new-{uuid.uuid4().hex[:10]}@example.com"
    admin.adduser(email, NEWCOMER_PASSWORD)
    with Client(server.url, (email, NEWCOMER_PASSWORD)) as c:
        yield c
    admin.deluser(email)


@pytest.fixture
def public_dir() -> str:
    """A fresh folder in @public (shared by everybody, so it must be unique)."""
    return f"@public/t-{uuid.uuid4().hex[:10]}"


def structured(shape: tuple[int, ...]) -> np.ndarray:
    """A structured array like the seed's ``ds-2d-fields.b2nd``: fields ``a`` (f4), ``b`` (f8)."""
    n = int(np.prod(shape))
    arr = np.zeros(shape, dtype=[("a", "<f4"), ("b", "<f8")])
    arr["a"] = np.linspace(0, 1, n, dtype="f4").reshape(shape)
    arr["b"] = 1 + np.linspace(0, 1, n).reshape(shape)
    return arr


@pytest.fixture(scope="session")
def fields_array() -> np.ndarray:
    """Like the seed's ``ds-2d-fields.b2nd`` (100x200). Shared: do not modify it."""
    return structured((100, 200))
