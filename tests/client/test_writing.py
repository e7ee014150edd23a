"""Writing to the real server: upload, append, copy, move, remove, unfold."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import blosc2
import h5py
import numpy as np
import pytest

from cat2sync import BadRequest, Client, Dataset, Group, NotFound, RemotePath

# -- upload ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.arange(1000, dtype="i4"),
        np.linspace(0, 1, 600).reshape(20, 30),
        np.arange(2 * 3 * 4 * 5, dtype="u2").reshape(2 * 3, 4, 5),
        np.array([True, False] * 50),
    ],
    ids=["1d", "2d", "3d", "bool"],
)
def test_upload_arrays_round_trip(
    alice: Client, remote_dir: str, make_b2nd, array: np.ndarray
) -> None:
    remote = f"{remote_dir}/x.b2nd"
    uploaded = alice.upload(make_b2nd("x.b2nd", array), remote)
    assert isinstance(uploaded, PurePosixPath)
    assert uploaded == PurePosixPath(remote)
    assert str(uploaded) == remote
    got = alice.fetch(remote)
    assert got.dtype == array.dtype
    np.testing.assert_array_equal(got, array)
    assert alice.get_info(remote)["shape"] == list(array.shape)


def test_upload_structured_array(alice: Client, remote_dir: str, make_b2nd, fields_array) -> None:
    remote = f"{remote_dir}/fields.b2nd"
    alice.upload(make_b2nd("fields.b2nd", fields_array), remote)
    got = alice.fetch(remote)
    assert got.dtype == fields_array.dtype
    np.testing.assert_array_equal(got, fields_array)


@pytest.mark.parametrize("name", ["notes.txt", "README", "data.csv", "unicode ünï.txt"])
def test_upload_regular_files_round_trip(
    alice: Client, remote_dir: str, data_dir: Path, tmp_path: Path, name: str
) -> None:
    original = f"{name}\n".encode() * 500 + os.urandom(300)
    (data_dir / name).write_bytes(original)
    remote = f"{remote_dir}/{name}"
    assert alice.upload(data_dir / name, remote) == remote
    assert alice.get_list(remote_dir) == [name]  # listed under its own name, not .b2
    assert alice.download(remote, tmp_path / "back").read_bytes() == original


def test_upload_overwrites(alice: Client, remote_dir: str, make_b2nd) -> None:
    remote = f"{remote_dir}/x.b2nd"
    alice.upload(make_b2nd("one.b2nd", np.arange(10)), remote)
    alice.upload(make_b2nd("two.b2nd", np.arange(5) * 2), remote)
    np.testing.assert_array_equal(alice.fetch(remote), np.arange(5) * 2)


def test_upload_of_a_missing_local_file(alice: Client, remote_dir: str, tmp_path: Path) -> None:
    requests = alice.stats.requests
    with pytest.raises(FileNotFoundError):
        alice.upload(tmp_path / "nope.b2nd", f"{remote_dir}/nope.b2nd")
    assert alice.stats.requests == requests


def test_upload_counts_the_bytes_sent(alice: Client, remote_dir: str, data_dir: Path) -> None:
    payload = os.urandom(300_000)
    (data_dir / "random.bin").write_bytes(payload)
    before = alice.stats.bytes_sent
    alice.upload(data_dir / "random.bin", f"{remote_dir}/random.bin")
    sent = alice.stats.bytes_sent - before
    assert len(payload) <= sent <= len(payload) + 2_000  # plus the multipart envelope


def test_upload_h5_then_unfold(
    alice: Client, remote_dir: str, data_dir: Path, legacy: bool
) -> None:
    local = data_dir / "data.h5"
    with h5py.File(local, "w") as h5:
        h5["x"] = np.arange(12).reshape(3, 4)
        h5.create_group("grp")["y"] = np.linspace(0, 1, 50)
    remote = f"{remote_dir}/dir/data.h5"
    assert alice.upload(local, remote) == remote
    # A 2026 server lists the members before unfolding; a 2025 one lists the file.
    assert sorted(alice.get_list(remote)) == (["data.h5"] if legacy else ["grp/y", "x"])

    unfolded = alice.unfold(remote)
    assert unfolded == PurePosixPath(f"{remote_dir}/dir/data")
    assert str(unfolded) == f"{remote_dir}/dir/data"
    members = alice.get_list(unfolded)
    assert {"x.b2nd", "grp/y.b2nd"} <= set(members)
    np.testing.assert_array_equal(alice.fetch(f"{unfolded}/x.b2nd"), np.arange(12).reshape(3, 4))
    np.testing.assert_array_equal(alice.fetch(f"{unfolded}/grp/y.b2nd"), np.linspace(0, 1, 50))


def test_unfold_of_a_dataset_is_a_bad_request(alice: Client, remote_dir: str, make_b2nd) -> None:
    alice.upload(make_b2nd("a.b2nd", np.arange(3)), f"{remote_dir}/a.b2nd")
    with pytest.raises(BadRequest):
        alice.unfold(f"{remote_dir}/a.b2nd")


# -- append -----------------------------------------------------------------------


def test_append_returns_the_new_shape(alice: Client, remote_dir: str, make_b2nd) -> None:
    remote = f"{remote_dir}/a.b2nd"
    alice.upload(make_b2nd("a.b2nd", np.arange(20).reshape(10, 2)), remote)
    new_shape = alice.append(remote, np.array([[100, 101], [102, 103]]))
    assert new_shape == (12, 2)
    assert isinstance(new_shape, tuple)
    got = alice.fetch(remote)
    assert got.shape == (12, 2)
    np.testing.assert_array_equal(got[-2:], [[100, 101], [102, 103]])
    assert alice.append(remote, blosc2.asarray(np.zeros((3, 2), dtype=int))) == (15, 2)
    assert alice.get_info(remote)["shape"] == [15, 2]


def test_append_with_wrong_trailing_shape(alice: Client, remote_dir: str, make_b2nd) -> None:
    remote = f"{remote_dir}/a.b2nd"
    alice.upload(make_b2nd("a.b2nd", np.zeros((4, 3))), remote)
    with pytest.raises(BadRequest):
        alice.append(remote, np.zeros((2, 5)))
    assert alice.get_info(remote)["shape"] == [4, 3]


def test_append_to_a_missing_dataset(alice: Client, remote_dir: str) -> None:
    with pytest.raises(NotFound) as err:
        alice.append(f"{remote_dir}/missing.b2nd", np.arange(3))
    assert err.value.path == f"{remote_dir}/missing.b2nd"


def test_dataset_shape_is_fresh_after_ds_append(alice: Client, remote_dir: str, make_b2nd) -> None:
    remote = f"{remote_dir}/a.b2nd"
    alice.upload(make_b2nd("a.b2nd", np.arange(10)), remote)
    ds = alice.get(remote)
    assert isinstance(ds, Dataset)
    assert ds.shape == (10,)
    assert ds.append(np.arange(5)) == (15,)
    assert ds.shape == (15,)
    assert len(ds) == 15
    np.testing.assert_array_equal(ds[10:], np.arange(5))


def test_dataset_shape_is_fresh_after_client_append(
    alice: Client, remote_dir: str, make_b2nd
) -> None:
    remote = f"{remote_dir}/a.b2nd"
    alice.upload(make_b2nd("a.b2nd", np.arange(10)), remote)
    ds = alice.get(remote)
    assert isinstance(ds, Dataset)
    assert ds.shape == (10,)
    alice.append(remote, np.arange(7))
    assert ds.shape == (17,)
    assert ds.meta["shape"] == [17]


# -- copy, move, remove -------------------------------------------------------------


def test_copy_a_dataset(alice: Client, remote_dir: str, make_b2nd) -> None:
    src = f"{remote_dir}/a.b2nd"
    alice.upload(make_b2nd("a.b2nd", np.arange(10)), src)
    copied = alice.copy(src, f"{remote_dir}/other/b.b2nd")
    assert copied == f"{remote_dir}/other/b.b2nd"
    assert sorted(alice.get_list(remote_dir)) == ["a.b2nd", "other/b.b2nd"]
    np.testing.assert_array_equal(alice.fetch(copied), np.arange(10))


def test_copy_into_a_folder_and_a_whole_folder(alice: Client, remote_dir: str, make_b2nd) -> None:
    alice.upload(make_b2nd("a.b2nd", np.arange(4)), f"{remote_dir}/src/a.b2nd")
    alice.upload(make_b2nd("a.b2nd", np.arange(4)), f"{remote_dir}/src/sub/b.b2nd")
    # A dst without a suffix is a folder: the source keeps its name inside it.
    assert alice.copy(f"{remote_dir}/src/a.b2nd", f"{remote_dir}/box") == f"{remote_dir}/box/a.b2nd"
    assert alice.copy(f"{remote_dir}/src", f"{remote_dir}/backup") == f"{remote_dir}/backup/src"
    assert sorted(alice.get_list(f"{remote_dir}/backup")) == ["src/a.b2nd", "src/sub/b.b2nd"]


def test_move_a_dataset(alice: Client, remote_dir: str, make_b2nd) -> None:
    src = f"{remote_dir}/a.b2nd"
    alice.upload(make_b2nd("a.b2nd", np.arange(10)), src)
    moved = alice.move(src, f"{remote_dir}/moved/c.b2nd")
    assert moved == f"{remote_dir}/moved/c.b2nd"
    assert alice.get_list(remote_dir) == ["moved/c.b2nd"]
    with pytest.raises(NotFound):
        alice.get_info(src)


def test_move_a_missing_source(alice: Client, remote_dir: str) -> None:
    with pytest.raises(NotFound) as err:
        alice.move(f"{remote_dir}/missing.b2nd", f"{remote_dir}/b.b2nd")
    assert err.value.path == f"{remote_dir}/missing.b2nd"


def test_remove_a_file_returns_the_given_path(
    alice: Client, remote_dir: str, data_dir: Path, make_b2nd
) -> None:
    (data_dir / "notes.txt").write_text("hello")
    alice.upload(data_dir / "notes.txt", f"{remote_dir}/notes.txt")
    alice.upload(make_b2nd("a.b2nd", np.arange(3)), f"{remote_dir}/a.b2nd")
    removed = alice.remove(f"{remote_dir}/notes.txt")
    assert removed == f"{remote_dir}/notes.txt"
    assert isinstance(removed, RemotePath)
    assert alice.get_list(remote_dir) == ["a.b2nd"]
    with pytest.raises(NotFound):
        alice.remove(f"{remote_dir}/notes.txt")


def test_remove_a_directory_with_its_contents(alice: Client, remote_dir: str, make_b2nd) -> None:
    local = make_b2nd("a.b2nd", np.arange(3))
    alice.upload(local, f"{remote_dir}/keep.b2nd")
    alice.upload(local, f"{remote_dir}/gone/a.b2nd")
    alice.upload(local, f"{remote_dir}/gone/deep/b.b2nd")
    assert alice.remove(f"{remote_dir}/gone") == f"{remote_dir}/gone"
    assert alice.get_list(remote_dir) == ["keep.b2nd"]
    with pytest.raises(NotFound):
        alice.get_info(f"{remote_dir}/gone")


@pytest.mark.needs_2026("a 2025 server cannot describe a folder (test_server_versions.py)")
def test_group_object_for_an_unfolded_folder(
    alice: Client, remote_dir: str, data_dir: Path
) -> None:
    with h5py.File(data_dir / "t.h5", "w") as h5:
        h5["v"] = np.arange(5)
    alice.upload(data_dir / "t.h5", f"{remote_dir}/t.h5")
    folder = alice.get(alice.unfold(f"{remote_dir}/t.h5"))
    assert isinstance(folder, Group)
    assert "v.b2nd" in folder
    np.testing.assert_array_equal(folder["v.b2nd"][:], np.arange(5))
