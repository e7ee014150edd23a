"""Outages: the server killed mid-transfer and restarted, answering 503, dropping
connections, too slow for the timeout, or losing the answer to a request it applied.

The daemon keeps running through all of it: failed files stay in the persistent queue
(the ``pending`` table) and are retried with backoff, ``cat2sync status --json`` shows
the backlog and the last error meanwhile, and once the fault is gone everything
converges without a restart, with no row lost or doubled and no temporary left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.manifest import Manifest, load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, BOSS, grow_b2nd, running, wait_until, write_manifest
from tests.helpers.cli import status_json
from tests.helpers.compare import Tally, compare_local, compare_remote, local_files
from tests.helpers.faults import CONVERGE, FaultStats, array_file
from tests.helpers.proxy import FaultProxy

pytestmark = pytest.mark.faults

COLS = 40


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 1000, (n, COLS)).astype(np.float64)


class Site:
    """A local folder uploaded to ``<remote>/up`` and ``<remote>/src`` mirrored into
    ``mirror``; the remote source is written by ``writer`` (straight to the server)."""

    def __init__(
        self,
        tmp_path: Path,
        url: str,
        login: tuple[str, str],
        remote: str,
        writer: Client,
        *,
        timeout: str = "30s",
        rescan: str = "1h",
    ) -> None:
        self.data = tmp_path / "data"
        self.data.mkdir(exist_ok=True)
        self.mirror = tmp_path / "mirror"
        self.staging = tmp_path / "staging"
        self.staging.mkdir()
        self.r_up, self.r_src = f"{remote}/up", f"{remote}/src"
        self.writer = writer
        self.rng = np.random.default_rng(7)
        self.truth: dict[str, bytes | np.ndarray] = {}
        self.path = write_manifest(
            tmp_path / "cat2sync.toml",
            url=url,
            username=login[0],
            password=login[1],
            # No rescans by default: only the daemon's own retries bring failed files back.
            server={"timeout": timeout},
            daemon={"retry_max": "2s", "rescan": rescan},
            upload=[{"name": "up", "local": str(self.data), "remote": self.r_up, "settle": "0.2s"}],
            subscribe=[
                {"name": "src", "root": self.r_src, "local": str(self.mirror), "every": "1s"}
            ],
        )

    def manifest(self) -> Manifest:
        return load_manifest(self.path)

    def seed(self) -> None:
        array_file(self.data / "frames.b2nd", _rows(self.rng, 100), chunks=(32, COLS))
        self.note("first.json")
        self.put_remote("series.b2nd", _rows(self.rng, 50))
        self.put_remote("readme.txt", b"remote instrument\n" * 20)

    def note(self, name: str) -> None:
        (self.data / name).write_text(f'{{"name": "{name}", "x": {self.rng.random()}}}')

    def grow(self, rows: int = 37) -> None:
        grow_b2nd(self.data / "frames.b2nd", _rows(self.rng, rows))

    def put_remote(self, name: str, data: bytes | np.ndarray) -> None:
        local = self.staging / name
        if isinstance(data, np.ndarray):
            array_file(local, data, chunks=(16, COLS))
        else:
            local.write_bytes(data)
        self.writer.upload(local, f"{self.r_src}/{name}")
        self.truth[name] = data

    def append_remote(self, rows: int = 11) -> None:
        new = _rows(self.rng, rows)
        self.writer.append(f"{self.r_src}/series.b2nd", new)
        old = self.truth["series.b2nd"]
        assert isinstance(old, np.ndarray)
        self.truth["series.b2nd"] = np.concatenate([old, new])

    def compare(self, client: Client) -> Tally:
        tally = compare_remote(client, self.r_up, local_files(self.data))
        return tally.merge(compare_local(self.mirror, self.truth))

    def converge(self, client: Client, run: Any, stats: FaultStats, what: str) -> None:
        last: list[Tally] = []

        def done() -> bool:
            if not run.settled():
                return False
            last[:] = [self.compare(client)]
            return last[0].ok

        wait_until(
            done,
            timeout=CONVERGE,
            interval=0.5,
            message=f"convergence {what}",
            state=lambda: (last[0].problems[:4] if last else None, run.describe()),
        )
        stats.add(last[0])


def _backlog(manifest: Path, *needles: str) -> dict[str, Any] | None:
    """``status --json`` once the upload rule shows a backlog and a last error containing
    a needle (the mirror rule fails too, but in its own time)."""
    report = status_json(manifest)["rules"]
    up = report["up"]
    if up["pending"] >= 1 and any(n in (up["last_error"] or "") for n in needles):
        return report
    return None


# -- the server itself goes away ---------------------------------------------------------


def test_server_killed_mid_transfer_and_restarted(
    tmp_path: Path, own_server: LocalServer, remote_dir: str, fault_stats: FaultStats
) -> None:
    with Client(own_server.url, BOSS) as boss:
        site = Site(tmp_path, own_server.url, BOSS, remote_dir, boss)
        site.seed()
        with running(site.manifest()) as run:
            site.converge(boss, run, fault_stats, "at the start")
            # A big upload is under way when the server dies (SIGTERM, SIGKILL 10 ms later).
            sent = run.client.stats.bytes_sent
            (site.data / "big.bin").write_bytes(site.rng.bytes(48 * 2**20))
            wait_until(
                lambda: run.client.stats.bytes_sent > sent + 4 * 2**20,
                timeout=CONVERGE,
                message="the big upload under way",
            )
            own_server.stop(timeout=0.01)
            fault_stats.fault("server killed mid-transfer, restarted after a pause")
            site.grow()
            site.note("while-down.json")
            report = wait_until(
                lambda: _backlog(site.path, "connect"),
                timeout=CONVERGE,
                message="status showing the backlog and the error",
                state=lambda: status_json(site.path),
            )
            assert report["up"]["pending"] >= 1
            assert set(report["up"]["pending_files"]) <= {
                "big.bin",
                "frames.b2nd",
                "while-down.json",
            }
            assert "\n" not in report["up"]["last_error"]
            pending = {p.relpath: p for p in run.daemon.state.pending("up")}
            wait_until(
                lambda: any(p.attempts >= 2 for p in run.daemon.state.pending("up")),
                timeout=CONVERGE,
                message="a second attempt (a retry)",
            )
            assert pending  # the persistent queue holds them
            time.sleep(2.0)  # the pause
            own_server.start()  # same port, same data
            site.append_remote()
            site.converge(boss, run, fault_stats, "after the server came back")
            assert run.of(EventKind.FAILED)
    assert status_json(site.path)["rules"]["up"]["pending"] == 0


# -- faults a real server cannot produce on cue: the loopback proxy ---------------------------


@pytest.fixture
def proxy(server: LocalServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.port) as p:
        yield p


def test_503_and_dropped_connections(
    tmp_path: Path, proxy: FaultProxy, client: Client, remote_dir: str, fault_stats: FaultStats
) -> None:
    """Uses the fault proxy: first every request is answered 503, then every connection is
    reset; each time the daemon keeps the backlog, reports it, and catches up after."""
    site = Site(tmp_path, proxy.url, ALICE, remote_dir, client)
    site.seed()
    with running(site.manifest()) as run:
        site.converge(client, run, fault_stats, "at the start")
        for mode, needle, label in (
            ("503", "503", "HTTP 503 from the server (proxy)"),
            ("drop", "connect", "connection reset (proxy)"),
        ):
            failed = len(run.of(EventKind.FAILED))
            proxy.set_mode(mode)
            site.grow()
            site.note(f"during-{mode}.json")
            site.append_remote()
            report = wait_until(
                lambda n=needle: _backlog(site.path, n),
                timeout=CONVERGE,
                message=f"status showing the backlog during {mode}",
                state=lambda: status_json(site.path),
            )
            assert "\n" not in report["up"]["last_error"]
            wait_until(
                lambda f=failed: len(run.of(EventKind.FAILED)) >= f + 2,
                timeout=CONVERGE,
                message="retries",
                state=run.describe,
            )
            proxy.set_mode("pass")
            fault_stats.fault(label, proxy.injected[mode])
            site.converge(client, run, fault_stats, f"after the {mode} outage")
        assert status_json(site.path)["rules"]["up"]["pending"] == 0


def test_slow_server_beyond_the_timeout(
    tmp_path: Path, proxy: FaultProxy, client: Client, remote_dir: str, fault_stats: FaultStats
) -> None:
    """Uses the fault proxy: every answer is held 8 s while the manifest's timeout is 1 s,
    so quick requests (list, info) time out and are retried; then the server is fast
    again and the daemon catches up."""
    site = Site(tmp_path, proxy.url, ALICE, remote_dir, client, timeout="1s")
    site.seed()
    proxy.stall_seconds = 8.0
    with running(site.manifest()) as run:
        site.converge(client, run, fault_stats, "at the start")
        proxy.set_mode("stall")
        site.grow()  # an append starts with the remote shape: a quick request
        site.append_remote()
        report = wait_until(
            lambda: _backlog(site.path, "in time"),
            timeout=CONVERGE,
            message="status showing the timeouts",
            state=lambda: status_json(site.path),
        )
        for rule in ("up", "src"):
            assert "\n" not in (report[rule]["last_error"] or ""), report[rule]
        proxy.release()
        fault_stats.fault("server slower than the client timeout (proxy)", proxy.injected["stall"])
        site.converge(client, run, fault_stats, "after the stall")


# -- a request applied, its answer lost ----------------------------------------------------


def test_lost_responses_duplicate_nothing(
    tmp_path: Path, proxy: FaultProxy, client: Client, remote_dir: str, fault_stats: FaultStats
) -> None:
    """Uses the fault proxy: it forwards an append (then an upload, then a move) to the
    server, which applies it, and resets the connection instead of returning the answer.
    The retry reads the remote shape first: no row is sent twice."""
    site = Site(tmp_path, proxy.url, ALICE, remote_dir, client)
    site.seed()
    with running(site.manifest()) as run:
        site.converge(client, run, fault_stats, "at the start")
        frames = "/up/frames.b2nd"  # the data's appends (the change journal appends too)
        for rows in (40, 64, 1):  # a partial chunk, whole chunks, one row
            appends = proxy.count("POST", frames)
            failed = len(run.of(EventKind.FAILED))
            proxy.inject("lose-response", method="POST", path=frames)
            site.grow(rows)
            wait_until(
                lambda f=failed: len(run.of(EventKind.FAILED)) > f,
                timeout=CONVERGE,
                message="the failure the client saw",
                state=run.describe,
            )
            fault_stats.fault("append applied, answer lost (proxy)")
            site.converge(client, run, fault_stats, f"after a lost append of {rows} rows")
            assert proxy.count("POST", frames) == appends + 1  # never re-sent
        for step in ("/api/upload/", "/api/move/"):
            proxy.inject("lose-response", method="POST", path=step)
            site.note(f"lost-{step.strip('/').split('/')[-1]}.json")
            wait_until(
                lambda: proxy.pending_rules() == 0,
                timeout=CONVERGE,
                message=f"the lost {step} answer",
            )
            fault_stats.fault(f"{step.strip('/').split('/')[-1]} applied, answer lost (proxy)")
            site.converge(client, run, fault_stats, f"after a lost {step} answer")


def test_temporary_whose_cleanup_failed_goes_without_a_restart(
    tmp_path: Path, proxy: FaultProxy, client: Client, remote_dir: str, fault_stats: FaultStats
) -> None:
    """Uses the fault proxy: the move of an uploaded temporary is dropped and the removal
    of that temporary answered 503; the retry succeeds. Readers list the folder, so
    the old temporary must go too, without waiting for the next start."""
    site = Site(tmp_path, proxy.url, ALICE, remote_dir, client, rescan="2s")
    site.seed()
    with running(site.manifest()) as run:
        site.converge(client, run, fault_stats, "at the start")
        proxy.inject("drop", method="POST", path="/api/move/")
        proxy.inject("503", method="POST", path="/api/remove/")
        site.note("second.json")
        fault_stats.fault("move dropped, clean-up answered 503 (proxy)")
        wait_until(
            lambda: (
                proxy.pending_rules() == 0
                and run.settled()
                and run.of(EventKind.UPLOADED, "second.json")
            ),
            timeout=CONVERGE,
            message="the retried upload",
            state=run.describe,
        )
        # Then a few seconds (a rescan or two) for the old temporary to go.
        wait_until(
            lambda: site.compare(client).ok,
            timeout=10,
            interval=0.5,
            message="the old temporary to go",
            state=lambda: site.compare(client).problems,
        )
