"""``cat2sync status`` reads the state store, whether the daemon runs or not."""

from __future__ import annotations

import time
from pathlib import Path

import tomli_w

from cat2sync import status
from cat2sync.manifest import load_manifest
from cat2sync.records import Conflict
from cat2sync.state import StateStore
from tests.helpers.cli import cli


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


def test_conflicts_are_counted_and_the_latest_shown(tmp_path: Path) -> None:
    path = _manifest(tmp_path)
    manifest = load_manifest(path)
    with StateStore(manifest.daemon.state_dir) as state:
        state.record_pass("up", started=time.time(), error=None)
        for n in range(2):
            state.add_total("up", "conflict", 0)
            state.add_conflict(
                Conflict(
                    rule="up",
                    side="upload",
                    path=f"run_{n}.b2nd",
                    remote=f"@personal/x/run_{n}.b2nd",
                    action="keep-both",
                    copy=f"@personal/x/run_{n}.conflict-20261201T120000Z.b2nd",
                    reason="the remote was changed by another writer since cat2sync wrote it",
                    created=time.time() + n,
                )
            )
    rule = status.report(manifest)["rules"]["up"]
    assert rule["conflicts"] == 2
    assert [c["path"] for c in rule["latest_conflicts"]] == ["run_1.b2nd", "run_0.b2nd"]
    code, out, _ = cli("status", str(path))
    assert code == 0
    assert "  conflicts: 2 kept, the latest " in out
    assert "run_1.b2nd -> @personal/x/run_1.conflict-20261201T120000Z.b2nd" in out
