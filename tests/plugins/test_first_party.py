"""The four first-party plugins end to end through the daemon, each configured by its
``[plugins.NAME]`` table, against the real server."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pytest

from cat2sync import Client
from cat2sync.errors import ManifestError
from cat2sync.events import EventKind
from cat2sync.manifest import SettingSpec
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import grow_b2nd, run_once, write_b2nd
from cat2sync.testing import read_b2nd as local_array
from tests.helpers.plugins import Env, make_plugin
from tests.helpers.remote import remote_array, remote_info
from tests.helpers.webhook import Receiver

# -- convert --------------------------------------------------------------------------


def test_convert_npy_lands_as_b2nd(env: Env, client: Client, first_party: SimpleNamespace) -> None:
    plugins = Plugins(entry_points=False, extra=[first_party.convert])
    manifest = env.manifest(
        plugins,
        uploads=[env.upload_rule(convert=[".npy"])],
        tables={"convert": {"codec": "lz4", "clevel": 3, "chunks": [8, 5]}},
    )
    data = np.arange(30 * 5, dtype="float32").reshape(30, 5) / 7
    np.save(env.data_dir / "frames.npy", data)
    (env.data_dir / "notes.txt").write_text("left as it is")

    result = run_once(manifest, plugins)
    assert result.failures == 0, result.events
    [uploaded] = result.of(EventKind.UPLOADED, "frames.npy")
    assert uploaded.remote == f"{env.remote_dir}/frames.b2nd"
    assert sorted(client.get_list(env.remote_dir)) == ["frames.b2nd", "notes.txt"]
    got = remote_array(client, f"{env.remote_dir}/frames.b2nd")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, data)
    info = remote_info(client, f"{env.remote_dir}/frames.b2nd")
    assert info is not None and tuple(info["chunks"]) == (8, 5)  # the manifest's setting

    # Unchanged: not converted nor sent again.
    again = run_once(manifest, plugins)
    assert again.failures == 0 and not again.of(EventKind.UPLOADED)


def test_a_converter_gets_its_own_table(env: Env, client: Client) -> None:
    """``ConverterContext.settings`` is the table the plugin declared, whatever name the
    plugin is registered under."""

    def cat2sync_declare_settings(declare: Any) -> None:
        declare("tiny", {"factor": SettingSpec(type=int, default=1)})

    def convert(source: Path, dest: Path, ctx: Any) -> None:
        values = np.loadtxt(source, dtype="int64", ndmin=1) * ctx.settings["factor"]
        write_b2nd(dest, values)

    def cat2sync_register_converters(register: Any) -> None:
        register(".txt", convert)

    tiny = make_plugin(
        "tiny_converter",
        cat2sync_declare_settings=cat2sync_declare_settings,
        cat2sync_register_converters=cat2sync_register_converters,
    )
    plugins = Plugins(entry_points=False, extra=[tiny])
    manifest = env.manifest(
        plugins, uploads=[env.upload_rule(convert=[".txt"])], tables={"tiny": {"factor": 3}}
    )
    (env.data_dir / "counts.txt").write_text("1\n2\n5\n")
    result = run_once(manifest, plugins)
    assert result.failures == 0, result.events
    np.testing.assert_array_equal(remote_array(client, f"{env.remote_dir}/counts.b2nd"), [3, 6, 15])


def test_an_installed_converter_changes_nothing_a_rule_did_not_ask_for(
    env: Env, client: Client, first_party: SimpleNamespace
) -> None:
    plugins = Plugins(entry_points=False, extra=[first_party.convert, first_party.hdf5])
    manifest = env.manifest(plugins, uploads=[env.upload_rule()])
    np.savetxt(env.data_dir / "log.csv", np.arange(6).reshape(3, 2), delimiter=",")
    _h5(env.data_dir / "scan.h5")
    result = run_once(manifest, plugins)
    assert result.failures == 0, result.events
    assert sorted(client.get_list(env.remote_dir)) == ["log.csv", "scan.h5"]  # as they are


def test_a_suffix_no_plugin_converts_is_a_manifest_error(
    env: Env, first_party: SimpleNamespace
) -> None:
    plugins = Plugins(entry_points=False, extra=[first_party.convert])
    manifest = env.manifest(plugins, uploads=[env.upload_rule(convert=[".csv", ".fits"])])
    with pytest.raises(ManifestError) as info:
        plugins.check_manifest(manifest)  # as `cat2sync validate` and the daemon do
    assert str(info.value).endswith(
        'upload[0].convert[1]: no installed plugin converts ".fits" '
        "(known: .csv, .npy, .npz, .tif, .tiff)"
    )


# -- hdf5 ---------------------------------------------------------------------------------

RAW = np.arange(6 * 5, dtype="uint16").reshape(6, 5)
DARK = np.linspace(0, 1, 5)


def _h5(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f.create_group("entry")["data"] = RAW
        f.create_group("calib")["dark"] = DARK
    return path


def test_hdf5_upload_is_unfolded_on_the_server(
    env: Env, client: Client, first_party: SimpleNamespace
) -> None:
    plugins = Plugins(entry_points=False, extra=[first_party.hdf5])
    manifest = env.manifest(
        plugins, uploads=[env.upload_rule()], tables={"hdf5": {"unfold": ["up"]}}
    )
    _h5(env.data_dir / "scan.h5")

    result = run_once(manifest, plugins)
    assert result.failures == 0, result.events
    assert result.paths(EventKind.UPLOADED) == ["scan.h5"]
    listing = set(client.get_list(env.remote_dir))
    assert {"scan.h5", "scan/entry/data.b2nd", "scan/calib/dark.b2nd"} <= listing
    np.testing.assert_array_equal(client.fetch(f"{env.remote_dir}/scan/entry/data.b2nd"), RAW)
    np.testing.assert_array_equal(client.fetch(f"{env.remote_dir}/scan/calib/dark.b2nd"), DARK)


def test_hdf5_convert_mode_uploads_one_dataset(
    env: Env, client: Client, first_party: SimpleNamespace
) -> None:
    plugins = Plugins(entry_points=False, extra=[first_party.hdf5])
    manifest = env.manifest(
        plugins,
        uploads=[env.upload_rule(convert=[".h5"])],
        tables={"hdf5": {"dataset": "/entry/data"}},
    )
    _h5(env.data_dir / "scan.h5")
    result = run_once(manifest, plugins)
    assert result.failures == 0, result.events
    assert client.get_list(env.remote_dir) == ["scan.b2nd"]
    np.testing.assert_array_equal(client.fetch(f"{env.remote_dir}/scan.b2nd"), RAW)


# -- derive ---------------------------------------------------------------------------------


def test_derive_keeps_a_derived_dataset_up_to_date(
    env: Env, client: Client, first_party: SimpleNamespace
) -> None:
    plugins = Plugins(entry_points=False, extra=[first_party.derive])
    manifest = env.manifest(
        plugins,
        uploads=[env.upload_rule()],
        tables={
            "derive": {
                "rules": [
                    {
                        "match": "run_*.b2nd",
                        "name": "{stem}_double",
                        "expression": "x * 2",
                        "path": "{folder}/derived/{stem}_double.b2nd",
                    }
                ]
            }
        },
    )
    data = np.arange(24, dtype="float64").reshape(8, 3)
    local = write_b2nd(env.data_dir / "run_001.b2nd", data, chunks=(4, 3))
    write_b2nd(env.data_dir / "dark.b2nd", data)  # does not match: nothing derived
    derived = f"{env.remote_dir}/derived/run_001_double.b2nd"

    first = run_once(manifest, plugins)
    assert first.failures == 0, first.events
    [computed] = first.of(EventKind.COMPUTED)
    assert computed.remote == derived
    np.testing.assert_array_equal(remote_array(client, derived), data * 2)
    assert sorted(client.get_list(env.remote_dir)) == [
        "dark.b2nd",
        "derived/run_001_double.b2nd",
        "run_001.b2nd",
    ]

    grow_b2nd(local, np.full((4, 3), 100.0))
    second = run_once(manifest, plugins)
    assert second.failures == 0, second.events
    # The append, and the refresh it caused (reported before it: see the daemon's
    # _after_send).
    assert sorted(e.kind for e in second.events) == [EventKind.APPENDED, EventKind.COMPUTED]
    assert second.of(EventKind.APPENDED)[0].rows == 4
    got = remote_array(client, derived)
    assert got.shape == (12, 3)
    np.testing.assert_array_equal(got, local_array(local) * 2)


# -- notify ---------------------------------------------------------------------------------


def test_notify_writes_json_lines_and_posts_to_a_webhook(
    env: Env, client: Client, first_party: SimpleNamespace
) -> None:
    plugins = Plugins(entry_points=False, extra=[first_party.notify])
    with Receiver() as receiver:
        manifest = env.manifest(
            plugins,
            uploads=[env.upload_rule()],
            tables={
                "notify": {
                    "file": "logs/events.jsonl",
                    "webhook": f"{receiver.url}/cat2sync",
                    "webhook_timeout": 5,
                }
            },
        )
        write_b2nd(env.data_dir / "a.b2nd", np.arange(10))
        (env.data_dir / "notes.txt").write_text("hello")
        result = run_once(manifest, plugins)  # closing the daemon flushes the webhook
        assert result.failures == 0, result.events
        expected = Counter((e.kind.value, e.path, e.remote, e.rows) for e in result.events)
        bodies = receiver.wait_for(lambda got: len(got) >= len(result.events))

    lines = (env.tmp_path / "logs" / "events.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert Counter((r["kind"], r["path"], r["remote"], r["rows"]) for r in records) == expected
    assert {(r["kind"], r["path"]) for r in records} == {
        ("uploaded", "a.b2nd"),
        ("uploaded", "notes.txt"),
    }
    assert sorted(bodies, key=lambda r: r["path"]) == sorted(records, key=lambda r: r["path"])
    for record in records:
        assert record["time"].endswith("Z") and record["bytes"] > 0


@pytest.mark.parametrize("kinds", [["failed"], ["uploaded"]])
def test_notify_reports_only_the_chosen_kinds(
    env: Env, first_party: SimpleNamespace, kinds: list[str]
) -> None:
    def cat2sync_register_transforms(register: Any) -> None:
        register("broken", lambda rows, ctx: 1 / 0)

    broken = make_plugin("broken", cat2sync_register_transforms=cat2sync_register_transforms)
    plugins = Plugins(entry_points=False, extra=[first_party.notify, broken])
    other = env.tmp_path / "other"
    other.mkdir()
    manifest = env.manifest(
        plugins,
        uploads=[
            env.upload_rule(transforms=["broken"]),
            env.upload_rule(name="plain", local=str(other), remote=f"{env.remote_dir}-plain"),
        ],
        tables={"notify": {"file": str(env.tmp_path / "events.jsonl"), "kinds": kinds}},
    )
    write_b2nd(env.data_dir / "bad.b2nd", np.arange(3))
    write_b2nd(other / "good.b2nd", np.arange(3))
    result = run_once(manifest, plugins)
    assert result.failures == 1
    records = [
        json.loads(line) for line in (env.tmp_path / "events.jsonl").read_text().splitlines()
    ]
    want = {"failed": [("failed", "bad.b2nd")], "uploaded": [("uploaded", "good.b2nd")]}
    assert [(r["kind"], r["path"]) for r in records] == want[kinds[0]]


def test_converted_files_get_the_rules_transforms(
    env: Env, client: Client, first_party: SimpleNamespace
) -> None:
    plugins = Plugins(entry_points=False, extra=[first_party.convert])
    manifest = env.manifest(
        plugins, uploads=[env.upload_rule(transforms=["float32"], convert=[".npy"])]
    )
    data = np.arange(20, dtype="int64").reshape(10, 2)
    np.save(env.data_dir / "counts.npy", data)
    result = run_once(manifest, plugins)
    assert result.failures == 0, result.events
    got = remote_array(client, f"{env.remote_dir}/counts.b2nd")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, data.astype("float32"))
