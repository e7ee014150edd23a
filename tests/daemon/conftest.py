"""Fixtures of the daemon tests: a manifest in tmp_path (helpers in :mod:`tests.helpers`).

Every test gets its own local folder, remote folder and state dir, so tests never see
each other's files or state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cat2sync.manifest import Manifest, load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, write_manifest
from tests.helpers.daemon import MakeManifest, upload_rule


@pytest.fixture
def make_manifest(
    tmp_path: Path, server: LocalServer, remote_dir: str, data_dir: Path
) -> MakeManifest:
    """Write ``tmp_path/<name>.toml`` (one upload rule named "up": ``data_dir`` ->
    ``remote_dir`` on the session server, as alice; state in ``tmp_path/state``) and
    return it loaded.

    Keyword arguments are upload-rule keys (``settle`` defaults to 0.2 s); ``daemon``
    adds ``[daemon]`` keys; ``url``/``username``/``password`` select another server.
    """

    def make(
        *,
        daemon: dict[str, Any] | None = None,
        url: str | None = None,
        username: str = ALICE[0],
        password: str = ALICE[1],
        name: str = "manifest",
        **rule: Any,
    ) -> Manifest:
        path = write_manifest(
            tmp_path / f"{name}.toml",
            url=url or server.url,
            username=username,
            password=password,
            upload=[upload_rule(data_dir, remote_dir, **rule)],
            daemon=daemon,
        )
        return load_manifest(path)

    return make
