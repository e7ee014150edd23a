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
from cat2sync.server import LocalServer

NEWCOMER_PASSWORD = "newcomerpass1"  # the server refuses passwords under 8 characters
ALICE = ("alice@example.com", "alicepass1")  # created by tests/conftest.py
ADMIN = ("admin@example.com", "adminpass1")

MakeB2nd = Callable[..., Path]


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
