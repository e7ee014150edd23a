"""``cat2sync status`` answers "is it keeping up?" from the state folder alone: per rule
what it moved, its backlog and the age of the oldest file, the last success, the last
error and the next retry, and whether the server answered at the last attempt."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import tomli_w

from cat2sync import status
from cat2sync.cli import main
from cat2sync.manifest import Manifest, load_manifest
from cat2sync.state import StateStore
from cat2sync.telemetry import Telemetry

URL = "http://127.0.0.1:9"


def _manifest(tmp_path: Path) -> Manifest:
    (tmp_path / "data").mkdir()
    doc = {
        "daemon": {"state_dir": "state"},
        "server": {"url": URL},
        "upload": [{"name": "up", "local": "data", "remote": "@personal/x"}],
        "subscribe": [{"name": "down", "root": "@public/y", "local": "mirror"}],
    }
    path = tmp_path / "cat2sync.toml"
    path.write_text(tomli_w.dumps(doc))
    return load_manifest(path)


def _run(manifest: Manifest, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    assert main(["status", *flags, str(manifest.path)]) == 0
    return capsys.readouterr().out


def test_a_rule_that_keeps_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest(tmp_path)
    with StateStore(manifest.daemon.state_dir) as state:
        state.record_pass("up", started=time.time(), error=None)
        for kind, nbytes in [("uploaded", 1000), ("uploaded", 500), ("appended", 24)]:
            state.add_total("up", kind, nbytes)
        state.record_pass("down", started=time.time(), error=None)
        state.add_total("down", "downloaded", 2048)
    Telemetry(manifest.daemon.state_dir).observer("default", URL)("info", "ok")
    out = _run(manifest, capsys)
    up, down = out.split("\ndown: ")
    assert up.startswith("up: last pass ") and up.splitlines()[0].endswith(": keeping up")
    assert "  moved: 1 appended, 2 uploaded (1.5 KB up, 0 B down)" in up
    assert "backlog" not in up
    assert f"  server default: {URL}, answered at the last attempt" in up
    assert "moved: 1 downloaded (0 B up, 2.0 KB down)" in down
    doc = json.loads(_run(manifest, capsys, "--json"))
    rule = doc["rules"]["up"]
    assert rule["moved"] == {
        "appended": {"files": 1, "bytes": 24},
        "uploaded": {"files": 2, "bytes": 1500},
    }
    assert (rule["bytes_up"], rule["bytes_down"]) == (1524, 0)
    assert rule["server_answered"] is True
    assert doc["servers"]["default"]["answered"] is True


def test_a_rule_that_falls_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest(tmp_path)
    retry_at = time.time() + 120
    with StateStore(manifest.daemon.state_dir) as state:
        state.record_pass("up", started=time.time(), error=None)
        state.add_pending("up", "old.b2nd")
        state.fail_pending(
            "up",
            "old.b2nd",
            "cannot connect to http://127.0.0.1:9: refused",
            next_attempt=retry_at,
            remedy="retry later",
        )
    Telemetry(manifest.daemon.state_dir).observer("default", URL)("upload", "transport_error")
    out = _run(manifest, capsys)
    first, *details = out.split("\ndown: ")[0].splitlines()
    assert first.endswith(": NOT keeping up (see the last error)")
    assert "  moved: nothing yet (0 B up, 0 B down)" in details
    assert any(line.startswith("  backlog: 1 file(s), the oldest waiting for ") for line in details)
    assert (
        f"  last error: cannot connect to http://127.0.0.1:9: refused "
        f"(next retry {status.iso(retry_at)})"
    ) in details
    assert details[-1].startswith(f"  server default: {URL}, did NOT answer at the last attempt")
    rule = json.loads(_run(manifest, capsys, "--json"))["rules"]["up"]
    assert rule["pending"] == 1 and rule["oldest_pending_age"] >= 0
    assert rule["oldest_pending"] is not None
    assert rule["server_answered"] is False


def test_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(_manifest(tmp_path), capsys)
    assert out.startswith("up: last pass never, last success never: no pass yet\n")
    assert f"  server default: {URL}, no request recorded yet" in out
