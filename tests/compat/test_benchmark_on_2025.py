"""``benchmarks/run.py --caterva2-2025`` runs the client cases against a 2025.8.7 server
and verifies their results (figures are never asserted: see docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cat2sync.testing import caterva2_2025_bindir

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def test_the_client_cases_run_against_a_2025_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    bindir = caterva2_2025_bindir(request.config)
    out = tmp_path / "bench.json"
    args = ["--caterva2-2025", str(bindir), "--tiny", "--repeat", "1", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args, "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["failures"] == []
    assert {row["case"] for row in report["results"]} == {
        "upload-b2nd",
        "download-b2nd",
        "download-bin",
    }
    assert f"server: Caterva2 2025.8.7 (cat2sub) from {bindir}" in done.stdout
