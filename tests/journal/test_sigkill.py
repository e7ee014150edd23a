"""SIGKILL of a journaling uploader at a random moment of a burst, then a restart: the
journal alone brings a subscriber to the exact remote content, in one journal pass.

The uploader is a process of its own (``helpers.journal_worker``); the subscriber is a
model that keeps ``name -> ETag`` and does what the journal's changes say, asking the
server only where a real subscriber would fetch. ``CAT2SYNC_FAULT_TRIALS`` trials
(default 3); ``CAT2SYNC_FAULT_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cat2sync.client import Client
from cat2sync.errors import NotFound
from cat2sync.journal import (
    Change,
    FullPass,
    Incremental,
    JournalReader,
    Op,
    is_journal_name,
)
from cat2sync.server import LocalServer

pytestmark = pytest.mark.faults

TESTS = Path(__file__).resolve().parent.parent
TRIALS = int(os.environ.get("CAT2SYNC_FAULT_TRIALS", "3"))
SEED = int(os.environ.get("CAT2SYNC_FAULT_SEED", str(random.randrange(2**31))))


def _worker(
    server: LocalServer, folder: str, state: Path, seed: int, operations: int
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "helpers.journal_worker",
            server.url,
            folder,
            str(state),
            str(seed),
            str(operations),
        ],
        cwd=TESTS,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(server: LocalServer, folder: str, state: Path, seed: int, operations: int) -> None:
    worker = _worker(server, folder, state, seed, operations)
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err[-2000:]


def _kill_after(worker: subprocess.Popen[str], changes: int, rng: random.Random) -> None:
    """SIGKILL ``worker`` a random moment after its ``changes``-th change."""
    assert worker.stdout is not None
    for _ in range(changes):
        if not worker.stdout.readline():
            break  # it finished first: a kill at the very end
    time.sleep(rng.uniform(0, 0.08))
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)


def _truth(client: Client, folder: str) -> dict[str, str | None]:
    return {
        n: client.stat(f"{folder}/{n}")[1]
        for n in client.get_list(folder)
        if not is_journal_name(n)
    }


def _fetched(client: Client, folder: str, name: str, mirror: dict[str, str | None]) -> None:
    """What a real subscriber's fetch (or ``info``) leaves: the ETag now, or nothing."""
    try:
        mirror[name] = client.stat(f"{folder}/{name}")[1]
    except NotFound:
        mirror.pop(name, None)


def _apply(
    client: Client, folder: str, changes: tuple[Change, ...], mirror: dict[str, str | None]
) -> None:
    for change in changes:
        if change.op is Op.REMOVED:
            mirror.pop(change.name, None)
        elif change.op is Op.MOVED and change.src in mirror and mirror[change.src] == change.etag:
            mirror[change.name] = mirror[change.src]  # the local copy is renamed
        elif change.op in (Op.SENT, Op.APPENDED) and mirror.get(change.name) == change.etag:
            continue  # the mirror has this version already
        else:
            _fetched(client, folder, change.name, mirror)


@pytest.mark.timeout(max(300, 60 * TRIALS))
def test_a_killed_uploader_leaves_journals_that_bring_subscribers_to_the_remote(
    server: LocalServer, client: Client, remote_dir: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    for trial in range(TRIALS):
        folder, state = f"{remote_dir}/t{trial}", tmp_path / f"state-{trial}.db"
        _run(server, folder, state, seed=rng.randrange(2**31), operations=3)
        reader = JournalReader(client, folder)
        first = reader.read({})
        assert isinstance(first, FullPass)
        mirror = _truth(client, folder)  # the full pass
        worker = _worker(server, folder, state, seed=rng.randrange(2**31), operations=25)
        _kill_after(worker, rng.randint(0, 20), rng)
        _run(server, folder, state, seed=rng.randrange(2**31), operations=5)
        got = reader.read(first.positions)
        assert isinstance(got, Incremental), f"seed {SEED}, trial {trial}: {got}"
        _apply(client, folder, got.changes, mirror)
        assert mirror == _truth(client, folder), f"seed {SEED}, trial {trial}"
