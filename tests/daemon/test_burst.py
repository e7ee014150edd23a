"""A burst of many small files converges: every file arrives, with its content."""

from __future__ import annotations

from pathlib import Path

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.testing import run_once, running, wait_until
from tests.helpers.daemon import MakeManifest
from tests.helpers.remote import remote_bytes, remote_files

COUNT = 500
SPOT_CHECKS = (0, 1, 137, 250, 498, 499)


def _content(i: int) -> bytes:
    return f'{{"frame": {i}, "exposure": {i * 0.25}}}\n'.encode()


def _name(i: int) -> str:
    return f"run{i % 5}/meta-{i:04d}.json"  # a few folders, like an acquisition would


def _write_burst(folder: Path) -> list[str]:
    for i in range(COUNT):
        path = folder / _name(i)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(_content(i))
    return sorted(_name(i) for i in range(COUNT))


def _check_remote(client: Client, remote_dir: str, expected: list[str]) -> None:
    assert remote_files(client, remote_dir) == expected
    for i in SPOT_CHECKS:
        assert remote_bytes(client, f"{remote_dir}/{_name(i)}") == _content(i)


def test_burst_converges_in_one_pass(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    expected = _write_burst(data_dir)
    done = run_once(make_manifest())
    assert done.failures == 0
    assert sorted(e.path for e in done.of(EventKind.UPLOADED)) == expected
    # Each event counts its own transfer, although several run at once.
    assert all(e.bytes >= len(_content(0)) for e in done.events)
    assert sum(e.bytes for e in done.events) <= done.bytes_sent
    _check_remote(client, remote_dir, expected)
    # Nothing changed: a second pass sends nothing.
    again = run_once(make_manifest())
    assert again.events == []


def test_burst_converges_with_the_watcher(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    for i in range(5):
        (data_dir / f"run{i}").mkdir()  # new folders are the next test's business
    with running(make_manifest()) as run:
        expected = _write_burst(data_dir)
        wait_until(
            lambda: len(run.of(EventKind.UPLOADED)) >= COUNT and run.settled(),
            timeout=60,
            message=f"{COUNT} uploads",
            state=run.describe,
        )
        assert run.of(EventKind.FAILED) == []
        assert sorted(e.path for e in run.of(EventKind.UPLOADED)) == expected
    _check_remote(client, remote_dir, expected)


def test_files_in_new_folders_are_shipped(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    # inotify watches a new folder only from the moment it sees it: what is written into
    # it at once raises no event of its own.
    expected = [f"run{i:03d}/a/b/frame.json" for i in range(100)]
    with running(make_manifest()) as run:
        for name in expected:
            (data_dir / name).parent.mkdir(parents=True)
            (data_dir / name).write_text(name)
        wait_until(
            lambda: len(run.of(EventKind.UPLOADED)) >= len(expected) and run.settled(),
            timeout=8,
            message="every file uploaded",
            state=run.describe,
        )
    assert remote_files(client, remote_dir) == expected
