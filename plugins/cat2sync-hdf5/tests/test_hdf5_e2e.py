"""End to end with the real server: upload an HDF5 file, run the plugin's hook, read back."""

from __future__ import annotations

from pathlib import Path

import cat2sync_hdf5 as hdf5
import h5py
import numpy as np
import pytest

from cat2sync import Client
from cat2sync.manifest import UploadRule
from cat2sync.plugins import ConverterContext
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import plugin_manifest

RAW = np.arange(6 * 5, dtype="u2").reshape(6, 5)
DARK = np.linspace(0, 1, 5)


def configured(tmp_path: Path, table: str, rule: str = "") -> Plugins:
    """The plugin configured by a manifest with the upload rule "scans" and its table."""
    plugins = Plugins(entry_points=False, extra=[hdf5])
    text = f'[[upload]]\nname = "scans"\nlocal = "d"\nremote = "@personal/s"\n{rule}\n'
    plugins.configure(plugin_manifest(tmp_path, plugins, f"{text}[plugins.hdf5]\n{table}\n"))
    return plugins


@pytest.fixture(autouse=True)
def _restore_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hdf5, "_options", hdf5._options)


def make_h5(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f["raw"] = RAW
        f.create_group("calib")["dark"] = DARK
    return path


@pytest.mark.parametrize("name", ["scan.h5", "scan.hdf5"])
def test_unfold_after_upload(
    client: Client, remote_dir: str, data_dir: Path, tmp_path: Path, name: str
) -> None:
    plugins = configured(tmp_path, 'unfold = ["scans"]')
    local = make_h5(data_dir / name)
    rule = UploadRule(name="scans", local=data_dir, remote=remote_dir)
    remote = str(client.upload(local, f"{remote_dir}/{name}"))

    plugins.uploaded(rule, local, remote, client)

    listing = set(client.get_list(remote_dir))
    assert {"scan/raw.b2nd", "scan/calib/dark.b2nd"} <= listing
    np.testing.assert_array_equal(client.fetch(f"{remote_dir}/scan/raw.b2nd"), RAW)
    np.testing.assert_array_equal(client.fetch(f"{remote_dir}/scan/calib/dark.b2nd"), DARK)
    # A second upload of the same file unfolds again, over the previous result.
    plugins.uploaded(rule, local, remote, client)
    np.testing.assert_array_equal(client.fetch(f"{remote_dir}/scan/raw.b2nd"), RAW)


def test_rules_the_table_does_not_name_are_left_alone(
    client: Client, remote_dir: str, data_dir: Path, tmp_path: Path
) -> None:
    plugins = configured(tmp_path, "")  # installed, not asked for
    local = make_h5(data_dir / "scan.h5")
    rule = UploadRule(name="scans", local=data_dir, remote=remote_dir)
    remote = str(client.upload(local, f"{remote_dir}/scan.h5"))
    plugins.uploaded(rule, local, remote, client)
    assert client.get_list(remote_dir) == ["scan.h5"]


@pytest.mark.parametrize("name", ["notes.txt", "SCAN.H5"])
def test_other_files_are_left_alone(
    client: Client, remote_dir: str, data_dir: Path, tmp_path: Path, name: str
) -> None:
    # The server keeps only exact ".h5"/".hdf5" names as HDF5; "SCAN.H5" is a plain file.
    plugins = configured(tmp_path, 'unfold = ["scans"]')
    local = make_h5(data_dir / name)
    rule = UploadRule(name="scans", local=data_dir, remote=remote_dir)
    remote = str(client.upload(local, f"{remote_dir}/{name}"))
    plugins.uploaded(rule, local, remote, client)
    assert client.get_list(remote_dir) == [name]


def test_convert_mode(client: Client, remote_dir: str, data_dir: Path, tmp_path: Path) -> None:
    plugins = configured(tmp_path, 'dataset = "/raw"', rule='convert = [".h5"]')
    local = make_h5(data_dir / "scan.h5")
    dest = tmp_path / "scan.b2nd"
    plugins.converters[".h5"][1](local, dest, ConverterContext(rule="scans", path="scan.h5"))
    remote = str(client.upload(dest, f"{remote_dir}/scan.b2nd"))
    rule = UploadRule(name="scans", local=data_dir, remote=remote_dir)
    plugins.uploaded(rule, dest, remote, client)  # a converted file is not unfolded
    assert client.get_list(remote_dir) == ["scan.b2nd"]
    np.testing.assert_array_equal(client.fetch(remote), RAW)
