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


@pytest.fixture
def newcomer(server: LocalServer, admin_client: Client) -> Iterator[Client]:
    """A client for a user created just for this test: an empty, private @personal."""
    email = f"new-{uuid.uuid4().hex[:10]}@example.com"
    admin_client.adduser(email, NEWCOMER_PASSWORD)
    with Client(server.url, (email, NEWCOMER_PASSWORD)) as c:
        yield c
    admin_client.deluser(email)


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


@pytest.fixture
def fields_array() -> np.ndarray:
    return structured((100, 200))
