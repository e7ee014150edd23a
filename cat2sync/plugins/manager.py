"""Builds the plugin manager and calls hooks through one typed facade.

Built-in behaviour is registered exactly like third-party plugins: the modules in
``DEFAULT_PLUGINS`` first, then the ``cat2sync`` entry points. ``[plugins] disable``
in the manifest blocks plugins by name.

Every hook is called through pluggy (``pm.hook.NAME(...)``), so the call order,
``tryfirst``/``trylast``, ``wrapper=True`` and ``firstresult`` are pluggy's own. The
plugin named in an error is the one whose implementation is the innermost traceback
frame running one of the hook's implementations: unlike hook-call monitoring, which
sees only the whole call, this names the plugin that raised even through wrappers
(which re-raise what they wrap); the same lookup on the live stack tells who called a
``register`` callback. A listener (``cat2sync_event``, ``cat2sync_shutdown``) that
raises is logged, and the hook is called again, through a pluggy subset hook caller,
for the listeners that pluggy had not reached yet.

``CAT2SYNC_TRACE_PLUGINS=1`` prints each hook call, one line per implementation in
pluggy's call order, through pluggy's hook-call monitoring (pluggy's own tracer would
print every argument's repr, manifests and clients included, but no plugin names).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

import pluggy

from .. import __version__
from ..errors import ManifestError, PluginError, SettingError
from . import hookspecs
from .hookspecs import PROJECT, Converter, LazyExprRequest, Transform, TransformContext

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from ..client import Client
    from ..events import Event
    from ..manifest import Manifest, SettingSpec, SubscribeRule, UploadRule

__all__ = ["DEFAULT_PLUGINS", "OwnedTransform", "PluginInfo", "Plugins"]

log = logging.getLogger(__name__)

DEFAULT_PLUGINS = ("cat2sync.plugins.default.transforms",)
#: Hooks whose ManifestError is the user's (a plugin checking its own table).
_SETUP_HOOKS = frozenset({"cat2sync_declare_settings", "cat2sync_configure"})
#: The plugin named when no implementation of the hook is on the traceback (pluggy
#: itself raised, e.g. for a wrapper that did not yield: its message names the code).
_UNKNOWN = "?"


@dataclass(frozen=True, slots=True)
class OwnedTransform:
    """A registered transform and the plugin that registered it (for error messages)."""

    func: Transform
    plugin: str

    def __call__(self, rows: np.ndarray, ctx: TransformContext) -> np.ndarray:
        return self.func(rows, ctx)


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    version: str
    hooks: tuple[str, ...]
    builtin: bool


class Plugins:
    """The plugin manager plus one method per hook, so that call sites are typed.

    :param entry_points: load plugins installed under the ``cat2sync`` entry-point group.
    :param extra: more plugin objects to register (tests use this).
    """

    def __init__(self, *, entry_points: bool = True, extra: Iterable[object] = ()) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for module_name in DEFAULT_PLUGINS:
            self.pm.register(importlib.import_module(module_name), name=module_name)
        if entry_points:
            self.pm.load_setuptools_entrypoints(PROJECT)
        for plugin in extra:
            self.pm.register(plugin)
        self.pm.check_pending()
        if os.environ.get("CAT2SYNC_TRACE_PLUGINS"):
            self.pm.add_hookcall_monitoring(_trace_call, _trace_outcome)
        #: Every plugin by its registered name, disabled ones too (to enable them again).
        self._plugins: dict[str, object] = {
            name: plugin for name, plugin in self.pm.list_name_plugin() if plugin is not None
        }
        self._disabled: frozenset[str] = frozenset()
        self._declared: dict[str, Mapping[str, SettingSpec]] | None = None
        self._declared_by: dict[str, str] = {}  # [plugins.NAME] -> registered plugin name
        self._transforms: dict[str, Transform] | None = None
        self._transform_owners: dict[str, str] = {}
        self._converters: dict[str, tuple[str, Converter]] | None = None
        self._settings: Mapping[str, Mapping[str, Any]] = {}

    # -- set-up ----------------------------------------------------------------

    def declared_settings(self) -> dict[str, Mapping[str, SettingSpec]]:
        """Plugin name -> the settings its ``[plugins.NAME]`` table accepts.

        Asked once (the declarations are static) and remembered, so that a plugin that
        ``[plugins] disable`` unregistered still has its table accepted when the manifest
        is loaded again. A plugin that declares nothing (a built-in one too) is listed
        with no settings, so that it can be disabled by name as well.
        """
        if self._declared is None:
            found = self._registry("cat2sync_declare_settings", "declare")
            declared: dict[str, Mapping[str, SettingSpec]] = {
                name: specs for name, (_, specs) in found.items()
            }
            declaring = {owner for owner, _ in found.values()}
            for name in self._plugins:
                if name not in declaring:
                    declared.setdefault(name, {})
            self._declared = declared
            self._declared_by = {name: owner for name, (owner, _) in found.items()}
        return dict(self._declared)

    def _resolve(self, names: Iterable[str]) -> frozenset[str]:
        """Registered plugin names for ``[plugins] disable`` names: a plugin is known by
        its registered name (its entry point's) and by the table name it declares."""
        self.declared_settings()  # learn who declares what while every plugin is there
        out: set[str] = set()
        for name in names:
            out.add(name)
            if name in self._declared_by:
                out.add(self._declared_by[name])
        return frozenset(out)

    def disable(self, names: Iterable[str]) -> None:
        """Disable exactly these plugins; any disabled before and not named now is
        enabled again (a manifest reload that shortens ``[plugins] disable``)."""
        wanted = self._resolve(names)
        for name in sorted(self._disabled - wanted):
            self.pm.unblock(name)
            if name in self._plugins:
                self.pm.register(self._plugins[name], name=name)
        for name in sorted(wanted - self._disabled):
            self.pm.set_blocked(name)
        self._disabled = wanted
        self._transforms = self._converters = None

    def configure(self, manifest: Manifest) -> None:
        """Tell every plugin the manifest; a plugin's :class:`SettingError` is reported
        against the manifest's file, any other :class:`ManifestError` as it is."""
        self.disable(manifest.plugins.disable)
        self._settings = manifest.plugins.settings
        try:
            self._call("cat2sync_configure", manifest=manifest)
        except SettingError as exc:
            raise exc.in_file(manifest.source) from None

    def settings_for(self, plugin: str) -> Mapping[str, Any]:
        """The plugin's validated ``[plugins.NAME]`` table (empty when it has none).

        :param plugin: the registered name (a converter's owner); the table is the one
            the plugin declared, which is named like its entry point but need not be.
        """
        if plugin in self._settings:
            return self._settings[plugin]
        self.declared_settings()
        for table, owner in self._declared_by.items():
            if owner == plugin and table in self._settings:
                return self._settings[table]
        return {}

    def check_manifest(self, manifest: Manifest) -> None:
        """Every transform and conversion a rule names must be registered by a plugin
        that is not disabled; ManifestError otherwise."""
        disabled = self._resolve(manifest.plugins.disable)
        self._check_conversions(manifest, disabled)
        known = {
            name for name in self.transforms if self._transform_owners.get(name) not in disabled
        }
        named = [(f"upload[{i}]", r.transforms) for i, r in enumerate(manifest.uploads)]
        named += [(f"subscribe[{i}]", r.transforms) for i, r in enumerate(manifest.subscriptions)]
        for key, specs in named:
            for position, spec in enumerate(specs):
                if spec.name not in known:
                    raise ManifestError(
                        manifest.source,
                        f"{key}.transforms[{position}]",
                        f"unknown transform {spec.name!r} (known: "
                        f"{', '.join(sorted(known)) or 'none'})",
                    )

    def _check_conversions(self, manifest: Manifest, disabled: frozenset[str]) -> None:
        known = {suffix for suffix, (owner, _) in self.converters.items() if owner not in disabled}
        for index, rule in enumerate(manifest.uploads):
            for position, suffix in enumerate(rule.convert):
                if suffix not in known:
                    raise ManifestError(
                        manifest.source,
                        f"upload[{index}].convert[{position}]",
                        f'no installed plugin converts "{suffix}" (known: '
                        f"{', '.join(sorted(known)) or 'none'})",
                    )

    def describe(self) -> list[PluginInfo]:
        """Each registered plugin: name, version and the hooks it implements."""
        versions = {name: dist.version for name, dist in self._dists()}
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or ()))
            builtin = name in DEFAULT_PLUGINS
            out.append(
                PluginInfo(
                    name=name,
                    version=__version__ if builtin else versions.get(name, "?"),
                    hooks=hooks,
                    builtin=builtin,
                )
            )
        return out

    def _dists(self) -> list[tuple[str, Any]]:
        return [(self.pm.get_name(p) or "", d) for p, d in self.pm.list_plugin_distinfo()]

    # -- contributions ---------------------------------------------------------

    @property
    def transforms(self) -> dict[str, Transform]:
        if self._transforms is None:
            found = self._registry("cat2sync_register_transforms", "register", unique=True)
            self._transforms = {
                name: OwnedTransform(func, owner) for name, (owner, func) in found.items()
            }
            self._transform_owners = {name: owner for name, (owner, _) in found.items()}
        return self._transforms

    @property
    def converters(self) -> dict[str, tuple[str, Converter]]:
        """Suffix (lower case, with the dot) -> (plugin name, converter)."""
        if self._converters is None:
            found = self._registry("cat2sync_register_converters", "register", lower=True)
            self._converters = dict(found)
        return self._converters

    def jobs(self) -> list[tuple[str, float | str, Callable[[], object]]]:
        """The plugins' periodic jobs. Each runs guarded: a job that raises is logged with
        the plugin's name and the job id, and runs again next time.

        :raises PluginError: two jobs share an id.
        """
        hook = "cat2sync_register_jobs"
        registry = _Registry(hook, self._implementations(hook), unique=True, noun="job ")

        def register(job_id: str, when: float | str, func: Callable[[], object]) -> None:
            registry.add(job_id, (when, func))

        self._call(hook, register=register)
        return [
            (job_id, when, _guarded(owner, job_id, func))
            for job_id, (owner, (when, func)) in registry.found.items()
        ]

    def _registry(
        self, hook: str, callback: str, *, unique: bool = False, lower: bool = False
    ) -> dict[str, tuple[str, Any]]:
        """Call a hook that contributes through ``callback(key, value)``: key -> (the
        plugin that registered it, value); see :class:`_Registry`."""
        registry = _Registry(hook, self._implementations(hook), unique=unique)

        def register(key: str, value: Any) -> None:
            registry.add(key.lower() if lower else key, value)

        self._call(hook, **{callback: register})
        return registry.found

    # -- decisions and notifications -----------------------------------------

    def ignore(self, rule: UploadRule | SubscribeRule, path: str) -> bool:
        return bool(self._call("cat2sync_ignore", rule=rule, path=path))

    def lazyexprs(
        self,
        rule: UploadRule,
        remote_path: str,
        info: Mapping[str, Any],
    ) -> list[LazyExprRequest]:
        results = self._call("cat2sync_lazyexprs", rule=rule, remote_path=remote_path, info=info)
        return [request for requests in results for request in requests]

    def uploaded(
        self, rule: UploadRule, local_path: Path, remote_path: str, client: Client
    ) -> None:
        self._call(
            "cat2sync_uploaded",
            rule=rule,
            local_path=local_path,
            remote_path=remote_path,
            client=client,
        )

    def shutdown(self) -> None:
        """Tell every plugin; one that raises is logged and does not stop the others."""
        self._notify("cat2sync_shutdown")

    def event(self, event: Event) -> None:
        """Tell every plugin; one that raises is logged and does not stop the others."""
        self._notify("cat2sync_event", event=event)

    # -- plumbing --------------------------------------------------------------

    def _implementations(self, hook: str) -> _Implementations:
        return _Implementations(getattr(self.pm.hook, hook).get_hookimpls())

    def _call(self, hook: str, **kwargs: Any) -> Any:
        """``pm.hook.<hook>(**kwargs)``; what it raises becomes a :class:`PluginError`
        naming the plugin.

        A :class:`ManifestError` from a set-up hook goes to the user as it is (a plugin
        checking its own table); from any other hook it is a plugin failure like another.
        """
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        try:
            return caller(**kwargs)
        except Exception as exc:
            if isinstance(exc, PluginError) or (
                isinstance(exc, ManifestError) and hook in _SETUP_HOOKS
            ):
                raise
            failed = _Implementations(caller.get_hookimpls()).raising(exc)
            raise _plugin_error(hook, failed, exc, kwargs) from exc

    def _notify(self, hook: str, **kwargs: Any) -> None:
        """Call a notification hook through pluggy. A listener that raises is logged; the
        hook is then called again without it and without the listeners pluggy called
        before it, so that each listener is told once. A wrapper that raises ends the
        notification (the listeners it wraps may or may not have been told)."""
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        told: set[object] = set()
        while True:
            try:
                caller(**kwargs)
                return
            except Exception as exc:
                impls = caller.get_hookimpls()
                failed = _Implementations(impls).raising(exc)
                log.warning("%s", _plugin_error(hook, failed, exc, kwargs))
                if failed is None or _is_wrapper(failed):
                    return
                told |= _reached(impls, failed)
                caller = self.pm.subset_hook_caller(hook, remove_plugins=told)


def _plugin_error(
    hook: str, failed: pluggy.HookImpl | None, exc: Exception, kwargs: Mapping[str, Any]
) -> PluginError:
    plugin = failed.plugin_name if failed is not None else _UNKNOWN
    return PluginError(plugin, hook, exc, _subject(kwargs))


@dataclass
class _Registry:
    """What one call of a ``register`` hook collected: key -> (plugin, value).

    The first registration of a key in pluggy's call order wins (as with a firstresult
    hook: the plugin registered last, or marked ``tryfirst``). With ``unique`` a second
    registration is a :class:`PluginError` naming both plugins (``noun`` starts the
    message); without it, it is ignored.
    """

    hook: str
    impls: _Implementations
    unique: bool = False
    noun: str = ""
    found: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def add(self, key: str, value: Any) -> None:
        caller = self.impls.running(_stack())
        plugin = caller.plugin_name if caller is not None else _UNKNOWN
        if key not in self.found:
            self.found[key] = (plugin, value)
        elif self.unique:
            owner = self.found[key][0]
            raise PluginError(
                plugin,
                self.hook,
                ValueError(f"{self.noun}{key!r} is already registered by {owner!r}"),
            )


class _Implementations:
    """One hook's implementations, recognised in the frames that run them."""

    def __init__(self, impls: Sequence[pluggy.HookImpl]) -> None:
        self._by_code: dict[CodeType, list[pluggy.HookImpl]] = {}
        for impl in _call_order(impls):
            code = _code_of(impl.function)
            if code is not None:
                self._by_code.setdefault(code, []).append(impl)
        self._frames: dict[CodeType, list[FrameType]] = {}

    def running(self, frames: Iterable[FrameType]) -> pluggy.HookImpl | None:
        """The implementation that runs in the first of ``frames`` running one."""
        for frame in frames:
            candidates = [
                impl for impl in self._by_code.get(frame.f_code, ()) if _runs(impl.function, frame)
            ]
            if candidates:
                return self._one_of(candidates, frame)
        return None

    def _one_of(self, candidates: list[pluggy.HookImpl], frame: FrameType) -> pluggy.HookImpl:
        """The same function registered by several plugins: pluggy calls it once for
        each, in call order, so the n-th frame seen running it is the n-th plugin's."""
        seen = self._frames.setdefault(frame.f_code, [])
        if not any(frame is other for other in seen):
            seen.append(frame)
        position = next(i for i, other in enumerate(seen) if other is frame)
        return candidates[min(position, len(candidates) - 1)]

    def raising(self, exc: BaseException) -> pluggy.HookImpl | None:
        """The implementation that raised ``exc``: the innermost on its traceback (a
        wrapper that lets it through is further out)."""
        frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
        return self.running(reversed(frames))


def _code_of(func: Callable[..., object]) -> CodeType | None:
    code = getattr(getattr(func, "__func__", func), "__code__", None)
    return code if isinstance(code, CodeType) else None


def _runs(func: Callable[..., object], frame: FrameType) -> bool:
    """Whether ``frame`` runs ``func`` and not another function of the same code: the
    same method of another instance, or a closure made by the same factory."""
    owner = getattr(func, "__self__", None)
    if owner is not None:
        first = frame.f_code.co_varnames[:1]
        return bool(first) and frame.f_locals.get(first[0]) is owner
    cells = getattr(func, "__closure__", None) or ()
    free = zip(frame.f_code.co_freevars, cells, strict=False)
    return all(frame.f_locals.get(name) is _cell_value(cell) for name, cell in free)


def _cell_value(cell: Any) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell matches nothing
        return _cell_value


def _stack() -> Iterator[FrameType]:
    """The calling frames, innermost first."""
    frame = inspect.currentframe()
    while frame is not None:
        yield frame
        frame = frame.f_back


def _is_wrapper(impl: pluggy.HookImpl) -> bool:
    return bool(impl.wrapper or impl.hookwrapper)


def _call_order(impls: Sequence[pluggy.HookImpl]) -> list[pluggy.HookImpl]:
    """pluggy's call order: wrappers first, then the others (``get_hookimpls()`` lists
    them last to first)."""
    return list(reversed(impls))


def _reached(impls: Sequence[pluggy.HookImpl], failed: pluggy.HookImpl) -> set[object]:
    """The plugins whose (non-wrapper) implementation pluggy called up to ``failed``."""
    reached: set[object] = set()
    for impl in _call_order(impls):
        if not _is_wrapper(impl):
            reached.add(impl.plugin)
        if impl is failed:
            break
    return reached


def _subject(kwargs: Mapping[str, Any]) -> str:
    """What a hook call is about, for messages: the remote path, the path or the event's."""
    for key in ("remote_path", "path"):
        if isinstance(kwargs.get(key), str):
            return str(kwargs[key])
    event = kwargs.get("event")
    return str(getattr(event, "path", "")) if event is not None else ""


def _about(kwargs: Mapping[str, Any]) -> str:
    subject = _subject(kwargs)
    return f" on {subject}" if subject else ""


def _trace_call(hook: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
    for impl in _call_order(impls):
        role = " (wrapper)" if _is_wrapper(impl) else ""
        sys.stderr.write(f"cat2sync: plugin {impl.plugin_name!r}: {hook}{_about(kwargs)}{role}\n")


def _trace_outcome(
    outcome: pluggy.Result[Any],
    hook: str,
    impls: Sequence[pluggy.HookImpl],
    kwargs: Mapping[str, Any],
) -> None:
    exc = outcome.exception
    if exc is not None:
        sys.stderr.write(f"cat2sync: {hook}{_about(kwargs)} raised {exc.__class__.__name__}\n")


def _guarded(plugin: str, job_id: str, func: Callable[[], object]) -> Callable[[], object]:
    """``func`` as a scheduled job: what it raises is logged with the plugin's name."""

    def job() -> object:
        try:
            return func()
        except Exception as exc:
            log.warning("%s", PluginError(plugin, f"job {job_id!r}", exc))
            return None

    return job
