"""Local deletions reach the server only with ``delete = true``, and under a cap."""

from __future__ import annotations

import shutil
from pathlib import Path

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.testing import run_once
from tests.helpers.daemon import MakeManifest
from tests.helpers.remote import remote_files


def _ship(make_manifest: MakeManifest, folder: Path, count: int, **rule: object) -> list[str]:
    names = [f"f{i:02d}.json" for i in range(count)]
    for name in names:
        (folder / name).write_text(f'{{"name": "{name}"}}')
    done = run_once(make_manifest(**rule))
    assert done.failures == 0
    assert len(done.of(EventKind.UPLOADED)) == count
    return names


def test_deletion_kept_remotely_without_delete(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    names = _ship(make_manifest, data_dir, 3)
    (data_dir / names[0]).unlink()
    done = run_once(make_manifest())  # delete defaults to false
    assert done.events == []
    assert remote_files(client, remote_dir) == names


def test_deletion_propagates_with_delete(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str, tmp_path: Path
) -> None:
    (data_dir / "sub").mkdir()
    _ship(make_manifest, data_dir, 3, delete=True, max_delete=1.0)
    _ship(make_manifest, data_dir / "sub", 2, delete=True, max_delete=1.0)
    # Files cat2sync did not put there are never its to remove, even inside a folder
    # that vanishes locally.
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    client.upload(foreign, f"{remote_dir}/foreign.json")
    client.upload(foreign, f"{remote_dir}/sub/foreign.json")

    (data_dir / "f01.json").unlink()
    shutil.rmtree(data_dir / "sub")
    done = run_once(make_manifest(delete=True, max_delete=1.0))
    assert sorted(e.path for e in done.of(EventKind.REMOVED)) == [
        "f01.json",
        "sub/f00.json",
        "sub/f01.json",
    ]
    assert done.kinds() == [EventKind.REMOVED] * 3
    assert remote_files(client, remote_dir) == [
        "f00.json",
        "f02.json",
        "foreign.json",
        "sub/foreign.json",
    ]
    # Forgotten too: the next pass has nothing to do.
    assert run_once(make_manifest(delete=True, max_delete=1.0)).events == []


def test_deletion_cap_refuses_the_whole_pass(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    names = _ship(make_manifest, data_dir, 10, delete=True, max_delete=0.5)
    for name in names[:8]:
        (data_dir / name).unlink()
    done = run_once(make_manifest(delete=True, max_delete=0.5))
    assert done.kinds() == [EventKind.SKIPPED]
    assert "max_delete" in (done.events[0].message or "")
    assert remote_files(client, remote_dir) == names

    # Below the cap (5 of 10), the same deletions go through one by one.
    for name in names[:8]:
        (data_dir / name).write_text(f'{{"name": "{name}"}}')
    assert run_once(make_manifest(delete=True, max_delete=0.5)).failures == 0
    for name in names[:4]:
        (data_dir / name).unlink()
    done = run_once(make_manifest(delete=True, max_delete=0.5))
    assert sorted(e.path for e in done.of(EventKind.REMOVED)) == names[:4]
    assert remote_files(client, remote_dir) == names[4:]


def test_emptied_folder_removes_nothing(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    names = _ship(make_manifest, data_dir, 10, delete=True, max_delete=1.0)
    for name in names:
        (data_dir / name).unlink()
    done = run_once(make_manifest(delete=True, max_delete=1.0))
    assert done.kinds() == [EventKind.SKIPPED]
    assert "empty" in (done.events[0].message or "")
    assert remote_files(client, remote_dir) == names
