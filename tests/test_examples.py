"""Every manifest in examples/configs/ loads (paths need not exist on this machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cat2sync.manifest import load_manifest
from tests.helpers.paths import REPO

CONFIGS = sorted((REPO / "examples" / "configs").glob("*.toml"))


def test_there_are_examples() -> None:
    names = {p.name for p in CONFIGS}
    assert {"quickstart.toml", "beamline.toml", "mirror.toml", "lazyexpr.toml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_loads(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAT2_PASSWORD", "not-a-real-password")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".config" / "cat2sync").mkdir(parents=True)
    (tmp_path / ".config" / "cat2sync" / "password").write_text("secret\n")
    manifest = load_manifest(path, check_paths=False)
    assert manifest.uploads or manifest.subscriptions


def test_quickstart_flows_both_ways() -> None:
    manifest = load_manifest(CONFIGS[0].parent / "quickstart.toml", check_paths=False)
    assert manifest.servers["default"].url is None  # the embedded server
    (upload,) = manifest.uploads
    (mirror,) = manifest.subscriptions
    assert mirror.remote == upload.remote
