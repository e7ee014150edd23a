"""End to end: convert with the plugin through the manager, upload, fetch, compare."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cat2sync_convert as conv
import numpy as np
import pytest
import tifffile

from cat2sync import Client
from cat2sync.plugins import ConverterContext
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import plugin_manifest


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Plugins:
    monkeypatch.setattr(conv, "_options", conv._options)  # restored after the test
    plugins = Plugins(entry_points=False, extra=[conv])
    table = 'codec = "lz4hc"\nclevel = 7\nfilters = ["bytedelta"]\nskiprows = 1'
    plugins.configure(plugin_manifest(tmp_path, plugins, table, section=conv.NAME))
    return plugins


def write_npy(path: Path, data: np.ndarray) -> None:
    np.save(path, data)


def write_npz(path: Path, data: np.ndarray) -> None:
    np.savez_compressed(path, data=data, other=np.zeros(3))


def write_csv(path: Path, data: np.ndarray) -> None:
    np.savetxt(path, data, delimiter=",", header="a,b,c,d", comments="")


def write_tiff(path: Path, data: np.ndarray) -> None:
    tifffile.imwrite(path, data.astype("f4").reshape(5, 2, 2), photometric="minisblack")


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("run.npy", write_npy),
        ("run.npz", write_npz),
        ("run.csv", write_csv),
        ("run.tiff", write_tiff),
    ],
)
def test_converted_file_lands_on_the_server(
    client: Client,
    remote_dir: str,
    data_dir: Path,
    tmp_path: Path,
    plugins: Plugins,
    name: str,
    write: Callable[[Path, np.ndarray], None],
) -> None:
    data = np.linspace(0, 1, 20).reshape(5, 4)
    source = data_dir / name
    write(source, data)
    expected = data.astype("f4").reshape(5, 2, 2) if name.endswith(".tiff") else data
    dest = tmp_path / "out" / (source.stem + ".b2nd")
    dest.parent.mkdir()
    plugins.converters[source.suffix][1](source, dest, ConverterContext(rule="r", path=name))

    remote = client.upload(dest, f"{remote_dir}/{dest.name}")
    assert str(remote) == f"{remote_dir}/run.b2nd"
    info = client.get_info(remote)
    assert tuple(info["shape"]) == expected.shape
    np.testing.assert_array_equal(client.fetch(remote), expected)
