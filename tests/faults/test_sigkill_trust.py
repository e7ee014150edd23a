"""SIGKILL while cat2sync frees local files and while it keeps both versions of a
conflict, then a restart: no local file is ever gone without its verified copy on the
server, no byte another writer put on the server is lost, no conflict copy is made twice.

One ``cat2sync run`` ships a folder into ``@shared`` with ``delete = true`` and a short
``delete_local_after``. A local instrument keeps adding old files (freed soon after they
are shipped) and takes "clash" files through v1 -> (another account replaces the remote
copy) -> v2, each of which must end as the other writer's version at its name and ours
in exactly one conflict copy. Each trial kills the daemon while it frees a file or while
it uploads a conflict copy (or at a random moment), restarts it and compares everything.
``CAT2SYNC_FAULT_TRIALS`` and ``CAT2SYNC_FAULT_SEED`` as for the other SIGKILL trials.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cat2sync import Client
from cat2sync.errors import NotFound
from cat2sync.server import LocalServer
from cat2sync.state import StateStore
from cat2sync.testing import ALICE, BOB, poll, wait_until, write_manifest
from tests.helpers.cli import DaemonProcess
from tests.helpers.compare import is_temporary, local_files
from tests.helpers.faults import CONVERGE, SEED, TRIALS, FaultStats, server_storage, write_atomic

pytestmark = pytest.mark.faults

KINDS = ("freeing", "conflict upload")
JITTER = {"freeing": 0.05, "conflict upload": 0.01}
COPY = re.compile(r"(c\d+)\.conflict-\d{8}T\d{6}Z(-\d+)?\.txt")


def _remote_bytes(client: Client, remote: str) -> bytes | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            client.download_to(remote, Path(tmp) / "f")
        except NotFound:
            return None
        return (Path(tmp) / "f").read_bytes()


@dataclass
class Clash:
    """A file two writers disagree about: ours v1, then theirs, then ours v2."""

    name: str
    step: int = 0  # 0: v1 written, 1: theirs written, 2: v2 written
    ours: list[bytes] = field(default_factory=list)
    theirs: bytes = b""


class Instrument:
    """The local instrument and the other writer (bob, with his own client)."""

    def __init__(self, root: Path, server: LocalServer, remote: str, state: Path, seed: int):
        self.up = root / "up"
        self.up.mkdir()
        self.remote = remote
        self.state = state
        self.bob = Client(server.url, BOB, timeout=60)
        self.rng = random.Random(seed)
        self.kept: dict[str, bytes] = {}  # old files, to be freed: their last content
        self.clashes: dict[str, Clash] = {}
        self.conflicts_tallied = 0  # every check sees the earlier trials' conflicts again
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def close(self) -> None:
        self.bob.close()

    def old_file(self) -> None:
        name = f"keep/k{len(self.kept):03d}.txt"
        body = f"{name} {self.rng.random()}\n".encode() * self.rng.randint(1, 200)
        path = write_atomic(self.up / name, body)
        then = time.time() - 3600  # long unchanged: freed once shipped and verified
        os.utime(path, (then, then))
        self.kept[name] = body

    def new_clash(self) -> None:
        clash = Clash(f"c{len(self.clashes):03d}")
        self._write_ours(clash)
        self.clashes[clash.name] = clash

    def _write_ours(self, clash: Clash) -> None:
        body = f"ours {clash.name} v{len(clash.ours) + 1} {self.rng.random()}\n".encode()
        clash.ours.append(body)
        write_atomic(self.up / "clash" / f"{clash.name}.txt", body)

    def advance(self) -> None:
        """Take one clash a step further, when the daemon has done its part."""
        waiting = [c for c in self.clashes.values() if c.step < 2]
        if not waiting:
            return
        clash = self.rng.choice(waiting)
        if clash.step == 0 and self._recorded(clash):
            body = f"theirs {clash.name} {self.rng.random()}\n".encode()
            staged = self.up.parent / f"bob-{clash.name}"
            staged.write_bytes(body)
            self.bob.upload(staged, f"{self.remote}/clash/{clash.name}.txt")
            clash.theirs, clash.step = body, 1
        elif clash.step == 1:
            self._write_ours(clash)
            clash.step = 2

    def _recorded(self, clash: Clash) -> bool:
        """v1 is on the server and recorded with its ETag: the other writer may come."""
        try:
            with StateStore(self.state, readonly=True) as state:
                rec = state.get_shipped("up", f"clash/{clash.name}.txt")
        except Exception:  # the daemon is starting up, or migrating
            return False
        return rec is not None and rec.etag is not None and rec.size == len(clash.ours[-1])

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        actions: list[tuple[float, Callable[[], None]]] = [
            (3, self.old_file),
            (2, self.new_clash),
            (6, self.advance),
        ]
        try:
            while not self._stop.wait(self.rng.uniform(0.05, 0.3)):
                self.rng.choices([f for _, f in actions], [w for w, _ in actions])[0]()
        except Exception as exc:  # surfaced by stop()
            self.errors.append(f"{exc.__class__.__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        assert not self.errors, self.errors


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    conflicts: int = 0
    local_bytes_lost: int = 0
    foreign_bytes_lost: int = 0
    files: int = 0


def _check(client: Client, inst: Instrument) -> Outcome:
    """Everything as it must be once the daemon has caught up."""
    out = Outcome()
    listed = set(client.get_list(inst.remote))
    local = {rel for rel in local_files(inst.up) if not is_temporary(rel)}
    out.problems += [f"temporary on the server: {n}" for n in listed if is_temporary(n)]
    for name, body in inst.kept.items():
        out.files += 1
        if name in local:
            if (inst.up / name).read_bytes() != body:
                out.problems.append(f"{name}: local bytes changed")
            if name not in listed:
                out.problems.append(f"{name}: not shipped yet")
        elif _remote_bytes(client, f"{inst.remote}/{name}") != body:
            out.local_bytes_lost += len(body)
            out.problems.append(f"{name}: freed without its copy on the server")
    copies: dict[str, list[str]] = {}
    for n in listed:
        match = COPY.fullmatch(n.rsplit("/", 1)[-1])
        if match:
            copies.setdefault(match[1], []).append(n)
    for clash in inst.clashes.values():
        out.files += 1
        remote = f"{inst.remote}/clash/{clash.name}.txt"
        at_name = _remote_bytes(client, remote)
        if clash.step >= 1 and at_name != clash.theirs:
            out.foreign_bytes_lost += len(clash.theirs)
            out.problems.append(f"{clash.name}: the other writer's version is gone")
        if clash.step == 0 and at_name != clash.ours[-1]:
            out.problems.append(f"{clash.name}: v1 not shipped yet")
        mine = copies.get(clash.name, [])
        if clash.step == 2:
            out.conflicts += len(mine)
            if len(mine) != 1:
                out.problems.append(f"{clash.name}: {len(mine)} conflict copies, not 1")
            elif _remote_bytes(client, f"{inst.remote}/{mine[0]}") != clash.ours[-1]:
                out.problems.append(f"{clash.name}: the conflict copy is not our v2")
        elif mine:
            out.problems.append(f"{clash.name}: a conflict copy before any conflict")
    return out


def _converge(client: Client, inst: Instrument, stats: FaultStats, what: str) -> Outcome:
    """Wait until everything checks out; the last check goes into the tally."""
    last: list[Outcome] = []

    def settled() -> bool:
        last[:] = [_check(client, inst)]
        return not last[0].problems

    try:
        wait_until(
            settled,
            timeout=CONVERGE,
            interval=1.0,
            message=f"convergence {what}",
            state=lambda: last[0].problems[:5] if last else None,
        )
    finally:
        if last:
            stats.files_compared += last[0].files
            stats.conflicts += max(0, last[0].conflicts - inst.conflicts_tallied)
            inst.conflicts_tallied = max(inst.conflicts_tallied, last[0].conflicts)
            stats.local_bytes_lost += last[0].local_bytes_lost
            stats.foreign_bytes_lost += last[0].foreign_bytes_lost
    return last[0]


def _trigger(kind: str, inst: Instrument, server: LocalServer) -> Callable[[], bool]:
    if kind == "freeing":

        def freed() -> int:
            return sum(not (inst.up / name).exists() for name in list(inst.kept))

        before = freed()
        return lambda: freed() > before

    def conflict_upload() -> bool:
        stored = server_storage(server, f"{inst.remote}/clash")
        return stored is not None and any(stored.glob(".cat2sync-*"))

    return conflict_upload


@pytest.mark.timeout(max(300, 120 + 40 * TRIALS))
def test_sigkill_while_freeing_and_keeping_both(
    tmp_path: Path, server: LocalServer, fault_stats: FaultStats
) -> None:
    rng = random.Random(SEED + 1)
    remote = f"@shared/t-{uuid.uuid4().hex[:10]}"
    manifest = write_manifest(
        tmp_path / "cat2sync.toml",
        url=server.url,
        username=ALICE[0],
        password=ALICE[1],
        daemon={"rescan": "1s", "retry_max": "2s"},
        upload=[
            {
                "name": "up",
                "local": str(tmp_path / "up"),
                "remote": remote,
                "settle": "0.2s",
                "delete": True,
                "max_delete": 1.0,
                "delete_local_after": "2s",
            }
        ],
    )
    inst = Instrument(tmp_path, server, remote, tmp_path / "state", SEED)
    proc = DaemonProcess(manifest, tmp_path / "daemon.log").start()
    with Client(server.url, ALICE, timeout=60) as client:
        try:
            proc.wait_ready()
            for trial in range(TRIALS):
                kind = KINDS[trial % len(KINDS)]
                inst.start()
                time.sleep(rng.uniform(1.0, 3.0))
                if rng.random() < 0.25:
                    how = "at a random moment"
                else:
                    seen = poll(_trigger(kind, inst, server), timeout=15.0, interval=0.002)
                    time.sleep(rng.uniform(0.0, JITTER[kind]))
                    how = f"during {kind}" if seen else "at a random moment"
                proc.kill()
                fault_stats.fault(f"SIGKILL {how}")
                fault_stats.trials += 1
                inst.stop()
                proc.start()
                proc.wait_ready()
                outcome = _converge(client, inst, fault_stats, f"after trial {trial} ({kind})")
                assert outcome.local_bytes_lost == outcome.foreign_bytes_lost == 0
        except BaseException:
            print(proc.text()[-5000:])
            raise
        finally:
            proc.stop()
            inst.close()
