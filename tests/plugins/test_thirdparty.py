"""A plugin installed the way a user installs one (a distribution with an entry point in
the ``cat2sync`` group) is discovered, listed, and its transform changes what lands on the
server, for full uploads and for appends."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import grow_b2nd, run_once, write_b2nd
from cat2sync.testing import read_b2nd as local_array
from tests.helpers.cli import cli_cmd, cli_env
from tests.helpers.plugins import Env
from tests.helpers.remote import remote_array

PLUGIN = '''
"""A third-party cat2sync plugin: a transform and an event recorder."""

from cat2sync.plugins import hookimpl

EVENTS = []


def negate(rows, ctx):
    return -rows


@hookimpl
def cat2sync_register_transforms(register):
    register("thirdparty_negate", negate)


@hookimpl
def cat2sync_event(event):
    EVENTS.append(event)
'''


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``thirdparty_plugin`` and its dist-info in ``tmp_path/site``, on ``sys.path``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "thirdparty_plugin.py").write_text(textwrap.dedent(PLUGIN))
    dist = site / "thirdparty_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cat2sync]\nthirdparty = thirdparty_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    sys.modules.pop("thirdparty_plugin", None)
    importlib.invalidate_caches()


def _module() -> ModuleType:
    return sys.modules["thirdparty_plugin"]


def test_discovered_through_its_entry_point(installed: Path) -> None:
    plugins = Plugins()  # entry_points=True, as the CLI builds it
    info = {p.name: p for p in plugins.describe()}
    assert "thirdparty" in info, sorted(info)
    assert info["thirdparty"].version == "1.0"
    assert not info["thirdparty"].builtin
    assert info["thirdparty"].hooks == ("cat2sync_event", "cat2sync_register_transforms")
    assert "thirdparty_negate" in plugins.transforms

    out = subprocess.run(
        cli_cmd("plugins"),
        env=cli_env(installed),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "thirdparty (1.0): cat2sync_event, cat2sync_register_transforms" in out.splitlines()


def test_not_discovered_without_entry_points(installed: Path) -> None:
    assert "thirdparty" not in [p.name for p in Plugins(entry_points=False).describe()]


def test_its_transform_applies_to_uploads_and_appends(
    installed: Path, env: Env, client: Client
) -> None:
    plugins = Plugins()
    manifest = env.manifest(plugins, uploads=[env.upload_rule(transforms=["thirdparty_negate"])])
    data = np.arange(60, dtype="int32").reshape(20, 3)
    local = write_b2nd(env.data_dir / "run.b2nd", data, chunks=(8, 3))
    remote = f"{env.remote_dir}/run.b2nd"

    first = run_once(manifest, plugins)
    assert first.failures == 0, first.events
    assert first.paths(EventKind.UPLOADED) == ["run.b2nd"]
    np.testing.assert_array_equal(remote_array(client, remote), -data)
    # The plugin's own event hook was told, like every plugin.
    recorded = [(e.kind, e.path) for e in _module().EVENTS]
    assert (EventKind.UPLOADED, "run.b2nd") in recorded

    grow_b2nd(local, np.arange(1000, 1000 + 15, dtype="int32").reshape(5, 3))
    second = run_once(manifest, plugins)
    assert second.failures == 0, second.events
    [appended] = second.of(EventKind.APPENDED)
    assert (appended.path, appended.rows) == ("run.b2nd", 5)
    assert not second.of(EventKind.UPLOADED)  # only the new rows were sent
    grown = local_array(local)
    assert grown.shape == (25, 3)
    np.testing.assert_array_equal(remote_array(client, remote), -grown)


def test_disabled_by_its_entry_point_name(installed: Path, env: Env) -> None:
    # The plugin declares no settings; disable = ["thirdparty"] must still be accepted.
    plugins = Plugins()
    manifest = env.manifest(
        plugins, uploads=[env.upload_rule()], tables={"disable": ["thirdparty"]}
    )
    write_b2nd(env.data_dir / "a.b2nd", np.arange(4))
    result = run_once(manifest, plugins)
    assert result.failures == 0
    assert "thirdparty" not in [p.name for p in plugins.describe()]
    assert "thirdparty_negate" not in plugins.transforms
    assert not [e for e in _module().EVENTS if e.path == "a.b2nd"]
