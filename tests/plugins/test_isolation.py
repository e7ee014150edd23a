"""A plugin that raises does not stop the daemon, and ``cat2sync_ignore`` skips files on
both sides."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.errors import ManifestError, PluginError
from cat2sync.events import Event, EventKind
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import read_b2nd as local_array
from cat2sync.testing import run_once, running, wait_until, write_b2nd
from tests.helpers.plugins import Env, Recorder, make_plugin, transforms_plugin
from tests.helpers.remote import remote_array, remote_info


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("the chat service is down"),
        # Only set-up hooks may report manifest errors; from here it is a failure like another.
        ManifestError("cat2sync.toml", "plugins.loud", "no channel configured"),
    ],
    ids=["RuntimeError", "ManifestError"],
)
def test_raising_event_hook_does_not_stop_other_plugins(
    env: Env, client: Client, error: Exception
) -> None:
    calls = 0

    def cat2sync_event(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise error

    before, after = Recorder("before"), Recorder("after")
    plugins = Plugins(
        entry_points=False,
        extra=[before.module, make_plugin("loud", cat2sync_event=cat2sync_event), after.module],
    )
    manifest = env.manifest(plugins, uploads=[env.upload_rule()])
    for name in ("a.b2nd", "b.b2nd"):
        write_b2nd(env.data_dir / name, np.arange(10))
    (env.data_dir / "notes.txt").write_text("hello")

    result = run_once(manifest, plugins)
    assert result.failures == 0, result.events
    assert result.paths(EventKind.UPLOADED) == ["a.b2nd", "b.b2nd", "notes.txt"]
    assert calls == 3  # it was told, and raised, every time
    for recorder in (before, after):  # plugins before and after it in the call order
        assert sorted(e.path for e in recorder.of(EventKind.UPLOADED)) == [
            "a.b2nd",
            "b.b2nd",
            "notes.txt",
        ]
    assert sorted(client.get_list(env.remote_dir)) == ["a.b2nd", "b.b2nd", "notes.txt"]


def test_raising_uploaded_hook_fails_the_file_then_it_is_retried(
    env: Env, client: Client, tmp_path: Path
) -> None:
    """The file is reported failed with the plugin's name and the hook, the other rule
    keeps shipping, and the file is sent again later, once the plugin works."""
    attempts: list[str] = []
    broken = threading.Event()
    broken.set()

    def cat2sync_uploaded(rule: Any, local_path: Path, remote_path: str, client: Any) -> None:
        if rule.name == "bad":
            attempts.append(remote_path)
            if broken.is_set():
                broken.clear()  # the second attempt works
                raise ConnectionError("the index service is down")

    plugins = Plugins(
        entry_points=False, extra=[make_plugin("indexer", cat2sync_uploaded=cat2sync_uploaded)]
    )
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    manifest = env.manifest(
        plugins,
        uploads=[
            env.upload_rule(name="bad"),
            env.upload_rule(name="good", local=str(good_dir), remote=f"{env.remote_dir}-good"),
        ],
    )
    write_b2nd(env.data_dir / "scan.b2nd", np.arange(20))
    write_b2nd(good_dir / "other.b2nd", np.arange(5))

    with running(manifest, plugins) as run:
        wait_until(
            lambda: run.of(EventKind.UPLOADED, "scan.b2nd"), message="the retry", state=run.describe
        )
        [failed] = run.of(EventKind.FAILED, "scan.b2nd")
        assert failed.rule == "bad"
        assert failed.message is not None
        assert "'indexer'" in failed.message and "cat2sync_uploaded" in failed.message
        assert "index service is down" in failed.message
        assert f"{env.remote_dir}/scan.b2nd" in failed.message  # the file, too
        [good] = run.of(EventKind.UPLOADED, "other.b2nd")
        assert good.rule == "good"
        wait_until(
            lambda: not run.daemon.state.pending(), message="nothing pending", state=run.describe
        )
    assert attempts == [f"{env.remote_dir}/scan.b2nd"] * 2
    np.testing.assert_array_equal(
        remote_array(client, f"{env.remote_dir}/scan.b2nd"), np.arange(20)
    )
    np.testing.assert_array_equal(
        remote_array(client, f"{env.remote_dir}-good/other.b2nd"), np.arange(5)
    )


def test_raising_uploaded_hook_in_once_counts_a_failure(env: Env, client: Client) -> None:
    fixed = False

    def cat2sync_uploaded(rule: Any, local_path: Path, remote_path: str, client: Any) -> None:
        if not fixed and remote_path.endswith("a.b2nd"):
            raise RuntimeError("boom")

    plugins = Plugins(
        entry_points=False, extra=[make_plugin("flaky", cat2sync_uploaded=cat2sync_uploaded)]
    )
    manifest = env.manifest(plugins, uploads=[env.upload_rule()])
    write_b2nd(env.data_dir / "a.b2nd", np.arange(6))
    write_b2nd(env.data_dir / "b.b2nd", np.arange(7))

    first = run_once(manifest, plugins)
    assert first.failures == 1
    assert first.paths(EventKind.UPLOADED) == ["b.b2nd"]
    [failed] = first.of(EventKind.FAILED)
    assert failed.path == "a.b2nd" and failed.message is not None
    assert "'flaky'" in failed.message and "cat2sync_uploaded" in failed.message

    fixed = True  # a later pass ships it
    second = run_once(manifest, plugins)
    assert second.failures == 0, second.events
    assert second.paths(EventKind.UPLOADED) == ["a.b2nd"]


def test_raising_transform_fails_only_its_files(env: Env, client: Client, tmp_path: Path) -> None:
    def fragile(rows: np.ndarray, ctx: Any) -> np.ndarray:
        if ctx.path.startswith("broken"):
            raise KeyError("no dark frame")
        return rows + 1

    plugins = Plugins(entry_points=False, extra=[transforms_plugin("darks", fragile=fragile)])
    other = tmp_path / "other"
    other.mkdir()
    manifest = env.manifest(
        plugins,
        uploads=[
            env.upload_rule(transforms=["fragile"]),
            env.upload_rule(name="plain", local=str(other), remote=f"{env.remote_dir}-plain"),
        ],
    )
    write_b2nd(env.data_dir / "broken.b2nd", np.arange(8))
    write_b2nd(env.data_dir / "fine.b2nd", np.arange(8))
    write_b2nd(other / "untouched.b2nd", np.arange(3))

    result = run_once(manifest, plugins)
    assert result.failures == 1
    [failed] = result.of(EventKind.FAILED)
    assert failed.path == "broken.b2nd" and failed.message is not None
    assert "'fragile' (plugin 'darks')" in failed.message, failed.message
    assert "no dark frame" in failed.message
    assert result.paths(EventKind.UPLOADED) == ["fine.b2nd", "untouched.b2nd"]
    np.testing.assert_array_equal(
        remote_array(client, f"{env.remote_dir}/fine.b2nd"), np.arange(8) + 1
    )
    np.testing.assert_array_equal(
        remote_array(client, f"{env.remote_dir}-plain/untouched.b2nd"), np.arange(3)
    )
    assert remote_info(client, f"{env.remote_dir}/broken.b2nd") is None


def test_raising_lazyexprs_hook_fails_the_file(env: Env, client: Client) -> None:
    def cat2sync_lazyexprs(rule: Any, remote_path: str, info: Any) -> None:
        raise ValueError("bad template")

    plugins = Plugins(
        entry_points=False, extra=[make_plugin("deriver", cat2sync_lazyexprs=cat2sync_lazyexprs)]
    )
    manifest = env.manifest(plugins, uploads=[env.upload_rule()])
    write_b2nd(env.data_dir / "a.b2nd", np.arange(4))
    (env.data_dir / "notes.txt").write_text("not an array: no lazy expressions asked")
    result = run_once(manifest, plugins)
    assert result.failures == 1
    [failed] = result.of(EventKind.FAILED)
    assert failed.path == "a.b2nd" and failed.message is not None
    assert "'deriver'" in failed.message and "cat2sync_lazyexprs" in failed.message
    assert result.paths(EventKind.UPLOADED) == ["notes.txt"]


# -- cat2sync_ignore --------------------------------------------------------------------


def _skipper(seen: list[str]) -> Any:
    def cat2sync_ignore(rule: Any, path: str) -> bool | None:
        seen.append(path)
        return True if path.endswith(".skip.b2nd") else None

    return make_plugin("skipper", cat2sync_ignore=cat2sync_ignore)


def test_ignore_hook_skips_uploads(env: Env, client: Client) -> None:
    seen: list[str] = []
    plugins = Plugins(entry_points=False, extra=[_skipper(seen)])
    manifest = env.manifest(plugins, uploads=[env.upload_rule()])
    write_b2nd(env.data_dir / "keep.b2nd", np.arange(3))
    write_b2nd(env.data_dir / "drop.skip.b2nd", np.arange(3))
    write_b2nd(env.data_dir / "sub" / "deep.skip.b2nd", np.arange(3))
    write_b2nd(env.data_dir / "sub" / "deep.b2nd", np.arange(3))

    result = run_once(manifest, plugins)
    assert result.failures == 0, result.events
    assert result.paths(EventKind.UPLOADED) == ["keep.b2nd", "sub/deep.b2nd"]
    assert sorted(client.get_list(env.remote_dir)) == ["keep.b2nd", "sub/deep.b2nd"]
    assert {"drop.skip.b2nd", "sub/deep.skip.b2nd"} <= set(seen)  # relative, POSIX paths


def test_ignore_hook_skips_mirroring(env: Env, client: Client) -> None:
    source = write_b2nd(env.tmp_path / "src" / "x.b2nd", np.arange(5))
    for name in ("keep.b2nd", "drop.skip.b2nd", "sub/deep.skip.b2nd"):
        client.upload(source, f"{env.remote_dir}/{name}")
    seen: list[str] = []
    plugins = Plugins(entry_points=False, extra=[_skipper(seen)])
    manifest = env.manifest(plugins, subscribes=[env.subscribe_rule()])

    result = run_once(manifest, plugins)
    assert result.failures == 0, result.events
    assert result.paths(EventKind.DOWNLOADED) == ["keep.b2nd"]
    mirror = env.tmp_path / "mirror"
    assert sorted(p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file()) == [
        "keep.b2nd"
    ]
    np.testing.assert_array_equal(local_array(mirror / "keep.b2nd"), np.arange(5))
    assert "sub/deep.skip.b2nd" in seen


@pytest.mark.parametrize("answer", [False, None])
def test_first_ignore_answer_wins(env: Env, answer: bool | None) -> None:
    """A plugin registered later is asked first (pluggy's order); its False keeps a file
    that another plugin would skip, its None leaves the decision to the other."""
    keeper = make_plugin("keeper", cat2sync_ignore=lambda rule, path: answer)
    seen: list[str] = []
    plugins = Plugins(entry_points=False, extra=[_skipper(seen), keeper])
    manifest = env.manifest(plugins, uploads=[env.upload_rule()])
    write_b2nd(env.data_dir / "drop.skip.b2nd", np.arange(3))
    result = run_once(manifest, plugins)
    assert result.failures == 0
    assert result.paths(EventKind.UPLOADED) == ([] if answer is None else ["drop.skip.b2nd"])


# -- cat2sync_register_jobs -------------------------------------------------------------


def test_plugin_job_runs_and_survives_raising(
    env: Env,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def tick() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("first tick fails")

    def cat2sync_register_jobs(register: Any) -> None:
        register("tick", 0.05, tick)

    plugins = Plugins(
        entry_points=False,
        extra=[make_plugin("ticker", cat2sync_register_jobs=cat2sync_register_jobs)],
    )
    manifest = env.manifest(plugins, uploads=[env.upload_rule()])
    with caplog.at_level("WARNING"), running(manifest, plugins):
        wait_until(lambda: len(calls) >= 3, message="three ticks")
    assert "plugin 'ticker' failed in job 'tick'" in caplog.text
    assert "first tick fails" in caplog.text


def test_plugin_job_ids_are_unique() -> None:
    def twice(register: Any) -> None:
        register("tick", 1.0, lambda: None)

    plugins = Plugins(
        entry_points=False,
        extra=[
            make_plugin("one", cat2sync_register_jobs=twice),
            make_plugin("two", cat2sync_register_jobs=twice),
        ],
    )
    with pytest.raises(PluginError) as caught:
        plugins.jobs()
    # pluggy calls the plugin registered last first: it owns the id, the other is refused.
    assert "'one'" in str(caught.value) and "already registered by 'two'" in str(caught.value)
