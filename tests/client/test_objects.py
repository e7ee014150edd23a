"""Root, Group, File and Dataset objects from Client.get, against the real server."""

from __future__ import annotations

from pathlib import Path

import blosc2
import h5py
import numpy as np
import pytest

from cat2sync import Client, Dataset, File, Group, NotFound, Root

A2 = np.arange(20 * 10, dtype="i4").reshape(20, 10)


def test_root_object(newcomer: Client, make_b2nd, data_dir: Path) -> None:
    root = newcomer.get("@personal")
    assert isinstance(root, Root)
    assert root.name == "@personal"
    assert str(root) == "@personal"
    assert len(root) == 0
    assert list(root) == []

    ds = root.upload(make_b2nd("local.b2nd", A2, chunks=(5, 10)), "a.b2nd")
    assert isinstance(ds, Dataset)
    assert repr(ds) == "<Dataset: @personal/a.b2nd>"
    (data_dir / "README.md").write_text("# hello\n")
    readme = root.upload(data_dir / "README.md")  # default: the local name
    assert repr(readme) == "<File: @personal/README.md>"
    root.upload(make_b2nd("b.b2nd", [1, 2]), "dir1/b.b2nd")

    assert "a.b2nd" in root
    assert "dir1/b.b2nd" in root
    assert "b.b2nd" not in root
    assert sorted(root) == ["README.md", "a.b2nd", "dir1/b.b2nd"]
    assert len(root) == 3
    assert repr(root["a.b2nd"]) == "<Dataset: @personal/a.b2nd>"


def test_dataset_object(alice: Client, remote_dir: str, make_b2nd) -> None:
    alice.upload(make_b2nd("a.b2nd", A2, chunks=(5, 10), blocks=(5, 5)), f"{remote_dir}/a.b2nd")
    ds = alice.get(f"{remote_dir}/a.b2nd")
    assert isinstance(ds, Dataset)
    assert ds.name == "a.b2nd"
    assert str(ds.path) == f"{remote_dir}/a.b2nd"
    assert ds.root == "@personal"
    assert ds.shape == (20, 10)
    assert ds.ndim == 2
    assert np.dtype(ds.dtype) == np.dtype("i4")
    assert ds.chunks == (5, 10)
    assert ds.blocks == (5, 5)
    assert len(ds) == 20
    np.testing.assert_array_equal(ds[:10], A2[:10])
    np.testing.assert_array_equal(ds[1:3, 2:4], A2[1:3, 2:4])
    np.testing.assert_array_equal(ds[7], A2[7])
    np.testing.assert_array_equal(ds[:], A2)
    part = ds.slice((slice(0, 4), slice(0, 2)))
    assert isinstance(part, blosc2.NDArray)
    np.testing.assert_array_equal(part[:], A2[:4, :2])
    assert ds.get_chunk(1) == alice.get_chunk(ds.path, 1)


def test_dataset_field_access(
    alice: Client, remote_dir: str, make_b2nd, fields_array: np.ndarray
) -> None:
    alice.upload(make_b2nd("f.b2nd", fields_array), f"{remote_dir}/f.b2nd")
    ds = alice.get(f"{remote_dir}/f.b2nd")
    assert isinstance(ds, Dataset)
    np.testing.assert_array_equal(ds["a"], fields_array["a"])
    np.testing.assert_array_equal(ds["b"], fields_array["b"])
    np.testing.assert_array_equal(ds[:2, :2], fields_array[:2, :2])
    assert ds.slice(None, field="b", as_blosc2=False).shape == (100, 200)


def test_dataset_object_operations(
    alice: Client, remote_dir: str, make_b2nd, tmp_path: Path
) -> None:
    alice.upload(make_b2nd("a.b2nd", np.arange(6)), f"{remote_dir}/a.b2nd")
    ds = alice.get(f"{remote_dir}/a.b2nd")
    assert isinstance(ds, Dataset)
    out = ds.download(tmp_path / "a.b2nd")
    np.testing.assert_array_equal(blosc2.open(str(out))[:], np.arange(6))
    assert ds.copy(f"{remote_dir}/b.b2nd") == f"{remote_dir}/b.b2nd"
    assert ds.move(f"{remote_dir}/c.b2nd") == f"{remote_dir}/c.b2nd"
    assert sorted(alice.get_list(remote_dir)) == ["b.b2nd", "c.b2nd"]
    assert alice.get(f"{remote_dir}/c.b2nd").remove() == f"{remote_dir}/c.b2nd"
    assert alice.get_list(remote_dir) == ["b.b2nd"]


def test_file_object_for_a_regular_file(
    alice: Client, remote_dir: str, data_dir: Path, tmp_path: Path
) -> None:
    (data_dir / "README.md").write_bytes(b"# title\n" * 100)
    alice.upload(data_dir / "README.md", f"{remote_dir}/README.md")
    readme = alice.get(f"{remote_dir}/README.md")
    assert type(readme) is File
    assert readme.name == "README.md"
    assert repr(readme) == f"<File: {remote_dir}/README.md>"
    assert readme.meta["nbytes"] == 800
    assert readme.download(tmp_path / "r.md").read_bytes() == b"# title\n" * 100


@pytest.mark.needs_2026("a 2025 server cannot describe a folder (test_server_versions.py)")
def test_group_object_for_a_directory(alice: Client, remote_dir: str, make_b2nd) -> None:
    local = make_b2nd("a.b2nd", np.arange(3))
    alice.upload(local, f"{remote_dir}/dir/a.b2nd")
    alice.upload(local, f"{remote_dir}/dir/sub/b.b2nd")
    group = alice.get(f"{remote_dir}/dir")
    assert isinstance(group, Group)
    assert repr(group) == f"<Group: {remote_dir}/dir>"
    assert group.meta["kind"] == "group"
    assert sorted(group) == ["a.b2nd", "sub/b.b2nd"]
    assert len(group) == 2
    assert "sub/b.b2nd" in group
    member = group["sub/b.b2nd"]
    assert isinstance(member, Dataset)
    np.testing.assert_array_equal(member[:], np.arange(3))


@pytest.mark.needs_2026("a 2025 server cannot look inside an HDF5 file")
def test_group_object_for_an_h5_file(alice: Client, remote_dir: str, data_dir: Path) -> None:
    with h5py.File(data_dir / "data.h5", "w") as h5:
        h5["x"] = np.arange(10)
        h5.create_group("grp")["y"] = np.ones((3, 4))
    alice.upload(data_dir / "data.h5", f"{remote_dir}/data.h5")
    h5obj = alice.get(f"{remote_dir}/data.h5")
    assert isinstance(h5obj, Group)
    assert sorted(h5obj) == ["grp/y", "x"]
    y = h5obj["grp/y"]
    assert isinstance(y, Dataset)
    assert y.shape == (3, 4)
    np.testing.assert_array_equal(y[:], np.ones((3, 4)))
    np.testing.assert_array_equal(h5obj["x"][2:5], [2, 3, 4])
    assert h5obj.unfold() == f"{remote_dir}/data"


def test_get_of_a_missing_path(alice: Client, remote_dir: str) -> None:
    with pytest.raises(NotFound):
        alice.get(f"{remote_dir}/missing.b2nd")


def test_objects_see_changes_made_by_the_same_client(
    alice: Client, remote_dir: str, make_b2nd
) -> None:
    remote = f"{remote_dir}/a.b2nd"
    alice.upload(make_b2nd("a.b2nd", np.arange(10)), remote)
    ds = alice.get(remote)
    assert isinstance(ds, Dataset)
    assert ds.shape == (10,)
    alice.upload(make_b2nd("b.b2nd", np.arange(4).reshape(2, 2)), remote)  # replaced
    assert ds.shape == (2, 2)
    assert ds.ndim == 2
