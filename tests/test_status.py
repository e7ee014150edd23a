"""``cat2sync status`` reads the state store, whether the daemon runs or not."""

from __future__ import annotations

import time
from pathlib import Path

import tomli_w

from cat2sync import status
from cat2sync.manifest import load_manifest
from cat2sync.state import StateStore


def _manifest(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    path = tmp_path / "cat2sync.toml"
    doc = {
        "daemon": {"state_dir": "state"},
        "server": {"url": "http://127.0.0.1:9"},
        "upload": [{"name": "up", "local": "data", "remote": "@personal/x"}],
    }
    path.write_text(tomli_w.dumps(doc))
    return path


def test_before_any_run(tmp_path: Path) -> None:
    doc = status.report(load_manifest(_manifest(tmp_path)))
    assert doc["rules"]["up"]["last_pass"] is None
    assert doc["rules"]["up"]["pending"] == 0


def test_a_failed_file_says_when_it_is_tried_next(tmp_path: Path) -> None:
    manifest = load_manifest(_manifest(tmp_path))
    retry_at = time.time() + 120
    with StateStore(manifest.daemon.state_dir) as state:
        state.record_pass("up", started=time.time(), error=None)
        state.add_pending("up", "waiting.b2nd")  # noticed, not failed: no retry time
        state.fail_pending(
            "up", "a.b2nd", "503 Service Unavailable", next_attempt=retry_at, remedy="retry later"
        )
    rule = status.report(manifest)["rules"]["up"]
    assert rule["pending"] == 2
    assert rule["last_error"] == "503 Service Unavailable"
    assert rule["next_retry"] == status.iso(retry_at)
    assert rule["last_success"] == rule["last_pass"] is not None
