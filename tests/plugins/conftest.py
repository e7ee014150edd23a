"""Fixtures of the plugin tests (helpers in :mod:`tests.helpers.plugins`).

Every test gets its own local folder, remote folder and state dir. The first-party
plugins keep their configuration in module globals: :func:`first_party` puts them back
after each test that uses them.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from cat2sync.server import LocalServer
from tests.helpers.plugins import Env


@pytest.fixture
def env(tmp_path: Path, server: LocalServer, remote_dir: str, data_dir: Path) -> Env:
    return Env(tmp_path, server, remote_dir, data_dir)


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
