"""The upload side never destroys another writer's bytes (``on_conflict``), against the
real server: two accounts in one ``@shared`` folder, a colleague's fix on the server, a
lost state folder, deletions and renames over someone else's file."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.manifest import load_manifest
from cat2sync.server import LocalServer
from cat2sync.state import StateStore
from cat2sync.testing import ALICE, BOB, grow_b2nd, read_b2nd, run_once, write_b2nd, write_manifest
from tests.helpers.daemon import MakeManifest, upload_rule
from tests.helpers.remote import remote_array, remote_bytes, remote_files

COPY = re.compile(r"run_001\.conflict-\d{8}T\d{6}Z(-\d+)?\.b2nd")


def _only_copy(names: list[str]) -> str:
    [copy] = [n for n in names if COPY.fullmatch(n)]
    return copy


@pytest.fixture
def shared_dir() -> str:
    return f"@shared/t-{uuid.uuid4().hex[:10]}"


def _host(tmp_path: Path, server: LocalServer, who: tuple[str, str], remote: str, **keys: object):
    """One acquisition host: its own folder, state and login, shipping into ``remote``."""
    home = tmp_path / who[0].split("@")[0]
    (home / "data").mkdir(parents=True)
    path = write_manifest(
        home / "cat2sync.toml",
        url=server.url,
        username=who[0],
        password=who[1],
        upload=[upload_rule(home / "data", remote, **keys)],
    )
    return home / "data", load_manifest(path)


def test_two_hosts_ship_the_same_name_into_one_shared_folder(
    tmp_path: Path, server: LocalServer, client: Client, shared_dir: str
) -> None:
    alice_data, alice = _host(tmp_path, server, ALICE, shared_dir)
    bob_data, bob = _host(tmp_path, server, BOB, shared_dir)
    mine = np.arange(100.0).reshape(10, 10)
    theirs = -np.arange(100.0).reshape(10, 10)
    write_b2nd(alice_data / "run_001.b2nd", mine, chunks=(5, 10))
    write_b2nd(bob_data / "run_001.b2nd", theirs, chunks=(5, 10))

    assert run_once(alice).kinds() == [EventKind.UPLOADED]
    done = run_once(bob)
    [conflict] = done.of(EventKind.CONFLICT)
    assert done.failures == 0 and done.kinds() == [EventKind.CONFLICT]
    names = remote_files(client, shared_dir)
    copy = _only_copy(names)
    assert conflict.remote == f"{shared_dir}/run_001.b2nd"  # both paths in the one line
    assert copy in (conflict.message or "")
    np.testing.assert_array_equal(remote_array(client, f"{shared_dir}/run_001.b2nd"), mine)
    np.testing.assert_array_equal(remote_array(client, f"{shared_dir}/{copy}"), theirs)

    # Bob's file grows: the new rows go to his copy, never onto Alice's rows.
    grow_b2nd(bob_data / "run_001.b2nd", -np.ones((5, 10)))
    done = run_once(bob)
    assert done.kinds() == [EventKind.APPENDED]
    assert done.of(EventKind.APPENDED)[0].remote == f"{shared_dir}/{copy}"
    np.testing.assert_array_equal(remote_array(client, f"{shared_dir}/run_001.b2nd"), mine)
    np.testing.assert_array_equal(
        remote_array(client, f"{shared_dir}/{copy}"), read_b2nd(bob_data / "run_001.b2nd")
    )
    with StateStore(bob.daemon.state_dir) as state:
        [seen] = state.conflicts("up")
    assert (seen.side, seen.action, seen.copy) == ("upload", "keep-both", f"{shared_dir}/{copy}")


def test_a_colleagues_fix_on_the_server_is_kept(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    path = data_dir / "run_001.b2nd"
    write_b2nd(path, np.zeros((10, 4)), chunks=(5, 4))
    manifest = make_manifest()
    assert run_once(manifest).kinds() == [EventKind.UPLOADED]
    fixed = data_dir.parent / "fixed.b2nd"
    write_b2nd(fixed, np.full((10, 4), 7.0), chunks=(5, 4))
    client.upload(fixed, f"{remote_dir}/run_001.b2nd")  # the colleague's version

    grow_b2nd(path, np.ones((5, 4)))  # the instrument carries on
    done = run_once(manifest)
    assert done.kinds() == [EventKind.CONFLICT]
    copy = _only_copy(remote_files(client, remote_dir))
    np.testing.assert_array_equal(remote_array(client, f"{remote_dir}/run_001.b2nd"), 7.0)
    np.testing.assert_array_equal(remote_array(client, f"{remote_dir}/{copy}"), read_b2nd(path))


def test_appends_never_land_on_rows_someone_else_wrote(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    path = data_dir / "run_001.b2nd"
    write_b2nd(path, np.zeros((10, 4)), chunks=(5, 4))
    manifest = make_manifest()
    run_once(manifest)
    client.append(f"{remote_dir}/run_001.b2nd", np.full((3, 4), -1.0))  # another writer's rows
    grow_b2nd(path, np.ones((5, 4)))
    assert run_once(manifest).kinds() == [EventKind.CONFLICT]
    remote = remote_array(client, f"{remote_dir}/run_001.b2nd")
    assert remote.shape == (13, 4) and (remote[10:] == -1).all()  # untouched


def test_skip_sends_nothing_and_says_so_once(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    (data_dir / "notes.txt").write_text("mine\n")
    manifest = make_manifest(on_conflict="skip")
    run_once(manifest)
    (data_dir.parent / "x").write_text("theirs\n")
    client.upload(data_dir.parent / "x", f"{remote_dir}/notes.txt")
    (data_dir / "notes.txt").write_text("mine, edited\n")
    done = run_once(manifest)
    assert done.kinds() == [EventKind.CONFLICT]
    assert "on_conflict = skip" in (done.of(EventKind.CONFLICT)[0].message or "")
    assert remote_files(client, remote_dir) == ["notes.txt"]
    assert remote_bytes(client, f"{remote_dir}/notes.txt") == b"theirs\n"
    assert run_once(manifest).kinds() == []  # the same local version: not reported again


def test_overwrite_is_the_old_behaviour(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    (data_dir / "notes.txt").write_text("mine\n")
    manifest = make_manifest(on_conflict="overwrite")
    run_once(manifest)
    (data_dir.parent / "x").write_text("theirs\n")
    client.upload(data_dir.parent / "x", f"{remote_dir}/notes.txt")
    (data_dir / "notes.txt").write_text("mine, edited\n")
    done = run_once(manifest)
    assert done.kinds() == [EventKind.UPLOADED]
    assert remote_bytes(client, f"{remote_dir}/notes.txt") == b"mine, edited\n"
    # And it asks nothing before or after: upload and move only (and the login).
    assert done.requests <= 3


@pytest.mark.parametrize("identical", [True, False])
def test_a_lost_state_folder(
    make_manifest: MakeManifest,
    client: Client,
    data_dir: Path,
    remote_dir: str,
    identical: bool,
) -> None:
    write_b2nd(data_dir / "a.b2nd", np.arange(2000.0).reshape(200, 10), chunks=(50, 10))
    (data_dir / "notes.txt").write_text("hello\n")
    manifest = make_manifest()
    run_once(manifest)
    shutil.rmtree(manifest.daemon.state_dir)  # a new machine, or a wiped disk
    if not identical:
        (data_dir / "notes.txt").write_text("hello, changed while the state was away\n")

    done = run_once(manifest)
    assert done.failures == 0
    if identical:
        assert sorted(done.kinds()) == [EventKind.ADOPTED, EventKind.ADOPTED]
        assert done.bytes_sent < 4096  # nothing uploaded again
        assert remote_files(client, remote_dir) == ["a.b2nd", "notes.txt"]
    else:
        assert sorted(done.kinds()) == [EventKind.ADOPTED, EventKind.CONFLICT]
        assert remote_bytes(client, f"{remote_dir}/notes.txt") == b"hello\n"
        names = remote_files(client, remote_dir)
        assert len(names) == 3 and any(n.startswith("notes.conflict-") for n in names)
    assert run_once(manifest).kinds() == []  # and it all stays put


def test_a_deletion_never_removes_another_writers_version(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    for n in range(4):
        (data_dir / f"f{n}.txt").write_text(f"mine {n}\n")
    manifest = make_manifest(delete=True)
    run_once(manifest)
    (data_dir.parent / "x").write_text("theirs\n")
    client.upload(data_dir.parent / "x", f"{remote_dir}/f0.txt")
    (data_dir / "f0.txt").unlink()
    (data_dir / "f1.txt").unlink()
    done = run_once(manifest)
    assert sorted(done.kinds()) == [EventKind.CONFLICT, EventKind.REMOVED]
    assert remote_files(client, remote_dir) == ["f0.txt", "f2.txt", "f3.txt"]
    assert remote_bytes(client, f"{remote_dir}/f0.txt") == b"theirs\n"


def test_a_rename_onto_another_writers_name(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    write_b2nd(data_dir / "a.b2nd", np.arange(10.0), chunks=(5,))
    manifest = make_manifest()
    run_once(manifest)
    write_b2nd(data_dir.parent / "b.b2nd", np.full(10, 9.0), chunks=(5,))
    client.upload(data_dir.parent / "b.b2nd", f"{remote_dir}/b.b2nd")
    (data_dir / "a.b2nd").rename(data_dir / "b.b2nd")
    done = run_once(manifest)
    assert done.kinds() == [EventKind.CONFLICT]
    names = remote_files(client, remote_dir)
    [copy] = [n for n in names if n.startswith("b.conflict-")]
    assert sorted(names) == sorted(["b.b2nd", copy])
    np.testing.assert_array_equal(remote_array(client, f"{remote_dir}/b.b2nd"), 9.0)
    np.testing.assert_array_equal(remote_array(client, f"{remote_dir}/{copy}"), np.arange(10.0))
