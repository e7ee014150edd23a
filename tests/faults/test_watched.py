"""The watched folder vanishes, is emptied, or cannot be watched.

Nothing is removed remotely (even with ``delete = true`` and no deletion cap to speak
of), the daemon says so, and changes keep shipping once the folder is back.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.manifest import Manifest, load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, running, wait_until, write_manifest
from tests.helpers.cli import daemon_process, status_json
from tests.helpers.faults import CONVERGE, FaultStats
from tests.helpers.remote import remote_files

pytestmark = pytest.mark.faults

NAMES = [f"f{i}.json" for i in range(6)]


def _manifest(
    tmp_path: Path,
    server: LocalServer,
    remote_dir: str,
    data: Path,
    *,
    daemon: dict[str, Any] | None = None,
    **rule: Any,
) -> Manifest:
    upload = {"name": "up", "local": str(data), "remote": remote_dir, "settle": "0.2s", **rule}
    return load_manifest(
        write_manifest(
            tmp_path / "cat2sync.toml",
            url=server.url,
            username=ALICE[0],
            password=ALICE[1],
            upload=[upload],
            daemon=daemon,
        )
    )


def _write(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).write_text(f'{{"name": "{name}"}}')


def _passes_since(run: Any, since: float, rescan: float, count: int = 2) -> Callable[[], bool]:
    """True once ``count`` passes finished after ``since`` (passes run every ``rescan``)."""

    def done() -> bool:
        status = run.daemon.state.rule_status("up")
        return bool(status.last_finished and status.last_finished > since + count * rescan)

    return done


def test_vanished_or_emptied_folder_removes_nothing(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    fault_stats: FaultStats,
) -> None:
    rescan = 1.0
    manifest = _manifest(
        tmp_path,
        server,
        remote_dir,
        data_dir,
        delete=True,
        max_delete=1.0,
        daemon={"rescan": f"{rescan}s"},
    )
    with running(manifest) as run:
        _write(data_dir, NAMES)
        wait_until(
            lambda: len(run.of(EventKind.UPLOADED)) == len(NAMES) and run.settled(),
            timeout=CONVERGE,
            message="the first uploads",
            state=run.describe,
        )

        # The disk is unmounted (the folder is renamed away): passes go on, remove nothing.
        away = data_dir.with_name("data.unmounted")
        data_dir.rename(away)
        fault_stats.fault("watched folder renamed away (unmounted)")
        gone = time.time()
        wait_until(
            _passes_since(run, gone, rescan),
            timeout=CONVERGE,
            message="two passes over the missing folder",
        )
        assert run.of(EventKind.REMOVED) == []
        assert remote_files(client, remote_dir) == NAMES
        status = run.daemon.state.rule_status("up")  # what `cat2sync status` reports
        assert "missing" in (status.last_error or ""), status

        # It comes back: nothing is sent again, new files ship.
        away.rename(data_dir)
        _write(data_dir, ["after.json"])
        wait_until(
            lambda: run.of(EventKind.UPLOADED, "after.json") and run.settled(),
            timeout=CONVERGE,
            message="the upload after the folder came back",
            state=run.describe,
        )
        assert len(run.of(EventKind.UPLOADED)) == len(NAMES) + 1
        shipped = sorted([*NAMES, "after.json"])

        # Every file is deleted (a wiped or freshly formatted disk): still nothing removed.
        for name in shipped:
            (data_dir / name).unlink()
        fault_stats.fault("watched folder emptied")
        wait_until(
            lambda: any("empty" in (e.message or "") for e in run.of(EventKind.SKIPPED)),
            timeout=CONVERGE,
            message="the refusal to empty the remote folder",
            state=run.describe,
        )
        emptied = time.time()
        wait_until(
            _passes_since(run, emptied, rescan),
            timeout=CONVERGE,
            message="two passes over the empty folder",
        )
        assert run.of(EventKind.REMOVED) == []
        assert remote_files(client, remote_dir) == shipped
        skipped = [e for e in run.of(EventKind.SKIPPED) if "empty" in (e.message or "")]
        assert all(e.rule == "up" and e.remote == remote_dir for e in skipped)
        assert "\n" not in (skipped[0].message or "")

        # Control: once the folder holds a file again, deletions are live (max_delete = 1).
        _write(data_dir, ["fresh.json"])
        wait_until(
            lambda: len(run.of(EventKind.REMOVED)) == len(shipped) and run.settled(),
            timeout=CONVERGE,
            message="the deletions",
            state=run.describe,
        )
        assert remote_files(client, remote_dir) == ["fresh.json"]


def test_vanished_folder_is_reported_as_an_event(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    fault_stats: FaultStats,
) -> None:
    manifest = _manifest(
        tmp_path, server, remote_dir, data_dir, delete=True, max_delete=1.0, daemon={"rescan": "1s"}
    )
    with running(manifest) as run:
        _write(data_dir, NAMES[:3])
        wait_until(
            lambda: len(run.of(EventKind.UPLOADED)) == 3 and run.settled(),
            timeout=CONVERGE,
            message="the first uploads",
            state=run.describe,
        )
        data_dir.rename(data_dir.with_name("data.unmounted"))
        fault_stats.fault("watched folder renamed away (unmounted)")
        gone = time.time()
        wait_until(
            _passes_since(run, gone, 1.0, count=3),
            timeout=CONVERGE,
            message="three passes over the missing folder",
        )
        reported = [e for e in run.of(EventKind.SKIPPED) if "missing" in (e.message or "")]
        assert reported, f"no SKIPPED event for the missing folder; {run.describe()}"
        assert remote_files(client, remote_dir) == NAMES[:3]


def test_status_works_while_the_folder_is_missing(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    fault_stats: FaultStats,
) -> None:
    manifest = _manifest(tmp_path, server, remote_dir, data_dir, delete=True)
    _write(data_dir, NAMES[:2])
    with running(manifest) as run:
        wait_until(
            lambda: len(run.of(EventKind.UPLOADED)) == 2 and run.settled(),
            timeout=CONVERGE,
            message="the first uploads",
            state=run.describe,
        )
        data_dir.rename(data_dir.with_name("data.unmounted"))
        fault_stats.fault("watched folder renamed away (unmounted)")
        run.daemon.reconcile("up")
        report = status_json(manifest.path)  # while the daemon runs, as an operator would
    assert "missing" in (report["rules"]["up"]["last_error"] or ""), report
    assert remote_files(client, remote_dir) == NAMES[:2]


# -- the OS refuses to watch ------------------------------------------------------------------


def _userns_limit_works(limit: int) -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(
        ["unshare", "-U", "-r", "sh", "-c", f"echo {limit} > /proc/sys/user/max_inotify_watches"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def test_inotify_watch_limit_on_a_large_tree(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    fault_stats: FaultStats,
) -> None:
    """The real kernel limit: the daemon runs in a user namespace of its own whose
    ``max_inotify_watches`` is 20 (the per-namespace form of
    ``/proc/sys/fs/inotify/max_user_watches``: lowering the global one would break the
    watches of other test sessions on this machine). The tree has 200 folders."""
    limit = 20
    if not _userns_limit_works(limit):
        pytest.skip(
            "cannot set an inotify limit in a user namespace here (unshare -U -r); "
            "the simulated watch failures below still run"
        )
    for i in range(200):
        (data_dir / f"d{i:03d}").mkdir()
    (data_dir / "d000" / "first.json").write_text("{}")
    manifest = write_manifest(
        tmp_path / "cat2sync.toml",
        url=server.url,
        username=ALICE[0],
        password=ALICE[1],
        daemon={"rescan": "1h"},
        upload=[{"name": "up", "local": str(data_dir), "remote": remote_dir, "settle": "0.2s"}],
    )
    wrapper = [
        "unshare",
        "-U",
        "-r",
        "sh",
        "-c",
        f'echo {limit} > /proc/sys/user/max_inotify_watches && exec "$@"',
        "sh",
    ]
    fault_stats.fault("inotify watch limit (real, user-namespace limit)")
    with daemon_process(manifest, tmp_path / "daemon.log", wrapper=wrapper) as proc:
        proc.wait_ready()
        wait_until(
            lambda: "d000/first.json" in remote_files(client, remote_dir),
            timeout=CONVERGE,
            message="the start-up pass",
        )
        wait_until(
            lambda: "cannot watch" in proc.text(),
            timeout=CONVERGE,
            message="the watcher's failure in the log",
        )
        lines = [line for line in proc.text().splitlines() if "cannot watch" in line]
        assert len(lines) == 1, proc.text()[-3000:]
        assert "limit" in lines[0] and "rescan" in lines[0]
        (data_dir / "d150" / "later.json").write_text('{"later": true}')
        wait_until(
            lambda: "d150/later.json" in remote_files(client, remote_dir),
            timeout=CONVERGE,
            message="a change shipped by the fallback rescans",
        )
        assert "Traceback" not in proc.text()


@pytest.fixture
def broken_watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """``watchfiles.watch`` that yields nothing and raises the watch-limit OSError once the
    returned event is set (set it before the daemon starts for a failure at start-up)."""
    trip = threading.Event()

    def watch(*paths: object, stop_event: threading.Event, **kwargs: object) -> Iterator[Any]:
        while not stop_event.is_set():
            if trip.wait(0.05):
                raise OSError(f"OS file watch limit reached. about {[str(p) for p in paths]}")
        yield from ()

    monkeypatch.setattr("cat2sync.watcher.watchfiles.watch", watch)
    yield trip


def _fallback_ships(run: Any, data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [r.getMessage() for r in caplog.records if "cannot watch" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "\n" not in lines[0] and "watch limit" in lines[0] and "rescans" in lines[0]
    (data_dir / "later.json").write_text('{"later": true}')
    wait_until(
        lambda: run.of(EventKind.UPLOADED, "later.json"),
        timeout=CONVERGE,
        message="a change shipped by the fallback rescans",
        state=run.describe,
    )


def test_watching_breaks_while_running(
    tmp_path: Path,
    server: LocalServer,
    remote_dir: str,
    data_dir: Path,
    broken_watch: threading.Event,
    caplog: pytest.LogCaptureFixture,
    fault_stats: FaultStats,
) -> None:
    """Simulated: ``watchfiles.watch`` raises the watch-limit OSError (in-process) a while
    after start-up, as when new folders push a tree over the limit."""
    caplog.set_level(logging.WARNING, logger="cat2sync")
    manifest = _manifest(tmp_path, server, remote_dir, data_dir, daemon={"rescan": "1h"})
    with running(manifest) as run:
        broken_watch.set()
        fault_stats.fault("watch failure (simulated OSError)")
        wait_until(
            lambda: run.daemon.watcher is not None and run.daemon.watcher.failed,
            message="the watcher's failure",
        )
        _fallback_ships(run, data_dir, caplog)


def test_watch_limit_at_start_keeps_the_fallback(
    tmp_path: Path,
    server: LocalServer,
    remote_dir: str,
    data_dir: Path,
    broken_watch: threading.Event,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    fault_stats: FaultStats,
) -> None:
    """Simulated: ``watchfiles.watch`` raises at once (in-process). On a large tree the
    start-up pass takes longer than the watcher needs to fail; the test makes that order
    certain by letting the periodic jobs be scheduled only after the failure."""
    caplog.set_level(logging.WARNING, logger="cat2sync")
    broken_watch.set()
    fault_stats.fault("watch failure (simulated OSError)")
    manifest = _manifest(tmp_path, server, remote_dir, data_dir, daemon={"rescan": "1h"})
    from cat2sync.daemon import Daemon

    schedule = Daemon._schedule

    def after_the_failure(self: Daemon) -> None:
        wait_until(
            lambda: self.watcher is not None and self.watcher.failed,
            message="the watcher's failure",
        )
        schedule(self)

    monkeypatch.setattr(Daemon, "_schedule", after_the_failure)
    with running(manifest) as run:
        assert any(j.startswith("poll:") for j in run.daemon.scheduler.job_ids()), (
            run.daemon.scheduler.job_ids()
        )
        _fallback_ships(run, data_dir, caplog)
