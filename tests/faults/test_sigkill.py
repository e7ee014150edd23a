"""SIGKILL of ``cat2sync run`` at seeded random moments, then a restart.

One daemon process keeps a local folder uploaded (whole files, appends, renames,
deletions), mirrors a remote folder that a "remote instrument" keeps changing (uploads,
appends, replacements), and mirrors its own upload folder back (a round trip). Each
trial picks the kind of moment to kill it in (an upload, an append, a download, a state
write), waits until that is observably under way, kills it with SIGKILL at a random
offset, lets the instruments carry on for a moment, restarts it, waits for convergence
and then compares everything exactly: remote against the local source, both mirrors
against their remote sources, row counts, and leftovers. A watchdog meanwhile checks
that no file under a final name is ever incomplete.

``CAT2SYNC_FAULT_TRIALS`` trials (default 4); ``CAT2SYNC_FAULT_SEED`` replays a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import blosc2
import numpy as np
import pytest

from cat2sync import Client
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, grow_b2nd, poll, wait_until, write_manifest
from tests.helpers.cli import DaemonProcess
from tests.helpers.compare import (
    Tally,
    compare_local,
    compare_remote,
    is_temporary,
    local_files,
    mirror_temporaries,
)
from tests.helpers.faults import (
    CONVERGE,
    SEED,
    TRIALS,
    FaultStats,
    array_file,
    server_storage,
    write_atomic,
)

pytestmark = pytest.mark.faults

KINDS = ("upload", "append", "download", "state write")
COLS = 50


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _ints(rng: np.random.Generator, rows: int, cols: int = COLS) -> np.ndarray:
    return rng.integers(0, 1000, (rows, cols)).astype(np.float64)


class Instruments:
    """The local instrument (writes into the uploaded folder) and the remote one (writes
    into the subscribed remote folder with its own client); both remember every version
    of every regular file they wrote, for the watchdog."""

    def __init__(self, root: Path, server: LocalServer, r_src: str, seed: int) -> None:
        self.up = root / "up"
        self.staging = root / "staging"
        self.staging.mkdir()
        self.client = Client(server.url, ALICE, timeout=60)
        self.r_src = r_src
        self.rng = random.Random(seed)
        self.data = np.random.default_rng(seed)
        self.local_versions: set[str] = set()
        self.remote_versions: set[str] = set()
        self.truth: dict[str, bytes | np.ndarray] = {}  # the remote source, as it must be
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self.actions: Counter[str] = Counter()

    def close(self) -> None:
        self.client.close()

    # -- local -----------------------------------------------------------------

    def seed_local(self) -> None:
        for k in range(3):
            array_file(self.up / f"arr{k}.b2nd", _ints(self.data, 120), chunks=(40, COLS))
        for j in range(4):
            self.note(j)
        self.big_local()

    def note(self, j: int) -> None:
        body = json.dumps(
            {"note": j, "noise": self.rng.random(), "pad": "x" * self.rng.randint(10, 3000)}
        ).encode()
        self.local_versions.add(_digest(body))
        path = self.up / "notes" / f"n{j:02d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)  # in place, as most instruments do: the daemon must settle

    def big_local(self) -> None:
        body = self.rng.randbytes(self.rng.randint(1, 4) * 2**20)
        self.local_versions.add(_digest(body))
        write_atomic(self.up / "big.bin", body)

    def run_file(self) -> None:
        rows = self.rng.randint(100, 3000)
        array_file(
            self.up / "runs" / f"r{self.rng.randrange(4)}.b2nd",
            _ints(self.data, rows),
            chunks=(self.rng.choice([64, 100, 250]), COLS),
        )

    def grow(self) -> None:
        grow_b2nd(
            self.up / f"arr{self.rng.randrange(3)}.b2nd", _ints(self.data, self.rng.randint(5, 120))
        )

    def rename_or_delete(self) -> None:
        notes = sorted((self.up / "notes").glob("n*.json"))
        if len(notes) < 4:
            self.note(self.rng.randrange(12))
            return
        victim = self.rng.choice(notes)
        if self.rng.random() < 0.5:
            victim.unlink()
            return
        free = [j for j in range(12) if not (self.up / "notes" / f"n{j:02d}.json").exists()]
        if free:
            victim.rename(victim.with_name(f"n{self.rng.choice(free):02d}.json"))

    # -- remote ----------------------------------------------------------------

    def _put(self, name: str, data: bytes | np.ndarray) -> None:
        local = self.staging / Path(name).name
        if isinstance(data, np.ndarray):
            blosc2.asarray(data, urlpath=str(local), mode="w", chunks=(64, *data.shape[1:]))
        else:
            local.write_bytes(data)
            self.remote_versions.add(_digest(data))
        self.client.upload(local, f"{self.r_src}/{name}")
        self.truth[name] = data

    def seed_remote(self) -> None:
        for k in range(2):
            self._put(f"s{k}.b2nd", _ints(self.data, 100))
        for j in range(3):
            self.doc(j)
        self.big_remote()

    def doc(self, j: int) -> None:
        text = "".join(f"line {i} ✓ {self.rng.random()}\n" for i in range(self.rng.randint(1, 400)))
        self._put(f"docs/d{j}.txt", text.encode())

    def big_remote(self) -> None:
        if self.rng.random() < 0.5:
            self._put("big.b2nd", self.data.random((self.rng.randint(3000, 8000), 100)))
        else:
            self._put("big.dat", self.rng.randbytes(self.rng.randint(1, 3) * 2**20))

    def append_remote(self) -> None:
        name = f"s{self.rng.randrange(2)}.b2nd"
        rows = _ints(self.data, self.rng.randint(1, 90))
        self.client.append(f"{self.r_src}/{name}", rows)
        old = self.truth[name]
        assert isinstance(old, np.ndarray)
        self.truth[name] = np.concatenate([old, rows])

    # -- running ---------------------------------------------------------------

    def start(self, kind: str, warmup: float) -> None:
        """Both instruments at work; after ``warmup`` a transfer of some size starts when
        the trial is about uploads or downloads."""
        self._stop.clear()
        local: list[tuple[float, Callable[[], None]]] = {
            "upload": [(3, self.big_local), (3, self.run_file), (2, self.any_note), (1, self.grow)],
            "append": [(6, self.grow), (1, self.any_note)],
            "download": [(1, self.grow), (1, self.any_note)],
            "state write": [
                (4, self.any_note),
                (3, self.rename_or_delete),
                (2, self.grow),
                (1, self.run_file),
            ],
        }[kind]
        remote: list[tuple[float, Callable[[], None]]] = {
            "download": [(3, self.big_remote), (3, self.append_remote), (2, self.any_doc)],
        }.get(kind, [(2, self.append_remote), (1, self.any_doc)])
        first_local = self.big_local if kind == "upload" else None
        first_remote = self.big_remote if kind == "download" else None
        self._threads = [
            threading.Thread(
                target=self._loop, args=(local, 0.1, 0.4, warmup, first_local), daemon=True
            ),
            threading.Thread(
                target=self._loop, args=(remote, 0.2, 0.6, warmup, first_remote), daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def any_note(self) -> None:
        self.note(self.rng.randrange(12))

    def any_doc(self) -> None:
        self.doc(self.rng.randrange(5))

    def _loop(
        self,
        actions: list[tuple[float, Callable[[], None]]],
        low: float,
        high: float,
        warmup: float,
        first: Callable[[], None] | None,
    ) -> None:
        weights = [w for w, _ in actions]
        funcs = [f for _, f in actions]
        deadline = time.monotonic() + warmup
        try:
            while not self._stop.wait(self.rng.uniform(low, high)):
                if first is not None and time.monotonic() >= deadline:
                    func, first = first, None
                else:
                    func = self.rng.choices(funcs, weights)[0]
                func()
                self.actions[func.__name__] += 1
        except Exception as exc:  # surfaced by stop()
            self.errors.append(f"{exc.__class__.__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not self.errors, self.errors


class Watchdog(threading.Thread):
    """Checks, all along, that files under their final names are complete: in both mirror
    folders (every array opens and decodes, every regular file is a version that was
    written) and in the server's storage of the upload folder (every regular file
    decodes to a version the local instrument wrote)."""

    def __init__(
        self,
        mirrors: dict[Path, set[str]],
        stored: Callable[[], Path | None],
        stored_versions: set[str],
    ) -> None:
        super().__init__(name="watchdog", daemon=True)
        self.mirrors = mirrors
        self.stored = stored
        self.stored_versions = stored_versions
        self.violations: list[str] = []
        self.checked = 0
        self._seen: dict[Path, tuple[int, int, int]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.03):
            for folder, versions in self.mirrors.items():
                for rel, path in local_files(folder).items():
                    if not is_temporary(rel) and not rel.startswith(".cat2sync-"):
                        self._check(path, rel, versions, stored=False)
            root = self.stored()
            if root is not None and root.is_dir():
                for path in [p for rel, p in local_files(root).items() if rel.endswith(".b2")]:
                    rel = path.relative_to(root).as_posix()
                    if not is_temporary(rel):
                        self._check(path, rel, self.stored_versions, stored=True)

    def _check(self, path: Path, rel: str, versions: set[str], *, stored: bool) -> None:
        try:
            st = path.stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if self._seen.get(path) == key:
                return
            if path.suffix == ".b2nd":
                blosc2.open(str(path), mode="r")[:]
            elif stored:  # the server's compressed frame of a regular file
                schunk = blosc2.open(str(path), mode="r")
                if _digest(schunk[:]) not in versions:
                    raise ValueError("not a version that was ever written")
            elif _digest(path.read_bytes()) not in versions:
                raise ValueError("not a version that was ever written")
        except FileNotFoundError:
            return  # replaced or removed meanwhile
        except Exception as exc:
            try:
                if path.stat().st_ino != key[0]:
                    return  # replaced while it was read: the new one is checked next time
            except OSError:
                return  # removed while it was read
            self.violations.append(
                f"{'server:' if stored else path.parent.name}/{rel}: "
                f"{exc.__class__.__name__}: {exc}"
            )
            return
        self._seen[path] = key
        self.checked += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class Trigger:
    """Waits until the moment a trial wants to kill in is observably under way."""

    def __init__(self, root: Path, server: LocalServer, r_up: str) -> None:
        self.root = root
        self.server = server
        self.r_up = r_up

    def _stored(self) -> Path | None:
        return server_storage(self.server, self.r_up)

    def arm(self, kind: str) -> Callable[[], bool]:
        if kind == "upload":

            def upload() -> bool:
                stored = self._stored()
                return stored is not None and any(stored.rglob(".cat2sync-*"))

            return upload
        if kind == "append":

            def sizes() -> list[int]:
                stored = self._stored()
                return (
                    [p.stat().st_size for p in sorted(stored.glob("arr*.b2nd"))] if stored else []
                )

            before = sizes()
            return lambda: sizes() != before
        if kind == "download":
            mirrors = (self.root / "mirror-src", self.root / "mirror-up")
            return lambda: bool(mirror_temporaries(*mirrors))
        wal = self.root / "state" / "state.db-wal"

        def stamp() -> tuple[int, int] | None:
            try:
                st = wal.stat()
            except FileNotFoundError:
                return None
            return st.st_mtime_ns, st.st_size

        first = stamp()
        return lambda: stamp() != first


JITTER = {"upload": 0.004, "append": 0.005, "download": 0.02, "state write": 0.003}


@contextlib.contextmanager
def _scenario(
    tmp_path: Path,
    server: LocalServer,
    remote_dir: str,
) -> Iterator[tuple[Instruments, Path, Path, Path]]:
    up, mirror_src, mirror_up = tmp_path / "up", tmp_path / "mirror-src", tmp_path / "mirror-up"
    r_up, r_src = f"{remote_dir}/up", f"{remote_dir}/src"
    instruments = Instruments(tmp_path, server, r_src, SEED)
    try:
        instruments.seed_local()
        instruments.seed_remote()
        manifest = write_manifest(
            tmp_path / "cat2sync.toml",
            url=server.url,
            username=ALICE[0],
            password=ALICE[1],
            daemon={"rescan": "5s", "retry_max": "2s"},
            upload=[
                {
                    "name": "up",
                    "local": str(up),
                    "remote": r_up,
                    "settle": "0.2s",
                    "exclude": ["**/~*"],
                    "delete": True,
                    "max_delete": 1.0,
                }
            ],
            subscribe=[
                {"name": "src", "root": r_src, "local": str(mirror_src), "every": "1s"},
                {
                    "name": "roundtrip",
                    "root": r_up,
                    "local": str(mirror_up),
                    "every": "1s",
                    "delete": True,
                    "max_delete": 1.0,
                },
            ],
        )
        yield instruments, manifest, mirror_src, mirror_up
    finally:
        instruments.close()


def _follower(tmp_path: Path, server: LocalServer, r_up: str) -> Path:
    """A subscriber of the upload folder in a daemon of its own, never killed: after
    each kill of the uploader, its journal passes must bring it to the remote content."""
    return write_manifest(
        tmp_path / "follower" / "cat2sync.toml",
        url=server.url,
        username=ALICE[0],
        password=ALICE[1],
        subscribe=[
            {
                "name": "follow",
                "root": r_up,
                "local": str(tmp_path / "followed"),
                "every": "1s",
                "delete": True,
                "max_delete": 1.0,
            }
        ],
    )


def _compare(
    client: Client, instruments: Instruments, r_up: str, mirror_src: Path, mirror_up: Path
) -> Tally:
    source = {
        rel: path
        for rel, path in local_files(instruments.up).items()
        if not rel.startswith("~") and "/~" not in rel
    }
    tally = compare_remote(client, r_up, source)
    if tally.problems:
        return tally  # not converged yet: the rest would only cost time
    tally = tally.merge(compare_remote(client, instruments.r_src, instruments.truth))
    followed = mirror_up.parent / "followed"
    for folder, expected in (
        (mirror_src, instruments.truth),
        (mirror_up, source),
        (followed, source),
    ):
        tally = tally.merge(compare_local(folder, expected))
    return tally


def _converge(
    client: Client,
    instruments: Instruments,
    r_up: str,
    mirror_src: Path,
    mirror_up: Path,
    stats: FaultStats,
    what: str,
) -> None:
    """Wait until everything compares equal; the last comparison goes into the tally."""
    last: list[Tally] = []

    def converged() -> bool:
        last[:] = [_compare(client, instruments, r_up, mirror_src, mirror_up)]
        return last[0].ok

    try:
        wait_until(
            converged,
            timeout=CONVERGE,
            interval=1.0,
            message=f"convergence {what}",
            state=lambda: last[0].problems[:5] if last else None,
        )
    finally:
        if last:
            stats.add(last[0])


@pytest.mark.timeout(max(300, 120 + 30 * TRIALS))  # about 4 s a trial, generous for load
def test_sigkill_trials(
    tmp_path: Path, server: LocalServer, client: Client, remote_dir: str, fault_stats: FaultStats
) -> None:
    rng = random.Random(SEED)
    r_up = f"{remote_dir}/up"
    with _scenario(tmp_path, server, remote_dir) as (instruments, manifest, mirror_src, mirror_up):
        watchdog = Watchdog(
            {mirror_src: instruments.remote_versions, mirror_up: instruments.local_versions},
            lambda: server_storage(server, r_up),
            instruments.local_versions,
        )
        trigger = Trigger(tmp_path, server, r_up)
        (tmp_path / "follower").mkdir()
        follow = _follower(tmp_path, server, r_up)
        proc = DaemonProcess(manifest, tmp_path / "daemon.log").start()
        follower = DaemonProcess(follow, tmp_path / "follower.log").start()
        watchdog.start()
        log: list[str] = []
        try:
            proc.wait_ready()
            follower.wait_ready()
            for trial in range(TRIALS):
                kind = KINDS[trial % len(KINDS)]
                began = time.monotonic()
                warmup = rng.uniform(0.3, 2.0)
                instruments.start(kind, warmup)
                if rng.random() < 0.25:  # sometimes simply a random moment
                    time.sleep(warmup + rng.uniform(0.0, 1.5))
                    how = "at a random moment"
                else:
                    time.sleep(warmup)
                    fired = trigger.arm(kind)
                    seen = poll(fired, timeout=15.0, interval=0.002)
                    time.sleep(rng.uniform(0.0, JITTER[kind]))
                    how = "once under way" if seen else "at a random moment (not observed)"
                proc.kill()
                fault_stats.fault(
                    f"SIGKILL during {kind}"
                    if how == "once under way"
                    else f"SIGKILL at a random moment ({kind} workload)"
                )
                fault_stats.trials += 1
                time.sleep(rng.uniform(0.0, 0.5))  # the instruments carry on meanwhile
                instruments.stop()
                killed = time.monotonic()
                leftovers = mirror_temporaries(mirror_src, mirror_up)
                log.append(
                    f"trial {trial}: SIGKILL during {kind} {how} after "
                    f"{killed - began:.1f} s; {dict(instruments.actions)}; "
                    f"mirror temporaries {leftovers}"
                )
                instruments.actions.clear()
                proc.start()
                proc.wait_ready()
                _converge(
                    client,
                    instruments,
                    r_up,
                    mirror_src,
                    mirror_up,
                    fault_stats,
                    f"after trial {trial} ({kind})",
                )
                log[-1] += f"; converged {time.monotonic() - killed:.1f} s after the kill"
                left = mirror_temporaries(mirror_src, mirror_up)
                fault_stats.leak("temporary left in the mirror", len(left))
                assert not left, left
        except BaseException:
            print("\n".join(log))
            print(f"--- daemon log (tail) ---\n{proc.text()[-6000:]}")
            raise
        finally:
            watched_to_the_end = watchdog.is_alive()
            stopped = proc.stop()
            follower.stop()
            watchdog.stop()
        assert watched_to_the_end, "the watchdog died (see the thread's exception above)"
        assert stopped == 0  # SIGTERM after all that: a clean stop
        fault_stats.leak("partial file visible at a final name", len(watchdog.violations))
        fault_stats.versions_watched += watchdog.checked
        print("\n".join(log))
        print(f"watchdog checked {watchdog.checked} file versions")
        assert watchdog.violations == []
        assert watchdog.checked > 0
        text = proc.text()
        assert "Traceback" not in text and "unexpected error" not in text, text[-4000:]
        # The follower kept up through its journal passes: it never had to fall back to a
        # full pass because a journal the killed uploader left could not be trusted.
        followed = follower.text()
        fault_stats.journal_passes += followed.count("from the journal")
        untrusted = [line for line in followed.splitlines() if "a full pass:" in line]
        fault_stats.untrusted_journals += len(untrusted)
        assert untrusted == [], untrusted


def test_sigkill_mid_download_leaves_no_temporary(
    tmp_path: Path, server: LocalServer, client: Client, remote_dir: str, fault_stats: FaultStats
) -> None:
    data = np.random.default_rng(SEED)
    mirror, staging = tmp_path / "mirror", tmp_path / "staging"
    staging.mkdir()
    truth: dict[str, bytes | np.ndarray] = {}

    def put_big() -> None:  # about 24 MB that do not compress: the download takes a while
        truth["big.b2nd"] = data.random((30_000, 100))
        blosc2.asarray(truth["big.b2nd"], urlpath=str(staging / "big.b2nd"), mode="w")
        client.upload(staging / "big.b2nd", f"{remote_dir}/big.b2nd")

    put_big()
    manifest = write_manifest(
        tmp_path / "cat2sync.toml",
        url=server.url,
        username=ALICE[0],
        password=ALICE[1],
        subscribe=[{"name": "src", "root": remote_dir, "local": str(mirror), "every": "0.5s"}],
    )
    proc = DaemonProcess(manifest, tmp_path / "daemon.log").start()
    try:
        proc.wait_ready()
        for _ in range(5):
            put_big()
            poll(lambda: mirror_temporaries(mirror), timeout=60.0, interval=0.001)
            proc.kill()
            fault_stats.fault("SIGKILL during download")
            if mirror_temporaries(mirror):
                break
            proc.start()
            proc.wait_ready()
        else:
            pytest.skip("never caught a download under way")
        proc.start()
        proc.wait_ready()
        wait_until(
            lambda: compare_local(mirror, truth, ignore_temporaries=True).ok,
            timeout=CONVERGE,
            interval=0.5,
            message="the mirror to converge",
        )
        # Two more passes (one every 0.5 s) after that: a leftover would still be there.
        passes = proc.text(since_start=True).count("src: pass done")
        wait_until(
            lambda: proc.text(since_start=True).count("src: pass done") >= passes + 2,
            timeout=CONVERGE,
            message="two more passes",
        )
        assert mirror_temporaries(mirror) == []
    finally:
        proc.stop()
