"""Builds the plugin manager and calls hooks through one typed facade.

Built-in behaviour is registered exactly like third-party plugins: the modules in
``DEFAULT_PLUGINS`` first, then the ``cat2sync`` entry points. ``[plugins] disable``
in the manifest blocks plugins by name. ``CAT2SYNC_TRACE_PLUGINS=1`` prints hook calls.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from .. import __version__
from ..errors import ManifestError, PluginError
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
        # Hooks are called one implementation at a time (see _call), not through pluggy's
        # hook callers, so pluggy's own tracing would never see them: _call traces.
        self._trace = bool(os.environ.get("CAT2SYNC_TRACE_PLUGINS"))
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
            declared: dict[str, Mapping[str, SettingSpec]] = {}
            owners: dict[str, str] = {}
            for impl in self._impls("cat2sync_declare_settings"):

                def declare(
                    name: str, specs: Mapping[str, SettingSpec], _plugin: str = impl.plugin_name
                ) -> None:
                    declared[name], owners[name] = specs, _plugin

                self._call(impl, "cat2sync_declare_settings", declare=declare)
            declaring = set(owners.values())
            for name in self._plugins:
                if name not in declaring:
                    declared.setdefault(name, {})
            self._declared, self._declared_by = declared, owners
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
        self.disable(manifest.plugins.disable)
        self._settings = manifest.plugins.settings
        self._each("cat2sync_configure", manifest=manifest)

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
        """Every transform a rule names must be registered; ManifestError otherwise."""
        disabled = self._resolve(manifest.plugins.disable)
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
            owners: dict[str, str] = {}
            found = self._registry("cat2sync_register_transforms", unique=True, owners=owners)
            self._transforms = {
                name: OwnedTransform(func, owners[name]) for name, func in found.items()
            }
            self._transform_owners = owners
        return self._transforms

    @property
    def converters(self) -> dict[str, tuple[str, Converter]]:
        """Suffix (lower case, with the dot) -> (plugin name, converter)."""
        if self._converters is None:
            owners: dict[str, str] = {}
            found = self._registry("cat2sync_register_converters", owners=owners)
            self._converters = {k.lower(): (owners[k], v) for k, v in found.items()}
        return self._converters

    def _registry(
        self, hook: str, *, unique: bool = False, owners: dict[str, str] | None = None
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}
        owner: dict[str, str] = {} if owners is None else owners
        for impl in self._impls(hook):

            def register(key: str, value: Any, _plugin: str = impl.plugin_name) -> None:
                if unique and key in found:
                    raise PluginError(
                        _plugin,
                        hook,
                        ValueError(f"{key!r} is already registered by {owner[key]!r}"),
                    )
                found[key], owner[key] = value, _plugin

            self._call(impl, hook, register=register)
        return found

    def jobs(self) -> list[tuple[str, float | str, Callable[[], object]]]:
        """The plugins' periodic jobs. Each runs guarded: a job that raises is logged with
        the plugin's name and the job id, and runs again next time.

        :raises PluginError: two jobs share an id.
        """
        hook = "cat2sync_register_jobs"
        jobs: dict[str, tuple[float | str, Callable[[], object]]] = {}
        owners: dict[str, str] = {}
        for impl in self._impls(hook):

            def register(
                job_id: str,
                when: float | str,
                func: Callable[[], object],
                _plugin: str = impl.plugin_name,
            ) -> None:
                if job_id in jobs:
                    raise PluginError(
                        _plugin,
                        hook,
                        ValueError(f"job {job_id!r} is already registered by {owners[job_id]!r}"),
                    )
                jobs[job_id], owners[job_id] = (when, _guarded(_plugin, job_id, func)), _plugin

            self._call(impl, hook, register=register)
        return [(job_id, when, func) for job_id, (when, func) in jobs.items()]

    # -- decisions and notifications -----------------------------------------

    def ignore(self, rule: UploadRule | SubscribeRule, path: str) -> bool:
        for impl in reversed(self._impls("cat2sync_ignore")):  # pluggy's LIFO order
            result = self._call(impl, "cat2sync_ignore", subject=path, rule=rule, path=path)
            if result is not None:
                return bool(result)
        return False

    def lazyexprs(
        self,
        rule: UploadRule,
        remote_path: str,
        info: Mapping[str, Any],
    ) -> list[LazyExprRequest]:
        requests: list[LazyExprRequest] = []
        for impl in self._impls("cat2sync_lazyexprs"):
            result = self._call(
                impl,
                "cat2sync_lazyexprs",
                subject=remote_path,
                rule=rule,
                remote_path=remote_path,
                info=info,
            )
            requests.extend(result or ())
        return requests

    def uploaded(
        self, rule: UploadRule, local_path: Path, remote_path: str, client: Client
    ) -> None:
        self._each(
            "cat2sync_uploaded",
            subject=remote_path,
            rule=rule,
            local_path=local_path,
            remote_path=remote_path,
            client=client,
        )

    def shutdown(self) -> None:
        for impl in self._impls("cat2sync_shutdown"):
            try:
                self._call(impl, "cat2sync_shutdown")
            except PluginError as exc:
                log.warning("%s", exc)

    def event(self, event: Event) -> None:
        """Tell every plugin; one that raises is logged and does not stop the others."""
        for impl in self._impls("cat2sync_event"):
            try:
                self._call(impl, "cat2sync_event", subject=event.path, event=event)
            except PluginError as exc:
                log.warning("%s", exc)

    # -- plumbing --------------------------------------------------------------

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        return list(getattr(self.pm.hook, hook).get_hookimpls())

    def _each(self, hook: str, subject: str = "", **kwargs: Any) -> None:
        for impl in self._impls(hook):
            self._call(impl, hook, subject=subject, **kwargs)

    def _call(self, impl: pluggy.HookImpl, hook: str, subject: str = "", **kwargs: Any) -> Any:
        """Call one plugin's implementation; any exception becomes a :class:`PluginError`.

        A :class:`ManifestError` from a set-up hook goes to the user as it is (a plugin
        checking its own table); from any other hook it is a plugin failure like another.
        """
        if self._trace:
            about = f" on {subject}" if subject else ""
            sys.stderr.write(f"cat2sync: plugin {impl.plugin_name!r}: {hook}{about}\n")
        try:
            return impl.function(*(kwargs[name] for name in impl.argnames))
        except PluginError:
            raise
        except ManifestError as exc:
            if hook in _SETUP_HOOKS:
                raise
            raise PluginError(impl.plugin_name, hook, exc, subject) from exc
        except Exception as exc:
            raise PluginError(impl.plugin_name, hook, exc, subject) from exc


def _guarded(plugin: str, job_id: str, func: Callable[[], object]) -> Callable[[], object]:
    """``func`` as a scheduled job: what it raises is logged with the plugin's name."""

    def job() -> object:
        try:
            return func()
        except Exception as exc:
            log.warning("%s", PluginError(plugin, f"job {job_id!r}", exc))
            return None

    return job
