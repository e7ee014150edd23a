"""Unit tests of cat2sync-hdf5: settings, the converter and which hooks act in which mode."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import blosc2
import cat2sync_hdf5 as hdf5
import h5py
import numpy as np
import pytest

from cat2sync.errors import ManifestError
from cat2sync.manifest import Manifest
from cat2sync.plugins import ConverterContext
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import plugin_manifest

PLUGIN_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _restore_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hdf5, "_options", hdf5._options)


def ctx(**settings: Any) -> ConverterContext:
    return ConverterContext(settings=settings, rule="r", path="x.h5")


@pytest.fixture
def h5file(tmp_path: Path) -> Path:
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.create_dataset(
            "data",
            data=np.arange(300 * 4, dtype="f4").reshape(300, 4),
            chunks=(7, 4),
            compression="gzip",
        )
        entry["scalar"] = np.float64(1.25)
        entry["empty"] = np.zeros((0, 3), dtype="i2")
        entry["big"] = np.arange(10, dtype=">i4")
        entry.create_dataset("names", data=["a", "bb"], dtype=h5py.string_dtype())
        entry["nothing"] = h5py.Empty("f8")
    return path


def test_convert_a_dataset_in_slabs(
    h5file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hdf5, "SLAB_BYTES", 1)
    dest = tmp_path / "scan.b2nd"
    hdf5.convert_hdf5(h5file, dest, ctx(dataset="/entry/data"))
    out = blosc2.open(str(dest))
    assert out.dtype == np.dtype("f4")
    np.testing.assert_array_equal(out[()], np.arange(1200, dtype="f4").reshape(300, 4))


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("entry/scalar", np.float64(1.25) * np.ones(())),
        ("/entry/empty", np.zeros((0, 3), dtype="i2")),
        ("/entry/big", np.arange(10, dtype="i4")),
    ],
)
def test_convert_shapes_and_dtypes(
    h5file: Path, tmp_path: Path, dataset: str, expected: np.ndarray
) -> None:
    hdf5.convert_hdf5(h5file, tmp_path / "o.b2nd", ctx(dataset=dataset))
    out = blosc2.open(str(tmp_path / "o.b2nd"))
    assert out.shape == expected.shape
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out[()], expected)


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("/entry/missing", r"scan\.h5: /entry/missing: no such dataset \(datasets: /entry/big, "),
        ("/entry", r"/entry: not a dataset"),
        ("/entry/names", r"variable-length data"),
        ("/entry/nothing", r"an empty HDF5 dataset"),
    ],
)
def test_convert_errors_are_clear_and_leave_nothing(
    h5file: Path, tmp_path: Path, dataset: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        hdf5.convert_hdf5(h5file, tmp_path / "o.b2nd", ctx(dataset=dataset))
    assert not (tmp_path / "o.b2nd").exists()


def test_not_an_hdf5_file(tmp_path: Path) -> None:
    (tmp_path / "x.h5").write_bytes(b"nope")
    with pytest.raises(OSError):
        hdf5.convert_hdf5(tmp_path / "x.h5", tmp_path / "x.b2nd", ctx(dataset="/a"))
    assert not (tmp_path / "x.b2nd").exists()


def test_options() -> None:
    assert hdf5.Hdf5Options.from_settings({}) == hdf5.Hdf5Options()
    opts = hdf5.Hdf5Options.from_settings({"unfold": ["scans"], "dataset": "/d"})
    assert (opts.unfold, opts.dataset) == ({"scans"}, "/d")
    with pytest.raises(hdf5.SettingError, match="expected an array of rule names") as info:
        hdf5.Hdf5Options.from_settings({"unfold": "scans"})
    assert info.value.key == "unfold"
    with pytest.raises(hdf5.SettingError, match="expected an HDF5 dataset path"):
        hdf5.Hdf5Options.from_settings({"dataset": "/"})


RULE = '[[upload]]\nname = "scans"\nlocal = "data"\nremote = "@personal/s"\n'


def _manifest(tmp_path: Path, plugins: Plugins, rule: str, table: str) -> Manifest:
    return plugin_manifest(tmp_path, plugins, f"{RULE}{rule}\n[plugins.hdf5]\n{table}\n")


@pytest.mark.parametrize(
    ("rule", "table", "key", "message"),
    [
        (
            'convert = [".h5"]',
            "",
            "dataset",
            "missing: rule 'scans' converts .h5 files and needs the HDF5 dataset to convert, "
            'e.g. dataset = "/entry/data"',
        ),
        ("", 'unfold = ["beamline"]', "unfold", "no upload rule named 'beamline' (known: scans)"),
        (
            'convert = [".h5"]',
            'unfold = ["scans"]\ndataset = "/d"',
            "unfold",
            "rule 'scans' converts .h5 files: there is nothing to unfold",
        ),
    ],
)
def test_the_table_is_checked_against_the_rules(
    tmp_path: Path, rule: str, table: str, key: str, message: str
) -> None:
    plugins = Plugins(entry_points=False, extra=[hdf5])
    manifest = _manifest(tmp_path, plugins, rule, table)
    with pytest.raises(ManifestError) as info:
        hdf5.cat2sync_configure(manifest)
    assert str(info.value) == f"{manifest.source}: plugins.hdf5.{key}: {message}"


def test_manifest_checks_types_and_keys(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[hdf5])
    with pytest.raises(ManifestError, match=r"plugins\.hdf5\.dataset: expected a string"):
        plugin_manifest(tmp_path, plugins, "dataset = 3", section=hdf5.NAME)
    with pytest.raises(ManifestError, match=r"plugins\.hdf5\.datasets: unknown key"):
        plugin_manifest(tmp_path, plugins, 'datasets = ["/a"]', section=hdf5.NAME)


def test_converters_are_there_for_the_rules_that_ask(tmp_path: Path, h5file: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[hdf5])
    assert {".h5", ".hdf5"} <= set(plugins.converters)
    plugins.configure(_manifest(tmp_path, plugins, 'convert = [".h5"]', 'dataset = "/entry/big"'))
    # The daemon's context may carry no settings: the configured dataset is used.
    plugins.converters[".h5"][1](h5file, tmp_path / "o.b2nd", ConverterContext())
    np.testing.assert_array_equal(blosc2.open(str(tmp_path / "o.b2nd"))[()], np.arange(10))


def test_entry_point_in_pyproject() -> None:
    meta = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["cat2sync"] == {hdf5.NAME: "cat2sync_hdf5"}
    assert "h5py" in " ".join(meta["project"]["dependencies"])
