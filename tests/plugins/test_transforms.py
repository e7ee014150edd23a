"""Transforms through the daemon: built-in ones with parameters on uploads and appends,
the checks that keep the remote array consistent, and transforms on a subscribe rule."""

from __future__ import annotations

from typing import Any

import blosc2
import numpy as np
import pytest

from cat2sync import Client
from cat2sync.errors import ManifestError
from cat2sync.events import EventKind
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import grow_b2nd, run_once, write_b2nd
from cat2sync.testing import read_b2nd as local_array
from tests.helpers.plugins import Env, transforms_plugin
from tests.helpers.remote import remote_array, remote_info


def test_builtin_transforms_with_parameters(env: Env, client: Client) -> None:
    plugins = Plugins(entry_points=False)
    manifest = env.manifest(
        plugins, uploads=[env.upload_rule(transforms=["float32", {"name": "scale", "factor": 0.5}])]
    )
    data = np.arange(3 * 40, dtype="int64").reshape(40, 3)
    local = write_b2nd(env.data_dir / "counts.b2nd", data, chunks=(16, 3))
    remote = f"{env.remote_dir}/counts.b2nd"

    first = run_once(manifest, plugins)
    assert first.failures == 0, first.events
    assert first.paths(EventKind.UPLOADED) == ["counts.b2nd"]
    info = remote_info(client, remote)
    assert info is not None
    assert (info["dtype"], tuple(info["shape"])) == ("float32", (40, 3))
    assert tuple(info["chunks"]) == (16, 3)  # the local layout, chosen for growing
    got = remote_array(client, remote)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, data.astype("float32") * 0.5)
    # The local file is left as it is.
    assert local_array(local).dtype == np.int64

    grow_b2nd(local, np.arange(7 * 3, dtype="int64").reshape(7, 3) + 1001)
    second = run_once(manifest, plugins)
    assert second.failures == 0, second.events
    [appended] = second.of(EventKind.APPENDED)
    assert appended.rows == 7
    got = remote_array(client, remote)
    assert got.dtype == np.float32 and got.shape == (47, 3)
    np.testing.assert_array_equal(got, local_array(local).astype("float32") * 0.5)


def test_transformed_empty_array_can_grow(env: Env, client: Client) -> None:
    """An instrument creates an empty array, then appends: the transformed remote copy
    must keep a chunk layout that can grow."""
    plugins = Plugins(entry_points=False)
    manifest = env.manifest(plugins, uploads=[env.upload_rule(transforms=["float32"])])
    local = env.data_dir / "live.b2nd"
    blosc2.empty((0, 4), dtype="int16", chunks=(8, 4), urlpath=str(local), mode="w")
    remote = f"{env.remote_dir}/live.b2nd"
    first = run_once(manifest, plugins)
    assert first.failures == 0, first.events
    info = remote_info(client, remote)
    assert info is not None and (info["dtype"], tuple(info["shape"])) == ("float32", (0, 4))

    grow_b2nd(local, np.arange(20, dtype="int16").reshape(5, 4))
    second = run_once(manifest, plugins)
    assert second.failures == 0, second.events
    assert [e.rows for e in second.of(EventKind.APPENDED)] == [5]
    np.testing.assert_array_equal(
        remote_array(client, remote), np.arange(20, dtype="float32").reshape(5, 4)
    )


def test_unknown_transform_is_a_manifest_error(env: Env) -> None:
    plugins = Plugins(entry_points=False)
    manifest = env.manifest(plugins, uploads=[env.upload_rule(transforms=["float32", "nope"])])
    with pytest.raises(ManifestError) as caught:
        plugins.check_manifest(manifest)
    message = str(caught.value)
    assert "\n" not in message
    assert "upload[0].transforms[1]" in message and "'nope'" in message


# -- wrong rows on an append ------------------------------------------------------


def _on_append(bad: Any) -> Any:
    """A transform that keeps rows as they are on the first upload and gives ``bad(rows)``
    on an append (``ctx.start_row > 0``)."""

    def transform(rows: np.ndarray, ctx: Any) -> np.ndarray:
        return rows if ctx.start_row == 0 else bad(rows)

    return transform


BAD = {
    "fewer_rows": (_on_append(lambda rows: rows[:-1]), "number of rows"),
    "more_rows": (_on_append(lambda rows: np.concatenate([rows, rows])), "number of rows"),
    "other_dtype": (_on_append(lambda rows: rows.astype("float64")), "float64"),
    "other_shape": (_on_append(lambda rows: rows[:, :2]), "shape (2,)"),
    "a_scalar": (_on_append(lambda rows: rows.sum()), "number of rows"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_rows_on_append_are_rejected_before_sending(
    env: Env, client: Client, name: str
) -> None:
    transform, says = BAD[name]
    plugins = Plugins(entry_points=False, extra=[transforms_plugin("shaky", **{name: transform})])
    manifest = env.manifest(plugins, uploads=[env.upload_rule(transforms=[name])])
    data = np.arange(30, dtype="int32").reshape(10, 3)
    local = write_b2nd(env.data_dir / "run.b2nd", data, chunks=(4, 3))
    remote = f"{env.remote_dir}/run.b2nd"
    first = run_once(manifest, plugins)
    assert first.failures == 0, first.events
    np.testing.assert_array_equal(remote_array(client, remote), data)
    _, etag_before = client.stat(remote)

    grow_b2nd(local, np.full((4, 3), 7, dtype="int32"))
    second = run_once(manifest, plugins)
    assert second.failures > 0
    assert not second.of(EventKind.APPENDED) and not second.of(EventKind.UPLOADED)
    [failed] = second.of(EventKind.FAILED, "run.b2nd")
    assert failed.message is not None
    assert f"{name!r} (plugin 'shaky')" in failed.message, failed.message
    assert says in failed.message, failed.message
    # Nothing reached the server: same shape, same rows, same file.
    info, etag_after = client.stat(remote)
    assert tuple(info["shape"]) == (10, 3) and info["dtype"] == "int32"
    np.testing.assert_array_equal(remote_array(client, remote), data)
    assert etag_after == etag_before


def test_raising_transform_on_full_upload_sends_nothing(env: Env, client: Client) -> None:
    def explode(rows: np.ndarray, ctx: Any) -> np.ndarray:
        raise ValueError("no calibration for this detector")

    plugins = Plugins(entry_points=False, extra=[transforms_plugin("calib", explode=explode)])
    manifest = env.manifest(plugins, uploads=[env.upload_rule(transforms=["explode"])])
    write_b2nd(env.data_dir / "run.b2nd", np.arange(12).reshape(4, 3))
    result = run_once(manifest, plugins)
    assert result.failures == 1
    [failed] = result.of(EventKind.FAILED, "run.b2nd")
    assert failed.message is not None
    assert "transform 'explode' (plugin 'calib') failed on run.b2nd" in failed.message
    assert "no calibration" in failed.message
    assert remote_info(client, f"{env.remote_dir}/run.b2nd") is None
    assert client.get_list(env.remote_dir) == []  # no temporary left behind either


# -- subscribe rules ------------------------------------------------------------------


def test_transform_on_subscribe_applies_to_the_local_copy(env: Env, client: Client) -> None:
    data = np.arange(50 * 4, dtype="int32").reshape(50, 4) - 100
    source = write_b2nd(env.tmp_path / "src" / "ints.b2nd", data, chunks=(16, 4))
    client.upload(source, f"{env.remote_dir}/ints.b2nd")
    plugins = Plugins(entry_points=False)
    manifest = env.manifest(plugins, subscribes=[env.subscribe_rule(transforms=["float32"])])

    first = run_once(manifest, plugins)
    assert first.failures == 0, first.events
    assert first.paths(EventKind.DOWNLOADED) == ["ints.b2nd"]
    mirrored = local_array(env.tmp_path / "mirror" / "ints.b2nd")
    assert mirrored.dtype == np.float32
    np.testing.assert_array_equal(mirrored, data.astype("float32"))
    # The server's copy is what was uploaded.
    assert remote_array(client, f"{env.remote_dir}/ints.b2nd").dtype == np.int32

    # Grown remotely: the local copy is the transform of the whole new array.
    client.append(f"{env.remote_dir}/ints.b2nd", np.full((6, 4), 5, dtype="int32"))
    second = run_once(manifest, plugins)
    assert second.failures == 0, second.events
    assert second.paths(EventKind.DOWNLOADED) == ["ints.b2nd"]
    mirrored = local_array(env.tmp_path / "mirror" / "ints.b2nd")
    assert mirrored.dtype == np.float32 and mirrored.shape == (56, 4)
    np.testing.assert_array_equal(mirrored[50:], np.full((6, 4), 5, dtype="float32"))
    np.testing.assert_array_equal(mirrored[:50], data.astype("float32"))

    # Unchanged remotely: nothing is downloaded again.
    third = run_once(manifest, plugins)
    assert third.failures == 0 and not third.of(EventKind.DOWNLOADED)


def test_transform_on_subscribe_mirrors_a_scalar_as_it_is(env: Env, client: Client) -> None:
    # Row transforms have no rows to work on in a 0-d array: it is mirrored unchanged.
    scalar = env.tmp_path / "src" / "gain.b2nd"
    scalar.parent.mkdir()
    blosc2.asarray(np.array(2.5), urlpath=str(scalar), mode="w")
    client.upload(scalar, f"{env.remote_dir}/gain.b2nd")
    plugins = Plugins(entry_points=False)
    manifest = env.manifest(plugins, subscribes=[env.subscribe_rule(transforms=["float32"])])
    result = run_once(manifest, plugins)
    assert result.failures == 0
    mirrored = env.tmp_path / "mirror" / "gain.b2nd"
    assert mirrored.read_bytes() == scalar.read_bytes()
