"""Fixtures of the mirror-side end-to-end tests: a manifest per test (helpers in
:mod:`tests.helpers.mirror`).

Everything runs against the session's real Caterva2 server (``server``, from
:mod:`cat2sync.testing`) as alice; nothing is mocked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cat2sync.server import LocalServer
from tests.helpers.mirror import alice_manifest, subscribe_rule


@pytest.fixture
def subscription(
    tmp_path: Path,
    server: LocalServer,
    remote_dir: str,
) -> Callable[..., Path]:
    """Write a manifest with one subscription of ``remote_dir`` into ``tmp_path/mirror``."""

    def make(**keys: Any) -> Path:
        rule = subscribe_rule(remote_dir, tmp_path / "mirror", **keys)
        return alice_manifest(tmp_path / "cat2sync.toml", server, subscribe=[rule])

    return make


@pytest.fixture
def mirror_dir(tmp_path: Path) -> Path:
    return tmp_path / "mirror"
