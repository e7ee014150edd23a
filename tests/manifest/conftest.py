"""The manifest tests need no server: each writes ``cat2sync.toml`` in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with an ``acquisition`` subfolder, made the current directory."""
    (tmp_path / "acquisition").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path
