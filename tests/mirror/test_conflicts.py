"""The mirror never replaces local work (``on_conflict``), against the real server: a file
edited in the mirror folder, a file that was there before the first pass."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.testing import read_b2nd
from tests.helpers.mirror import files_below, open_daemon, put_array, put_bytes

COPY = re.compile(r"calib\.conflict-\d{8}T\d{6}Z(-\d+)?\.(b2nd|txt)")


def _copies(folder: Path) -> list[str]:
    return sorted(n for n in files_below(folder) if COPY.fullmatch(n))


def _edit(path: Path, data: bytes | None = None) -> None:
    """An analyst's edit (a new mtime even within the file system's resolution)."""
    if data is not None:
        path.write_bytes(data)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000))


def test_an_edited_file_is_kept_and_the_remote_version_goes_beside_it(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    remote = f"{remote_dir}/calib.b2nd"
    put_array(client, data_dir / "calib.b2nd", remote, np.zeros((10, 3)), chunks=(5, 3))
    with open_daemon(subscription()) as h:
        h.mirror_pass()
        local = mirror_dir / "calib.b2nd"
        mine = local.read_bytes()[:-1] + b"\x00"  # the analyst's bytes
        _edit(local, mine)
        assert h.mirror_pass() == []  # the remote did not change: nothing to do
        put_array(client, data_dir / "calib.b2nd", remote, np.ones((12, 3)), chunks=(5, 3))
        [conflict] = h.mirror_pass()
        assert h.mirror_pass() == []  # no new remote change: no new conflict file

    assert conflict.kind == EventKind.CONFLICT
    [copy] = _copies(mirror_dir)
    assert copy in (conflict.message or "") and conflict.remote == remote
    assert local.read_bytes() == mine  # not a byte of the analyst's file changed
    np.testing.assert_array_equal(read_b2nd(mirror_dir / copy), np.ones((12, 3)))


def test_a_file_there_before_the_first_pass(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    put_bytes(client, data_dir / "calib.txt", f"{remote_dir}/calib.txt", b"remote\n")
    put_bytes(client, data_dir / "same.txt", f"{remote_dir}/same.txt", b"the same\n")
    mirror_dir.mkdir()
    (mirror_dir / "calib.txt").write_bytes(b"the user's own calib\n")
    (mirror_dir / "same.txt").write_bytes(b"the same\n")
    with open_daemon(subscription()) as h:
        events = h.mirror_pass()
        assert h.mirror_pass() == []

    kinds = {e.path: e.kind for e in events}
    assert kinds == {"calib.txt": EventKind.CONFLICT, "same.txt": EventKind.ADOPTED}
    assert (mirror_dir / "calib.txt").read_bytes() == b"the user's own calib\n"
    [copy] = _copies(mirror_dir)
    assert (mirror_dir / copy).read_bytes() == b"remote\n"


def test_skip_writes_nothing(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    put_bytes(client, data_dir / "calib.txt", f"{remote_dir}/calib.txt", b"remote\n")
    mirror_dir.mkdir()
    (mirror_dir / "calib.txt").write_bytes(b"mine\n")
    with open_daemon(subscription(on_conflict="skip")) as h:
        [conflict] = h.mirror_pass()
        assert h.mirror_pass() == []
    assert conflict.kind == EventKind.CONFLICT
    assert "on_conflict = skip" in (conflict.message or "")
    assert sorted(files_below(mirror_dir)) == ["calib.txt"]
    assert (mirror_dir / "calib.txt").read_bytes() == b"mine\n"


def test_overwrite_is_the_old_behaviour(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    put_bytes(client, data_dir / "calib.txt", f"{remote_dir}/calib.txt", b"remote\n")
    mirror_dir.mkdir()
    (mirror_dir / "calib.txt").write_bytes(b"mine\n")
    with open_daemon(subscription(on_conflict="overwrite")) as h:
        assert [e.kind for e in h.mirror_pass()] == [EventKind.DOWNLOADED]
    assert (mirror_dir / "calib.txt").read_bytes() == b"remote\n"


def test_a_conflicted_file_is_never_deleted(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    for name in ("calib.txt", "a.txt", "b.txt"):
        put_bytes(client, data_dir / name, f"{remote_dir}/{name}", f"{name}\n".encode())
    mirror_dir.mkdir()
    (mirror_dir / "calib.txt").write_bytes(b"mine\n")
    with open_daemon(subscription(delete=True, max_delete=1.0)) as h:
        h.mirror_pass()
        client.remove(f"{remote_dir}/calib.txt")
        events = h.mirror_pass()
    # Its remote vanished, but it is the user's file: kept, and said so.
    assert [(e.kind, e.path) for e in events] == [(EventKind.SKIPPED, "calib.txt")]
    assert "kept" in (events[0].message or "")
    assert (mirror_dir / "calib.txt").read_bytes() == b"mine\n"
