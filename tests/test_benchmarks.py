"""Smoke test of ``benchmarks/run.py``: every case runs at tiny sizes, for cat2sync and the
reference, and verifies its result (a wrong result makes the command fail).

Timing is never asserted here; the figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "run.py"


def _cases() -> list[str]:
    listed = subprocess.run([sys.executable, str(BENCH), "--list"], capture_output=True,
                            text=True, check=True, timeout=60)
    return [line.split()[0].strip("'") for line in listed.stdout.splitlines() if line]


def test_every_case_runs_and_verifies_at_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(BENCH), "--tiny", "--repeat", "1", "--json",
                           str(out), "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["failures"] == []
    ran = {row["case"] for row in report["results"]}
    assert ran == set(_cases())
    for row in report["results"]:
        assert "cat2sync" in row, row
    # The table the README promises: one row per figure, with both columns.
    assert "| case | reference | cat2sync | ratio | target |" in done.stdout
