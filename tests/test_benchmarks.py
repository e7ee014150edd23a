"""Smoke test of ``benchmarks/run.py``: every case runs at tiny sizes, for cat2sync and the
reference, and verifies its result (a wrong result makes the command fail).

Timing is never asserted here; the figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO

BENCH = REPO / "benchmarks" / "run.py"


def _cases() -> list[str]:
    listed = subprocess.run(
        [sys.executable, str(BENCH), "--list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [line.split()[0].strip("'") for line in listed.stdout.splitlines() if line]


def test_every_case_runs_and_verifies_at_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--tiny",
            "--repeat",
            "1",
            "--json",
            str(out),
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["failures"] == []
    ran = {row["case"] for row in report["results"]}
    assert ran == set(_cases())
    for row in report["results"]:
        assert "cat2sync" in row, row
    # The table the README promises: one row per figure, with both columns.
    assert "| case | reference | cat2sync | ratio | target |" in done.stdout


def test_a_server_profile_is_split_into_the_stages_of_a_request(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from _profile import breakdown
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    loop = "run (uvicorn/main.py:1);Runner.run (asyncio/runners.py:2)"
    app = f"{loop};Starlette.__call__ (starlette/applications.py:3)"
    http = "HttpToolsProtocol.data_received (uvicorn/protocols/http/httptools_impl.py:4)"
    login = "solve_dependencies (fastapi/dependencies/utils.py:5);decode (jwt/api_jwt.py:6)"
    raw = tmp_path / "stacks.txt"
    raw.write_text(
        "\n".join(
            [
                f"{loop};{http} 2",
                f"{app};{login} 3",
                "Thread.run (threading.py:7);_connection_worker_thread (aiosqlite/core.py:8) 1",
                f"{app};run_endpoint_function (fastapi/routing.py:9);get_info (server.py:10) 2",
                f"{app};Response.__call__ (starlette/responses.py:11) 1",
                f"{app};Router.__call__ (starlette/routing.py:12) 1",
            ]
        )
        + "\n"
    )
    total, shares = breakdown(raw)
    assert total == 10
    assert shares == {
        "login check": 0.4,
        "endpoint": 0.2,
        "response": 0.1,
        "framework": 0.1,
        "HTTP + event loop": 0.2,
    }
