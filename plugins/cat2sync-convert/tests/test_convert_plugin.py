"""Unit tests of the converters, the settings and the hooks of cat2sync-convert."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import blosc2
import cat2sync_convert as conv
import numpy as np
import pytest
import tifffile

from cat2sync.errors import ManifestError
from cat2sync.plugins import ConverterContext
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import plugin_manifest, read_b2nd

PLUGIN_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _restore_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """cat2sync_configure replaces module state: put it back after each test."""
    monkeypatch.setattr(conv, "_options", conv._options)


def ctx(**settings: Any) -> ConverterContext:
    return ConverterContext(settings=settings, rule="r", path="x")


# -- .npy -----------------------------------------------------------------------------------


def test_npy_roundtrip_with_compression_settings(tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(size=(40, 6)).astype("f4")
    np.save(tmp_path / "a.npy", data)
    dest = tmp_path / "a.b2nd"
    conv.convert_npy(
        tmp_path / "a.npy", dest, ctx(codec="lz4", clevel=3, filters=["bitshuffle"], chunks=[8, 6])
    )
    arr = blosc2.open(str(dest))
    np.testing.assert_array_equal(arr[()], data)
    assert arr.dtype == data.dtype
    assert arr.chunks == (8, 6)
    assert arr.cparams.codec == blosc2.Codec.LZ4
    assert arr.cparams.clevel == 3
    assert arr.cparams.filters[0] == blosc2.Filter.BITSHUFFLE


def test_npy_written_in_slabs_of_chunk_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conv, "SLAB_BYTES", 1)  # one chunk-row per slab
    data = np.arange(103 * 5, dtype="i8").reshape(103, 5)
    np.save(tmp_path / "a.npy", data)
    conv.convert_npy(tmp_path / "a.npy", tmp_path / "a.b2nd", ctx(chunks=[10, 5]))
    arr = blosc2.open(str(tmp_path / "a.b2nd"))
    assert conv.row_step(arr) == 10
    np.testing.assert_array_equal(arr[()], data)


@pytest.mark.parametrize(
    "data",
    [
        np.float64(2.5) * np.ones(()),
        np.zeros((0, 3), dtype="u2"),
        np.arange(12, dtype=">i4").reshape(3, 4),
        np.asfortranarray(np.arange(30.0).reshape(5, 6)),
        np.arange(24, dtype="u1").reshape(2, 3, 4),
    ],
    ids=["scalar", "empty", "big-endian", "fortran", "3d"],
)
def test_npy_shapes_and_dtypes(tmp_path: Path, data: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", data)
    conv.convert_npy(tmp_path / "a.npy", tmp_path / "a.b2nd", ctx())
    out = blosc2.open(str(tmp_path / "a.b2nd"))
    assert out.shape == data.shape
    assert out.dtype == data.dtype.newbyteorder("=")
    np.testing.assert_array_equal(out[()], data)


def test_npy_with_objects_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([1, "a"], dtype=object))
    with pytest.raises(ValueError, match=r"o\.npy: .*Python objects"):
        conv.convert_npy(tmp_path / "o.npy", tmp_path / "o.b2nd", ctx())
    assert not (tmp_path / "o.b2nd").exists()


def test_chunks_must_match_dimensions(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(10))
    with pytest.raises(
        ValueError,
        match=r"chunks setting has 2 dimension\(s\) but the array "
        r"has 1",
    ):
        conv.convert_npy(tmp_path / "a.npy", tmp_path / "a.b2nd", ctx(chunks=[2, 2]))
    assert not (tmp_path / "a.b2nd").exists()


# -- .npz -----------------------------------------------------------------------------------


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_first_array_by_default_and_npz_key(
    tmp_path: Path, save: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conv, "SLAB_BYTES", 1)  # stream in many slabs
    first = np.arange(200 * 3, dtype="f8").reshape(200, 3)
    second = np.arange(50, dtype="i2")
    save(tmp_path / "a.npz", first=first, second=second)
    conv.convert_npz(tmp_path / "a.npz", tmp_path / "1.b2nd", ctx(chunks=[16, 3]))
    np.testing.assert_array_equal(read_b2nd(tmp_path / "1.b2nd"), first)
    conv.convert_npz(tmp_path / "a.npz", tmp_path / "2.b2nd", ctx(npz_key="second"))
    out = read_b2nd(tmp_path / "2.b2nd")
    assert out.dtype == np.dtype("i2")
    np.testing.assert_array_equal(out, second)


def test_npz_fortran_order_and_scalar_members(tmp_path: Path) -> None:
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    np.savez(tmp_path / "a.npz", f=fortran, s=np.int32(7) * np.ones((), "i4"))
    conv.convert_npz(tmp_path / "a.npz", tmp_path / "f.b2nd", ctx())
    np.testing.assert_array_equal(read_b2nd(tmp_path / "f.b2nd"), fortran)
    conv.convert_npz(tmp_path / "a.npz", tmp_path / "s.b2nd", ctx(npz_key="s"))
    assert read_b2nd(tmp_path / "s.b2nd").shape == ()
    assert int(read_b2nd(tmp_path / "s.b2nd")) == 7


def test_npz_missing_key_names_the_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", raw=np.zeros(3), dark=np.zeros(3))
    with pytest.raises(ValueError, match=r"a\.npz: no array named 'flat' \(arrays: raw, dark\)"):
        conv.convert_npz(tmp_path / "a.npz", tmp_path / "a.b2nd", ctx(npz_key="flat"))
    assert not (tmp_path / "a.b2nd").exists()


# -- .csv -----------------------------------------------------------------------------------


def test_csv_header_comments_and_delimiter(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "time;value;error\n# units: s;V;V\n0;1.5;0.1\n\n1;2.5;0.2  # a comment\n2;3.5;0.3\n"
    )
    conv.convert_csv(tmp_path / "a.csv", tmp_path / "a.b2nd", ctx(delimiter=";", skiprows=1))
    np.testing.assert_array_equal(
        read_b2nd(tmp_path / "a.b2nd"), [[0, 1.5, 0.1], [1, 2.5, 0.2], [2, 3.5, 0.3]]
    )


def test_csv_in_many_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv, "SLAB_BYTES", 1)
    data = np.arange(5000 * 2, dtype="i4").reshape(5000, 2)
    np.savetxt(tmp_path / "a.csv", data, fmt="%d", delimiter=",", header="a,b")
    conv.convert_csv(
        tmp_path / "a.csv", tmp_path / "a.b2nd", ctx(csv_dtype="int32", chunks=[100, 2])
    )
    out = read_b2nd(tmp_path / "a.b2nd")
    assert out.dtype == np.dtype("i4")
    np.testing.assert_array_equal(out, data)


def test_csv_single_column_is_one_dimensional(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1\n2\n3\n")
    conv.convert_csv(tmp_path / "a.csv", tmp_path / "a.b2nd", ctx())
    np.testing.assert_array_equal(read_b2nd(tmp_path / "a.b2nd"), [1.0, 2.0, 3.0])


def test_csv_without_data_is_an_empty_array(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("a,b\n")
    conv.convert_csv(tmp_path / "a.csv", tmp_path / "a.b2nd", ctx(skiprows=1))
    assert read_b2nd(tmp_path / "a.b2nd").shape == (0,)


def test_csv_bad_value_names_the_lines(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x,y\n1,2\n3,oops\n")
    with pytest.raises(ValueError, match=r"a\.csv: lines 2-3: .*oops"):
        conv.convert_csv(tmp_path / "a.csv", tmp_path / "a.b2nd", ctx(skiprows=1))
    assert not (tmp_path / "a.b2nd").exists()


def test_csv_column_count_change_between_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conv, "_FIRST_CSV_BATCH", 2)
    (tmp_path / "a.csv").write_text("1,2\n3,4\n5,6,7\n")
    with pytest.raises(ValueError, match=r"line.*expected 2 columns, got 3"):
        conv.convert_csv(tmp_path / "a.csv", tmp_path / "a.b2nd", ctx())


# -- TIFF -----------------------------------------------------------------------------------


def test_tiff_stack_page_by_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv, "SLAB_BYTES", 1)
    stack = np.arange(7 * 16 * 12, dtype="u2").reshape(7, 16, 12)
    tifffile.imwrite(tmp_path / "s.tif", stack)
    conv.convert_tiff(tmp_path / "s.tif", tmp_path / "s.b2nd", ctx(chunks=[2, 16, 12]))
    out = blosc2.open(str(tmp_path / "s.b2nd"))
    assert out.dtype == np.dtype("u2")
    np.testing.assert_array_equal(out[()], stack)


@pytest.mark.parametrize("kind", ["hyperstack", "rgb", "single", "big-endian", "appended"])
def test_tiff_layouts(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "t.tiff"
    data: np.ndarray
    if kind == "hyperstack":
        data = np.arange(2 * 3 * 4 * 5, dtype="f4").reshape(2, 3, 4, 5)
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    elif kind == "rgb":
        data = np.arange(3 * 4 * 5 * 3, dtype="u1").reshape(3, 4, 5, 3)
        tifffile.imwrite(path, data, photometric="rgb")
    elif kind == "single":
        data = np.arange(20, dtype="i2").reshape(4, 5)
        tifffile.imwrite(path, data)
    elif kind == "big-endian":
        data = np.arange(60, dtype="u2").reshape(3, 4, 5)
        tifffile.imwrite(path, data, byteorder=">", photometric="minisblack")
    else:
        data = np.stack([np.full((4, 5), i, "f4") for i in range(3)])
        for page in data:
            tifffile.imwrite(path, page, append=True)
    conv.convert_tiff(path, tmp_path / "t.b2nd", ctx())
    out = read_b2nd(tmp_path / "t.b2nd")
    assert out.shape == data.shape
    np.testing.assert_array_equal(out, data)


def test_not_a_tiff(tmp_path: Path) -> None:
    (tmp_path / "x.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(Exception, match="not a TIFF"):
        conv.convert_tiff(tmp_path / "x.tif", tmp_path / "x.b2nd", ctx())
    assert not (tmp_path / "x.b2nd").exists()


# -- settings and hooks ---------------------------------------------------------------------


def test_defaults() -> None:
    opts = conv.ConvertOptions.from_settings({})
    assert opts == conv.ConvertOptions()
    assert opts.codec == blosc2.Codec.ZSTD and opts.clevel == 5
    assert opts.filters == (blosc2.Filter.SHUFFLE,) and opts.chunks is None


@pytest.mark.parametrize(
    ("settings", "key", "message"),
    [
        ({"codec": "snappy"}, "codec", 'unknown value "snappy"'),
        ({"clevel": 10}, "clevel", "from 0 to 9"),
        ({"filters": ["shuffle", "nope"]}, "filters[1]", 'unknown value "nope"'),
        ({"filters": ["shuffle"] * 7}, "filters", "at most 6"),
        ({"chunks": [10, 0]}, "chunks[1]", "positive integer"),
        ({"chunks": []}, "chunks", "non-empty"),
        ({"delimiter": ";;"}, "delimiter", "one character"),
        ({"skiprows": -1}, "skiprows", "non-negative"),
        ({"csv_dtype": "str"}, "csv_dtype", "numeric"),
    ],
)
def test_bad_settings(settings: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(conv.SettingError, match=message) as info:
        conv.ConvertOptions.from_settings(settings)
    assert info.value.key == key


def test_configure_reports_a_one_line_manifest_error(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[conv])
    manifest = plugin_manifest(
        tmp_path, plugins, 'codec = "zstd"\nfilters = ["shufle"]', section=conv.NAME
    )
    with pytest.raises(ManifestError) as info:
        conv.cat2sync_configure(manifest)
    assert str(info.value) == (
        f"{manifest.source}: plugins.convert.filters[0]: "
        'unknown value "shufle" (expected one of: nofilter, shuffle, '
        "bitshuffle, delta, bytedelta)"
    )


def test_manifest_checks_types_and_keys(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[conv])
    with pytest.raises(ManifestError, match=r"plugins\.convert\.clevel: expected an integer"):
        plugin_manifest(tmp_path, plugins, 'clevel = "high"', section=conv.NAME)
    with pytest.raises(ManifestError, match=r"plugins\.convert\.level: unknown key"):
        plugin_manifest(tmp_path, plugins, "level = 3", section=conv.NAME)


def test_every_format_is_registered_and_the_rules_choose(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[conv])
    assert set(plugins.converters) == {".npy", ".npz", ".csv", ".tif", ".tiff"}
    assert "cat2sync_register_converters" in next(
        p.hooks for p in plugins.describe() if p.name == "cat2sync_convert"
    )
    # The old table key is gone: a rule's ``convert`` says what is converted.
    with pytest.raises(ManifestError, match=r"plugins\.convert\.formats: unknown key"):
        plugin_manifest(tmp_path, plugins, 'formats = ["npy"]', section=conv.NAME)


def test_configured_settings_apply_when_the_context_has_none(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[conv])
    plugins.configure(
        plugin_manifest(tmp_path, plugins, 'codec = "zlib"\nclevel = 9', section=conv.NAME)
    )
    np.save(tmp_path / "a.npy", np.arange(10))
    plugins.converters[".npy"][1](tmp_path / "a.npy", tmp_path / "a.b2nd", ConverterContext())
    out = blosc2.open(str(tmp_path / "a.b2nd"))
    assert (out.cparams.codec, out.cparams.clevel) == (blosc2.Codec.ZLIB, 9)


def test_entry_point_in_pyproject() -> None:
    meta = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["cat2sync"] == {conv.NAME: "cat2sync_convert"}
    assert "tifffile" in " ".join(meta["project"]["dependencies"])
