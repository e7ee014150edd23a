"""Where the server spends its CPU: py-spy attached to the Caterva2 server during a case.

``run.py --profile-server DIR`` wraps every case run in :func:`server_profile`, which
samples the server process with ``py-spy record --gil`` (only the thread holding the
GIL, i.e. Python CPU, not idle waits) and writes the collapsed stacks to
``DIR/<case>-<side>-<run>.txt``. :func:`breakdown` sorts the samples into the stages
of a request, so that the share of fixed per-request cost (HTTP, framework, login
check) and of the endpoint's own work can be read off one line.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STAGES", "breakdown", "format_breakdown", "have_py_spy", "server_profile"]

#: Stages of a request, in the order a sample is tested against them: the first stage
#: with a marker in the sample's stack gets the sample.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("login check", ("fastapi_users/", "jwt/", "sqlalchemy/", "aiosqlite/")),
    ("endpoint", ("run_endpoint_function", "WorkerThread.run")),  # async, or offloaded
    ("response", ("Response.__call__", "serialize_response", "StreamingResponse")),
    ("framework", ("starlette/", "fastapi/")),
    ("HTTP + event loop", ("",)),
)


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")  # in the venv, even if not on PATH
    return str(beside) if beside.exists() else shutil.which("py-spy")


def have_py_spy() -> bool:
    return _py_spy() is not None


@contextlib.contextmanager
def server_profile(pid: int | None, out: Path | None, rate: int = 250) -> Iterator[None]:
    """Sample process ``pid`` into ``out`` while the block runs (no-op without both)."""
    py_spy = _py_spy()
    if pid is None or out is None or py_spy is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--gil",
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # py-spy needs a moment to attach; samples before that are lost
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stage(stack: str) -> str:
    for stage, markers in STAGES:
        if any(marker in stack for marker in markers):
            return stage
    raise AssertionError("the last stage matches every stack")


def breakdown(raw: Path) -> tuple[int, dict[str, float]]:
    """Samples in a py-spy ``raw`` file, and the share of each stage (0..1)."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[_stage(stack)] += int(n)
    total = sum(counts.values())
    return total, {stage: counts[stage] / total if total else 0.0 for stage, _ in STAGES}


def format_breakdown(raw: Path) -> str:
    total, shares = breakdown(raw)
    parts = ", ".join(f"{stage} {share:.0%}" for stage, share in shares.items())
    return f"{total} samples: {parts}"
