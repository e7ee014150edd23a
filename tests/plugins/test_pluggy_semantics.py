"""Every hook is called through pluggy: its order, ``tryfirst``/``trylast``,
``wrapper=True`` and ``firstresult`` are pluggy's, the failing plugin is still named, and
one failing listener does not silence the others. No server: the facade is called
directly, with throwaway plugins made by the fixtures below."""

from __future__ import annotations

import types
from collections import defaultdict
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, cast

import pytest

from cat2sync import Client
from cat2sync.errors import ManifestError, PluginError, SettingError
from cat2sync.events import Event, EventKind
from cat2sync.manifest import Manifest, UploadRule, load_manifest
from cat2sync.plugins import LazyExprRequest, hookimpl, hookspecs
from cat2sync.plugins.manager import OwnedTransform, Plugins

Calls = defaultdict[str, list[str]]

RULE = UploadRule(name="up", local=Path("/nonexistent"), remote="@shared/up")
REMOTE = "@shared/up/a.b2nd"
EVENT = Event(kind=EventKind.UPLOADED, rule="up", path="a.b2nd", remote=REMOTE)
CLIENT = cast(Client, object())  # cat2sync_uploaded is only handed it


def _manifest(plugins: Plugins, folder: Path, tables: str = "") -> Manifest:
    path = folder / "cat2sync.toml"
    path.write_text(tables)
    return load_manifest(path, plugin_settings=plugins.declared_settings(), check_paths=False)


#: Each hook, called the way the engine and the daemon call it (through the facade).
CALLS: dict[str, Callable[[Plugins, Path], object]] = {
    "cat2sync_declare_settings": lambda plugins, _: plugins.declared_settings(),
    "cat2sync_configure": lambda plugins, folder: plugins.configure(_manifest(plugins, folder)),
    "cat2sync_register_transforms": lambda plugins, _: plugins.transforms,
    "cat2sync_register_converters": lambda plugins, _: plugins.converters,
    "cat2sync_register_jobs": lambda plugins, _: plugins.jobs(),
    "cat2sync_ignore": lambda plugins, _: plugins.ignore(RULE, "a.b2nd"),
    "cat2sync_lazyexprs": lambda plugins, _: plugins.lazyexprs(RULE, REMOTE, {}),
    "cat2sync_uploaded": lambda plugins, _: plugins.uploaded(RULE, Path("a.b2nd"), REMOTE, CLIENT),
    "cat2sync_event": lambda plugins, _: plugins.event(EVENT),
    "cat2sync_shutdown": lambda plugins, _: plugins.shutdown(),
}
#: Hooks whose failure is logged (the others raise PluginError).
LISTENERS = ("cat2sync_event", "cat2sync_shutdown")


def test_every_hook_is_exercised_here() -> None:
    hooks = {name for name in vars(hookspecs) if name.startswith("cat2sync_")}
    assert set(CALLS) == hooks


# -- throwaway plugins ----------------------------------------------------------------


def probe(name: str, calls: Calls, **marker: bool) -> types.ModuleType:
    """A plugin implementing every hook with ``@hookimpl(**marker)``: each call appends
    ``name`` to ``calls[hook]``; it answers None, except a request named ``name`` from
    ``cat2sync_lazyexprs``."""

    def seen(hook: str) -> None:
        calls[hook].append(name)

    def cat2sync_declare_settings(declare: Any) -> None:
        seen("cat2sync_declare_settings")

    def cat2sync_configure(manifest: Any) -> None:
        seen("cat2sync_configure")

    def cat2sync_register_transforms(register: Any) -> None:
        seen("cat2sync_register_transforms")

    def cat2sync_register_converters(register: Any) -> None:
        seen("cat2sync_register_converters")

    def cat2sync_register_jobs(register: Any) -> None:
        seen("cat2sync_register_jobs")

    def cat2sync_ignore(rule: Any, path: str) -> None:
        seen("cat2sync_ignore")

    def cat2sync_lazyexprs(rule: Any, remote_path: str, info: Any) -> list[LazyExprRequest]:
        seen("cat2sync_lazyexprs")
        return [LazyExprRequest(name=name, expression="x", operands={"x": remote_path})]

    def cat2sync_uploaded(rule: Any, local_path: Any, remote_path: str, client: Any) -> None:
        seen("cat2sync_uploaded")

    def cat2sync_event(event: Any) -> None:
        seen("cat2sync_event")

    def cat2sync_shutdown() -> None:
        seen("cat2sync_shutdown")

    return _module(name, hookimpl(**marker), locals())


def wrapper(name: str, calls: Calls) -> types.ModuleType:
    """A plugin wrapping every hook (``wrapper=True``): appends ``name:before`` and
    ``name:after`` around the others, and passes their result through."""

    def around(hook: str) -> Generator[None, Any, Any]:
        calls[hook].append(f"{name}:before")
        result = yield
        calls[hook].append(f"{name}:after")
        return result

    def cat2sync_declare_settings(declare: Any) -> Generator[None, Any, Any]:
        return (yield from around("cat2sync_declare_settings"))

    def cat2sync_configure(manifest: Any) -> Generator[None, Any, Any]:
        return (yield from around("cat2sync_configure"))

    def cat2sync_register_transforms(register: Any) -> Generator[None, Any, Any]:
        return (yield from around("cat2sync_register_transforms"))

    def cat2sync_register_converters(register: Any) -> Generator[None, Any, Any]:
        return (yield from around("cat2sync_register_converters"))

    def cat2sync_register_jobs(register: Any) -> Generator[None, Any, Any]:
        return (yield from around("cat2sync_register_jobs"))

    def cat2sync_ignore(rule: Any, path: str) -> Generator[None, Any, Any]:
        return (yield from around("cat2sync_ignore"))

    def cat2sync_lazyexprs(rule: Any, remote_path: str, info: Any) -> Generator[None, Any, Any]:
        return (yield from around("cat2sync_lazyexprs"))

    def cat2sync_uploaded(
        rule: Any, local_path: Any, remote_path: str, client: Any
    ) -> Generator[None, Any, Any]:
        return (yield from around("cat2sync_uploaded"))

    def cat2sync_event(event: Any) -> Generator[None, Any, Any]:
        return (yield from around("cat2sync_event"))

    def cat2sync_shutdown() -> Generator[None, Any, Any]:
        return (yield from around("cat2sync_shutdown"))

    return _module(name, hookimpl(wrapper=True), locals())


def _module(name: str, mark: Callable[[Any], Any], namespace: dict[str, Any]) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, func in namespace.items():
        if hook.startswith("cat2sync_"):
            setattr(module, hook, mark(func))
    return module


def single(name: str, hook: str, func: Callable[..., Any], **marker: bool) -> types.ModuleType:
    """A plugin implementing only ``hook``, with ``func``."""
    module = types.ModuleType(name)
    setattr(module, hook, hookimpl(**marker)(func))
    return module


def broken() -> None:
    """An implementation of any hook (pluggy passes an implementation only the
    arguments it names) that raises."""
    raise RuntimeError("broken on purpose")


@pytest.fixture
def calls() -> Calls:
    return defaultdict(list)


@pytest.fixture
def ordered(calls: Calls) -> Plugins:
    """Registered early, first (tryfirst), last (trylast), late, in that order. pluggy
    calls tryfirst ones first, then the others last registered first, then trylast:
    first, late, early, last."""
    return Plugins(
        entry_points=False,
        extra=[
            probe("early", calls),
            probe("first", calls, tryfirst=True),
            probe("last", calls, trylast=True),
            probe("late", calls),
        ],
    )


PLUGGY_ORDER = ["first", "late", "early", "last"]


# -- order, tryfirst and trylast ----------------------------------------------------------


@pytest.mark.parametrize("hook", sorted(CALLS))
def test_every_hook_runs_in_pluggys_order(
    hook: str, ordered: Plugins, calls: Calls, tmp_path: Path
) -> None:
    CALLS[hook](ordered, tmp_path)
    assert calls[hook] == PLUGGY_ORDER


def test_collected_results_come_in_pluggys_order(ordered: Plugins) -> None:
    assert [r.name for r in ordered.lazyexprs(RULE, REMOTE, {})] == PLUGGY_ORDER


def test_the_call_order_is_pluggys_own(ordered: Plugins, calls: Calls) -> None:
    """The facade and a bare ``pm.hook`` call agree."""
    ordered.pm.hook.cat2sync_event(event=EVENT)
    ordered.event(EVENT)
    assert calls["cat2sync_event"] == PLUGGY_ORDER * 2


# -- wrapper=True --------------------------------------------------------------------


@pytest.mark.parametrize("hook", sorted(CALLS))
def test_a_wrapper_wraps_every_hook(hook: str, calls: Calls, tmp_path: Path) -> None:
    plugins = Plugins(
        entry_points=False,
        extra=[probe("inner", calls, tryfirst=True), wrapper("outer", calls)],
    )
    CALLS[hook](plugins, tmp_path)
    assert calls[hook] == ["outer:before", "inner", "outer:after"]


def test_a_wrapper_can_change_the_result(calls: Calls) -> None:
    def cat2sync_ignore(rule: Any, path: str) -> Generator[None, Any, Any]:
        answer = yield
        return True if answer is None and path.endswith(".tmp") else answer

    def cat2sync_lazyexprs(rule: Any, remote_path: str, info: Any) -> Generator[None, Any, Any]:
        requests = yield
        return [*requests, [LazyExprRequest(name="added", expression="x", operands={})]]

    changer = _module("changer", hookimpl(wrapper=True), locals())
    plugins = Plugins(entry_points=False, extra=[probe("inner", calls), changer])
    assert plugins.ignore(RULE, "a.tmp") is True
    assert plugins.ignore(RULE, "a.b2nd") is False
    assert [r.name for r in plugins.lazyexprs(RULE, REMOTE, {})] == ["inner", "added"]


def test_an_old_style_hookwrapper_wraps_too(calls: Calls) -> None:
    def cat2sync_event(event: Any) -> Generator[None, Any, None]:
        calls["cat2sync_event"].append("old:before")
        outcome = yield
        assert outcome.exception is None
        calls["cat2sync_event"].append("old:after")

    old = single("old", "cat2sync_event", cat2sync_event, hookwrapper=True)
    plugins = Plugins(entry_points=False, extra=[probe("inner", calls), old])
    plugins.event(EVENT)
    assert calls["cat2sync_event"] == ["old:before", "inner", "old:after"]


# -- firstresult ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "expected", "asked"),
    [
        ([None, None], False, ["a", "b"]),  # nobody answers: kept
        ([None, True], True, ["a", "b"]),  # an abstention passes the question on
        ([False, True], False, ["a"]),  # False is an answer: the question stops there
        ([True, False], True, ["a"]),
    ],
)
def test_ignore_is_firstresult(
    answers: list[bool | None], expected: bool, asked: list[str]
) -> None:
    seen: list[str] = []

    def answering(name: str, answer: bool | None) -> types.ModuleType:
        def cat2sync_ignore(rule: Any, path: str) -> bool | None:
            seen.append(name)
            return answer

        return single(name, "cat2sync_ignore", cat2sync_ignore)

    # "a" is registered last, so pluggy asks it first.
    plugins = Plugins(
        entry_points=False, extra=[answering("b", answers[1]), answering("a", answers[0])]
    )
    assert plugins.ignore(RULE, "a.b2nd") is expected
    assert seen == asked


def test_tryfirst_answers_ignore_first() -> None:
    plugins = Plugins(
        entry_points=False,
        extra=[
            single("eager", "cat2sync_ignore", lambda rule, path: True, tryfirst=True),
            single("keeper", "cat2sync_ignore", lambda rule, path: False),
        ],
    )
    assert plugins.ignore(RULE, "a.b2nd") is True


# -- naming the plugin that failed -------------------------------------------------------


@pytest.mark.parametrize("hook", sorted(set(CALLS) - set(LISTENERS)))
def test_a_failure_names_the_plugin_and_the_hook(hook: str, calls: Calls, tmp_path: Path) -> None:
    plugins = Plugins(
        entry_points=False,
        extra=[
            probe("before", calls),
            single("broken", hook, broken),
            probe("after", calls),
            wrapper("outer", calls),
        ],
    )
    with pytest.raises(PluginError) as caught:
        CALLS[hook](plugins, tmp_path)
    assert (caught.value.plugin, caught.value.hook) == ("broken", hook)
    assert "broken on purpose" in str(caught.value)
    # pluggy's loop: "after" ran, "before" was not reached; the wrapper saw the failure.
    assert calls[hook] == ["outer:before", "after"]


@pytest.mark.parametrize("hook", ["cat2sync_ignore", "cat2sync_lazyexprs", "cat2sync_uploaded"])
def test_a_failure_names_what_it_was_about(hook: str, tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[single("broken", hook, broken)])
    with pytest.raises(PluginError) as caught:
        CALLS[hook](plugins, tmp_path)
    subject = "a.b2nd" if hook == "cat2sync_ignore" else REMOTE
    assert f"failed in {hook} on {subject}:" in str(caught.value)


def test_a_wrapper_that_raises_is_named() -> None:
    def cat2sync_ignore(rule: Any, path: str) -> Generator[None, Any, Any]:
        yield
        raise ValueError("the wrapper itself")

    plugins = Plugins(
        entry_points=False,
        extra=[
            single("fine", "cat2sync_ignore", lambda rule, path: None),
            single("outer", "cat2sync_ignore", cat2sync_ignore, wrapper=True),
        ],
    )
    with pytest.raises(PluginError) as caught:
        plugins.ignore(RULE, "a.b2nd")
    assert caught.value.plugin == "outer"


def test_a_wrapper_that_replaces_the_error_is_named() -> None:
    def cat2sync_ignore(rule: Any, path: str) -> Generator[None, Any, Any]:
        try:
            return (yield)
        except RuntimeError as exc:
            raise LookupError("translated") from exc

    plugins = Plugins(
        entry_points=False,
        extra=[
            single("broken", "cat2sync_ignore", broken),
            single("translator", "cat2sync_ignore", cat2sync_ignore, wrapper=True),
        ],
    )
    with pytest.raises(PluginError) as caught:
        plugins.ignore(RULE, "a.b2nd")
    assert (caught.value.plugin, str(caught.value.cause)) == ("translator", "translated")


class Indexer:
    """A plugin class: two instances are two plugins with the same code."""

    def __init__(self, broken: bool) -> None:
        self.broken = broken

    @hookimpl
    def cat2sync_uploaded(self, rule: Any, local_path: Any, remote_path: str, client: Any) -> None:
        if self.broken:
            raise ConnectionError("index service down")


@pytest.mark.parametrize("broken_first", [True, False])
def test_the_right_instance_of_a_plugin_class_is_named(broken_first: bool) -> None:
    indexers = [Indexer(broken=broken_first), Indexer(broken=not broken_first)]
    plugins = Plugins(entry_points=False, extra=indexers)
    with pytest.raises(PluginError) as caught:
        plugins.uploaded(RULE, Path("a.b2nd"), REMOTE, CLIENT)
    [failing] = [indexer for indexer in indexers if indexer.broken]
    assert caught.value.plugin == plugins.pm.get_name(failing)


def test_a_broken_wrapper_is_reported_with_pluggys_message() -> None:
    def cat2sync_ignore(rule: Any, path: str) -> Generator[None, Any, Any]:
        if path:  # returns before its yield
            return None
        yield

    plugins = Plugins(
        entry_points=False,
        extra=[single("noyield", "cat2sync_ignore", cat2sync_ignore, wrapper=True)],
    )
    with pytest.raises(PluginError, match="did not yield"):
        plugins.ignore(RULE, "a.b2nd")


# -- set-up hooks: manifest errors -----------------------------------------------------------


def test_a_setting_error_in_configure_names_the_manifest_file(tmp_path: Path) -> None:
    def cat2sync_configure(manifest: Any) -> None:
        raise SettingError("lab", "level", "expected a positive integer, got -1")

    plugins = Plugins(
        entry_points=False, extra=[single("lab", "cat2sync_configure", cat2sync_configure)]
    )
    manifest = _manifest(plugins, tmp_path)
    with pytest.raises(SettingError) as caught:
        plugins.configure(manifest)
    assert str(caught.value) == (
        f"{manifest.source}: plugins.lab.level: expected a positive integer, got -1"
    )
    assert (caught.value.plugin, caught.value.key) == ("lab", "level")


def test_a_manifest_error_from_configure_reaches_the_user(tmp_path: Path) -> None:
    error = ManifestError("lab.toml", "plugins.lab", "no channel configured")

    def cat2sync_configure(manifest: Any) -> None:
        raise error

    plugins = Plugins(
        entry_points=False, extra=[single("lab", "cat2sync_configure", cat2sync_configure)]
    )
    with pytest.raises(ManifestError) as caught:
        plugins.configure(_manifest(plugins, tmp_path))
    assert caught.value is error


def test_a_manifest_error_from_declare_settings_reaches_the_user() -> None:
    error = ManifestError("lab.toml", "plugins.lab", "cannot declare")

    def cat2sync_declare_settings(declare: Any) -> None:
        raise error

    plugins = Plugins(
        entry_points=False,
        extra=[single("lab", "cat2sync_declare_settings", cat2sync_declare_settings)],
    )
    with pytest.raises(ManifestError) as caught:
        plugins.declared_settings()
    assert caught.value is error


def test_a_manifest_error_from_another_hook_is_a_plugin_failure() -> None:
    def cat2sync_ignore(rule: Any, path: str) -> None:
        raise ManifestError("lab.toml", "plugins.lab", "no channel configured")

    plugins = Plugins(entry_points=False, extra=[single("lab", "cat2sync_ignore", cat2sync_ignore)])
    with pytest.raises(PluginError) as caught:
        plugins.ignore(RULE, "a.b2nd")
    assert caught.value.plugin == "lab" and isinstance(caught.value.cause, ManifestError)


# -- listeners ----------------------------------------------------------------------


@pytest.mark.parametrize("hook", LISTENERS)
def test_a_failing_listener_does_not_silence_the_others(
    hook: str, calls: Calls, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugins = Plugins(
        entry_points=False,
        extra=[
            probe("early", calls),
            probe("first", calls, tryfirst=True),
            single("broken", hook, broken),
            probe("last", calls, trylast=True),
            probe("late", calls),
        ],
    )
    with caplog.at_level("WARNING"):
        CALLS[hook](plugins, tmp_path)
    assert calls[hook] == PLUGGY_ORDER  # each told once, in pluggy's order
    assert f"plugin 'broken' failed in {hook}" in caplog.text
    assert "broken on purpose" in caplog.text


def test_after_a_failing_listener_the_wrappers_wrap_the_rest(calls: Calls) -> None:
    """The listeners pluggy had not reached are told in a second call of the hook."""
    plugins = Plugins(
        entry_points=False,
        extra=[
            probe("early", calls),
            single("broken", "cat2sync_event", broken),
            probe("late", calls),
            wrapper("outer", calls),
        ],
    )
    plugins.event(EVENT)
    assert calls["cat2sync_event"] == [
        "outer:before",
        "late",  # then "broken" raised: the wrapper saw it (no "outer:after")
        "outer:before",
        "early",
        "outer:after",
    ]


def test_a_failing_listener_wrapper_is_logged(
    calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    def cat2sync_event(event: Any) -> Generator[None, Any, Any]:
        raise RuntimeError("before its yield")
        yield

    plugins = Plugins(
        entry_points=False,
        extra=[
            probe("listener", calls),
            single("outer", "cat2sync_event", cat2sync_event, wrapper=True),
        ],
    )
    with caplog.at_level("WARNING"):
        plugins.event(EVENT)
    assert "plugin 'outer' failed in cat2sync_event on a.b2nd" in caplog.text
    assert calls["cat2sync_event"] == []  # pluggy stops at a wrapper that fails first


# -- registries ---------------------------------------------------------------------------


def _registering(name: str, hook: str, *keys: str, **marker: bool) -> types.ModuleType:
    def via_a_helper(register: Any) -> None:
        for key in keys:
            register(key, lambda *args: None)

    def impl(register: Any) -> None:
        via_a_helper(register)

    return single(name, hook, impl, **marker)


def test_the_plugin_called_first_owns_a_converter_suffix() -> None:
    hook = "cat2sync_register_converters"
    plugins = Plugins(
        entry_points=False,
        extra=[
            _registering("eager", hook, ".NPY", tryfirst=True),
            _registering("plain", hook, ".npy", ".csv"),
            _registering("newer", hook, ".csv"),
        ],
    )
    owners = {suffix: owner for suffix, (owner, _) in plugins.converters.items()}
    assert owners == {".npy": "eager", ".csv": "newer"}


def test_transform_owners_and_duplicates() -> None:
    hook = "cat2sync_register_transforms"
    plugins = Plugins(
        entry_points=False,
        extra=[_registering("older", hook, "dark"), _registering("newer", hook, "flat")],
    )
    owners = {
        name: transform.plugin
        for name, transform in plugins.transforms.items()
        if isinstance(transform, OwnedTransform)
    }
    assert (owners["dark"], owners["flat"]) == ("older", "newer")
    clash = Plugins(
        entry_points=False,
        extra=[_registering("older", hook, "dark"), _registering("newer", hook, "dark")],
    )
    with pytest.raises(PluginError) as caught:
        _ = clash.transforms
    # pluggy calls "newer" first: it owns the name, and "older" fails.
    assert str(caught.value) == (
        "plugin 'older' failed in cat2sync_register_transforms: "
        "ValueError: 'dark' is already registered by 'newer'"
    )


def test_declared_tables_belong_to_the_declaring_plugin() -> None:
    def declaring(name: str, table: str) -> types.ModuleType:
        return single(name, "cat2sync_declare_settings", lambda declare: declare(table, {}))

    plugins = Plugins(entry_points=False, extra=[declaring("lab-plugin", "lab")])
    assert "lab" in plugins.declared_settings()
    plugins.disable(["lab"])  # known by its table's name too
    assert "lab-plugin" not in [p.name for p in plugins.describe()]


# -- tracing ------------------------------------------------------------------------------


def test_trace_follows_pluggys_order(
    monkeypatch: pytest.MonkeyPatch, calls: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAT2SYNC_TRACE_PLUGINS", "1")
    plugins = Plugins(
        entry_points=False,
        extra=[probe("early", calls), probe("late", calls), wrapper("outer", calls)],
    )
    plugins.event(EVENT)
    assert capsys.readouterr().err.splitlines() == [
        "cat2sync: plugin 'outer': cat2sync_event on a.b2nd (wrapper)",
        "cat2sync: plugin 'late': cat2sync_event on a.b2nd",
        "cat2sync: plugin 'early': cat2sync_event on a.b2nd",
    ]


# -- acceptance: a third-party plugin using each of pluggy's options ------------------


class ThirdParty:
    """A third-party plugin: ``tryfirst`` on a firstresult hook, ``trylast`` on a
    collect-all hook, and a ``wrapper=True`` around the events."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    @hookimpl(tryfirst=True)
    def cat2sync_ignore(self, rule: Any, path: str) -> bool | None:
        return True if path.endswith(".partial") else None

    @hookimpl(trylast=True)
    def cat2sync_lazyexprs(self, rule: Any, remote_path: str, info: Any) -> list[LazyExprRequest]:
        return [LazyExprRequest(name="thirdparty", expression="x", operands={"x": remote_path})]

    @hookimpl(wrapper=True)
    def cat2sync_event(self, event: Event) -> Generator[None, Any, Any]:
        self.calls["cat2sync_event"].append("thirdparty:before")
        result = yield
        self.calls["cat2sync_event"].append(f"thirdparty:after {result}")
        return result


def test_a_third_party_plugin_gets_pluggys_documented_behaviour(calls: Calls) -> None:
    keeper = single("keeper", "cat2sync_ignore", lambda rule, path: False)
    plugins = Plugins(entry_points=False, extra=[ThirdParty(calls), probe("other", calls), keeper])

    # tryfirst on a firstresult hook: asked before "keeper" (registered later, so asked
    # before it otherwise); its True ends the question, its None lets "keeper" answer.
    assert plugins.ignore(RULE, "run.partial") is True
    assert plugins.ignore(RULE, "run.b2nd") is False
    assert calls["cat2sync_ignore"] == []  # "other" (registered earlier) never asked
    # trylast on a collect-all hook: its requests come after the others'.
    assert [r.name for r in plugins.lazyexprs(RULE, REMOTE, {})] == ["other", "thirdparty"]
    # wrapper=True: around the listeners, given their results (none: they return None).
    plugins.event(EVENT)
    assert calls["cat2sync_event"] == ["thirdparty:before", "other", "thirdparty:after []"]
