#!/usr/bin/env python3
"""Soak test: the daemon under a steady mix of uploads, appends and mirror passes.

    python benchmarks/soak.py [--minutes 30] [--rate 4] [--sample 60] [--workdir DIR]

Starts a real local Caterva2 server and ``cat2sync run`` (a subprocess, as in
production) in a temporary directory. For the given time a local instrument grows
arrays and rewrites, renames and deletes small files in the uploaded folder, while a
remote instrument appends rows to remote arrays and uploads files into a subscribed
folder; the daemon also mirrors its own upload folder back. The daemon's resident
memory, open file descriptors and threads are sampled throughout. At the end the
instruments stop, the daemon must converge, and everything is compared exactly
(uploaded folder with the server, both mirrors with their remote sources).

Prints the samples and a table (start, end, peak, change). Exit status 1 when the
daemon did not converge or a comparison failed. Not part of CI; Linux only (/proc).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
try:
    import cat2sync  # noqa: F401  (installed, or importable from the current directory)
except ImportError:  # running from a source checkout
    sys.path.insert(0, str(REPO))

import blosc2  # noqa: E402
import numpy as np  # noqa: E402
import tomli_w  # noqa: E402

from cat2sync import Client  # noqa: E402
from cat2sync.errors import NotFound, ServerError  # noqa: E402
from cat2sync.server import LocalServer  # noqa: E402

ADMIN = ("soak-admin@example.com", "soakadmin1")
USER = ("soak@example.com", "soakpass12")
COLS = 64
MAX_ROWS = 20_000  # a growing array is replaced by a fresh one beyond this (steady data)


# -- the daemon process ----------------------------------------------------------------------


def _proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def sample(pid: int) -> dict[str, float]:
    """RSS (MB), open file descriptors and threads of process ``pid``."""
    status = _proc_status(pid)
    return {
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
        "fds": sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir()),
        "threads": int(status["Threads"]),
    }


class Daemon:
    def __init__(self, manifest: Path, log: Path) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        env.pop("NOTIFY_SOCKET", None)
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cat2sync", "run", str(manifest)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while "ready: watching" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# -- the workload -------------------------------------------------------------------------------


def _atomic_array(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"~{path.name}")
    blosc2.asarray(data, urlpath=str(tmp), mode="w", chunks=chunks)
    tmp.replace(path)


class Workload:
    """Both instruments; ``truth`` is what the subscribed remote folder holds."""

    def __init__(self, root: Path, client: Client, r_src: str, seed: int) -> None:
        self.up = root / "up"
        self.staging = root / "staging"
        self.staging.mkdir(parents=True)
        self.client = client
        self.r_src = r_src
        self.rng = random.Random(seed)
        self.data = np.random.default_rng(seed)
        self.truth: dict[str, bytes | np.ndarray] = {}
        self.counts: dict[str, int] = {}

    def _rows(self, n: int) -> np.ndarray:
        return self.data.integers(0, 1000, (n, COLS)).astype(np.float64)

    def seed(self) -> None:
        for k in range(3):
            _atomic_array(self.up / f"arr{k}.b2nd", self._rows(200), chunks=(100, COLS))
        for k in range(2):
            self._put(f"s{k}.b2nd", self._rows(100))

    # local
    def grow(self) -> None:
        path = self.up / f"arr{self.rng.randrange(3)}.b2nd"
        arr = blosc2.open(str(path), mode="a")
        if arr.shape[0] > MAX_ROWS:
            del arr
            _atomic_array(path, self._rows(200), chunks=(100, COLS))
            return
        rows = self._rows(self.rng.randint(10, 300))
        start = arr.shape[0]
        arr.resize((start + rows.shape[0], COLS))
        arr[start:] = rows
        del arr

    def note(self) -> None:
        path = self.up / "notes" / f"n{self.rng.randrange(20):02d}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f'{{"t": {time.time()}, "pad": "{"x" * self.rng.randint(10, 4000)}"}}')

    def shuffle(self) -> None:
        notes = sorted((self.up / "notes").glob("n*.json"))
        if len(notes) > 5:
            victim = self.rng.choice(notes)
            target = victim.with_name(f"n{self.rng.randrange(20):02d}.json")
            if self.rng.random() < 0.5 or target.exists():
                victim.unlink()
            else:
                victim.rename(target)

    def run_file(self) -> None:
        _atomic_array(
            self.up / "runs" / f"r{self.rng.randrange(5)}.b2nd",
            self._rows(self.rng.randint(500, 5000)),
            chunks=(250, COLS),
        )

    # remote
    def _put(self, name: str, data: bytes | np.ndarray) -> None:
        local = self.staging / name.replace("/", "_")
        if isinstance(data, np.ndarray):
            _atomic_array(local, data, chunks=(64, COLS))
        else:
            local.write_bytes(data)
        self.client.upload(local, f"{self.r_src}/{name}")
        self.truth[name] = data

    def append_remote(self) -> None:
        name = f"s{self.rng.randrange(2)}.b2nd"
        old = self.truth[name]
        assert isinstance(old, np.ndarray)
        if old.shape[0] > MAX_ROWS:
            self._put(name, self._rows(100))
            return
        rows = self._rows(self.rng.randint(5, 200))
        self.client.append(f"{self.r_src}/{name}", rows)
        self.truth[name] = np.concatenate([old, rows])

    def doc(self) -> None:
        self._put(
            f"docs/d{self.rng.randrange(10)}.txt",
            self.rng.randbytes(self.rng.randint(100, 200_000)),
        )

    def step(self) -> None:
        actions: list[tuple[int, Callable[[], None]]] = [
            (6, self.grow),
            (4, self.note),
            (1, self.shuffle),
            (1, self.run_file),
            (4, self.append_remote),
            (2, self.doc),
        ]
        func = self.rng.choices([f for _, f in actions], [w for w, _ in actions])[0]
        func()
        self.counts[func.__name__] = self.counts.get(func.__name__, 0) + 1


# -- comparisons ---------------------------------------------------------------------------------


def _local_files(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(("~", "."))
    }


def _read_remote(client: Client, remote: str, tmp: Path) -> bytes | np.ndarray:
    if remote.endswith(".b2nd"):
        return np.asarray(client.fetch(remote))
    client.download_to(remote, tmp)
    return tmp.read_bytes()


def _same(a: bytes | np.ndarray, b: bytes | np.ndarray) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    return a == b


def _load(path: Path) -> bytes | np.ndarray:
    if path.suffix == ".b2nd":
        return np.asarray(blosc2.open(str(path), mode="r")[:])
    return path.read_bytes()


def problems(
    client: Client, work: Workload, r_up: str, mirrors: dict[Path, str], scratch: Path
) -> list[str]:
    """Everything that is not (yet) exactly as it must be."""
    found: list[str] = []
    source = {rel: _load(p) for rel, p in _local_files(work.up).items()}
    expected = {r_up: source, work.r_src: work.truth}
    for remote, want in expected.items():
        try:
            listed = set(client.get_list(remote))
        except NotFound:
            listed = set()
        if listed != set(want):
            found.append(f"{remote}: listing differs ({sorted(listed ^ set(want))[:5]})")
            continue
        for name, data in want.items():
            try:
                if not _same(_read_remote(client, f"{remote}/{name}", scratch), data):
                    found.append(f"{remote}/{name}: content differs")
            except (NotFound, ServerError) as exc:
                found.append(f"{remote}/{name}: {exc}")
    for folder, remote in mirrors.items():
        want = expected[remote]
        have = _local_files(folder) if folder.is_dir() else {}
        if set(have) != set(want):
            found.append(f"{folder.name}: files differ ({sorted(set(have) ^ set(want))[:5]})")
            continue
        found += [
            f"{folder.name}/{n}: content differs"
            for n, p in have.items()
            if not _same(_load(p), want[n])
        ]
    return found


# -- main ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _workdir(parent: str | None, keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cat2sync-soak-", dir=parent))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def _table(start: dict[str, float], end: dict[str, float], peak: dict[str, float]) -> str:
    rows = ["| metric | start | end | peak | change |", "|---|---|---|---|---|"]
    for key, label in (
        ("rss_mb", "RSS (MB)"),
        ("fds", "open file descriptors"),
        ("threads", "threads"),
    ):
        rows.append(
            f"| {label} | {start[key]:.1f} | {end[key]:.1f} | {peak[key]:.1f} | "
            f"{end[key] - start[key]:+.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="how long the workload runs (default: 30)"
    )
    parser.add_argument(
        "--rate", type=float, default=4.0, help="workload actions per second (default: 4)"
    )
    parser.add_argument(
        "--sample",
        type=float,
        default=60.0,
        help="seconds between samples of the daemon (default: 60)",
    )
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default: 1)")
    parser.add_argument("--workdir", help="create the temporary directory inside this one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)

    with _workdir(args.workdir, args.keep) as root:
        server = LocalServer(root / "server", superuser=ADMIN).start()
        daemon: Daemon | None = None
        try:
            server.add_user(*USER)
            client = Client(server.url, USER, timeout=60)
            r_up, r_src = "@personal/soak/up", "@personal/soak/src"
            work = Workload(root, client, r_src, args.seed)
            work.seed()
            mirrors = {root / "mirror-src": r_src, root / "mirror-up": r_up}
            manifest = root / "cat2sync.toml"
            manifest.write_text(
                tomli_w.dumps(
                    {
                        "daemon": {"state_dir": str(root / "state"), "retry_max": "10s"},
                        "server": {"url": server.url, "username": USER[0], "password": USER[1]},
                        "upload": [
                            {
                                "name": "up",
                                "local": str(work.up),
                                "remote": r_up,
                                "settle": "0.5s",
                                "exclude": ["**/~*"],
                                "delete": True,
                                "max_delete": 1.0,
                            }
                        ],
                        "subscribe": [
                            {
                                "name": "src",
                                "root": r_src,
                                "local": str(root / "mirror-src"),
                                "every": "5s",
                            },
                            {
                                "name": "roundtrip",
                                "root": r_up,
                                "local": str(root / "mirror-up"),
                                "every": "5s",
                                "delete": True,
                                "max_delete": 1.0,
                            },
                        ],
                    }
                )
            )
            daemon = Daemon(manifest, root / "daemon.log")
            daemon.wait_ready()
            time.sleep(10)  # the first passes
            start = sample(daemon.proc.pid)
            peak = dict(start)
            print(
                f"soak: {args.minutes:g} min at {args.rate:g} actions/s; server {server.url}; "
                f"daemon pid {daemon.proc.pid}; workdir {root}"
            )
            print(
                f"{0:8.0f} s  rss {start['rss_mb']:7.1f} MB  fds {start['fds']:4.0f}  "
                f"threads {start['threads']:3.0f}"
            )
            began = time.monotonic()
            next_sample = began + args.sample
            stop_at = began + args.minutes * 60
            while time.monotonic() < stop_at:
                work.step()
                if daemon.proc.poll() is not None:
                    print(f"the daemon exited ({daemon.proc.returncode}):\n{daemon.tail()}")
                    return 1
                if time.monotonic() >= next_sample:
                    now = sample(daemon.proc.pid)
                    peak = {k: max(peak[k], now[k]) for k in peak}
                    print(
                        f"{time.monotonic() - began:8.0f} s  rss {now['rss_mb']:7.1f} MB  "
                        f"fds {now['fds']:4.0f}  threads {now['threads']:3.0f}"
                    )
                    next_sample += args.sample
                time.sleep(random.expovariate(args.rate))
            print(f"workload done: {work.counts}; waiting for the daemon to converge")
            deadline = time.monotonic() + 600
            found = problems(client, work, r_up, mirrors, root / "scratch.bin")
            while found and time.monotonic() < deadline:
                time.sleep(5)
                found = problems(client, work, r_up, mirrors, root / "scratch.bin")
            end = sample(daemon.proc.pid)
            peak = {k: max(peak[k], end[k]) for k in peak}
            log = daemon.log.read_text(errors="replace")
            events = {
                kind: log.count(f": {kind}: ")
                for kind in (
                    "uploaded",
                    "appended",
                    "moved",
                    "removed",
                    "downloaded",
                    "deleted",
                    "failed",
                    "skipped",
                )
            }
            print(f"daemon events: {events}")
            print(_table(start, end, peak))
            if found:
                print("NOT CONVERGED:\n  " + "\n  ".join(found[:20]))
                return 1
            if "Traceback" in log:
                print("the daemon's log has a traceback:\n" + daemon.tail())
                return 1
            print("converged: the uploaded folder, the server and both mirrors are identical")
            return 0
        finally:
            if daemon is not None:
                daemon.stop()
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
