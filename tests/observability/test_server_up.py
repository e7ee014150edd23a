"""``cat2sync_server_up`` follows the server: 0 within seconds of stopping it (the
daemon's own requests, and an idle probe), 1 again after it restarts; ``status.json``
and ``cat2sync status`` say the same, the latter also once the daemon stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from cat2sync import status
from cat2sync.cli import main
from cat2sync.server import LocalServer
from cat2sync.testing import BOSS, wait_until
from tests.helpers.observe import observe, observed_manifest

DOWN_WITHIN = 30.0  # seconds; the probe looks every second at a server idle for 5


def test_server_up_falls_and_returns(
    tmp_path: Path, own_server: LocalServer, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = {"name": "up", "local": str(data_dir), "remote": "@personal/up", "settle": "0.2s"}
    manifest = observed_manifest(tmp_path, url=own_server.url, login=BOSS, uploads=[rule])
    with observe(manifest) as obs:
        assert obs.value("cat2sync_server_up", server="default") == 1
        own_server.stop()
        wait_until(
            lambda: obs.value("cat2sync_server_up", server="default") == 0,
            timeout=DOWN_WITHIN,
            message="server_up to fall to 0",
        )
        doc = obs.status()
        assert doc["servers"]["default"]["answered"] is False
        assert doc["rules"]["up"]["server_answered"] is False
        failed = obs.value(
            "cat2sync_requests_total", server="default", endpoint="roots", outcome="transport_error"
        )
        assert failed is not None and failed >= 1  # the probe's
        # cat2sync status, while the daemon runs (it reads the state folder only).
        assert main(["status", str(manifest.path)]) == 0
        assert "did NOT answer at the last attempt" in capsys.readouterr().out
        own_server.start()
        wait_until(
            lambda: obs.value("cat2sync_server_up", server="default") == 1,
            timeout=DOWN_WITHIN,
            message="server_up to return to 1",
        )
        own_server.stop()
        wait_until(
            lambda: obs.value("cat2sync_server_up", server="default") == 0,
            timeout=DOWN_WITHIN,
            message="server_up to fall again",
        )
    # The daemon has stopped: the last attempt is still known.
    assert status.report(manifest)["servers"]["default"]["answered"] is False
    assert main(["status", str(manifest.path)]) == 0
    out = capsys.readouterr().out
    assert f"server default: {own_server.url}, did NOT answer at the last attempt" in out
