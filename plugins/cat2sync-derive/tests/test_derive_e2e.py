"""End to end with the real server: the plugin's requests, computed by the server, equal
the NumPy computation."""

from __future__ import annotations

import uuid
from pathlib import Path

import blosc2
import cat2sync_derive as derive
import numpy as np
import pytest

from cat2sync import Client
from cat2sync.manifest import UploadRule
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import plugin_manifest

MANIFEST = """
[[plugins.derive.rules]]
match = "run_*.b2nd"
name = "{stem}_calibrated"
expression = "(x - dark) * 0.5"
operands = { dark = "{folder}/dark.b2nd" }
path = "{folder}/derived/{stem}_calibrated.b2nd"

[[plugins.derive.rules]]
match = "run_*.b2nd"
name = "{stem}_squared"
expression = "raw * raw + 1"
variable = "raw"
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Plugins:
    monkeypatch.setattr(derive, "_rules", derive._rules)  # restored after the test
    plugins = Plugins(entry_points=False, extra=[derive])
    plugins.configure(plugin_manifest(tmp_path, plugins, MANIFEST))
    return plugins


def upload_array(client: Client, data_dir: Path, remote: str, data: np.ndarray) -> str:
    local = data_dir / Path(remote).name
    blosc2.asarray(data, urlpath=str(local), mode="w")
    return str(client.upload(local, remote))


def test_requests_computed_on_the_server(
    client: Client, remote_dir: str, data_dir: Path, plugins: Plugins
) -> None:
    raw = np.arange(40, dtype="f8").reshape(8, 5)
    dark = np.full((8, 5), 3.0)
    stem = f"run_{uuid.uuid4().hex[:8]}"  # the second rule writes to @personal/<stem>_...
    upload_array(client, data_dir, f"{remote_dir}/dark.b2nd", dark)
    remote = upload_array(client, data_dir, f"{remote_dir}/{stem}.b2nd", raw)
    rule = UploadRule(name="beam", local=data_dir, remote=remote_dir)
    info = {"shape": raw.shape, "dtype": str(raw.dtype), "rows": raw.shape[0]}

    assert plugins.lazyexprs(rule, f"{remote_dir}/dark.b2nd", info) == []
    calibrated, squared = plugins.lazyexprs(rule, remote, info)
    assert calibrated.path == f"{remote_dir}/derived/{stem}_calibrated.b2nd"
    assert squared.path is None

    target = f"{remote_dir}/derived/{stem}_calibrated.b2nd"
    client.lazyexpr_at(target, calibrated.expression, calibrated.operands)
    np.testing.assert_allclose(client.fetch(target), (raw - dark) * 0.5)
    made = client.lazyexpr(squared.name, squared.expression, squared.operands)
    assert str(made) == f"@personal/{stem}_squared.b2nd"
    np.testing.assert_allclose(client.fetch(made), raw * raw + 1)

    # After an append the same requests refresh the results.
    client.append(remote, np.full((2, 5), 100.0))
    dark_more = np.full((10, 5), 3.0)
    upload_array(client, data_dir, f"{remote_dir}/dark.b2nd", dark_more)
    again, _ = plugins.lazyexprs(rule, remote, {**info, "rows": 2})
    assert again == calibrated
    client.lazyexpr_at(target, again.expression, again.operands)
    grown = np.concatenate([raw, np.full((2, 5), 100.0)])
    np.testing.assert_allclose(client.fetch(target), (grown - dark_more) * 0.5)
    client.remove(made)
