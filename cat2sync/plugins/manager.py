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
from ..errors import Cat2Error, ManifestError
from . import hookspecs
from .hookspecs import PROJECT, Converter, LazyExprRequest, Transform

if TYPE_CHECKING:
    from pathlib import Path

    from ..client import Client
    from ..events import Event
    from ..manifest import Manifest, SettingSpec, SubscribeRule, UploadRule

__all__ = ["DEFAULT_PLUGINS", "PluginError", "PluginInfo", "Plugins"]

log = logging.getLogger(__name__)

DEFAULT_PLUGINS = ("cat2sync.plugins.default.transforms",)


class PluginError(Cat2Error):
    """A plugin's hook raised; the message names the plugin, the hook and the cause."""

    def __init__(self, plugin: str, hook: str, exc: BaseException, subject: str = "") -> None:
        self.plugin, self.hook, self.cause = plugin, hook, exc
        about = f" on {subject}" if subject else ""
        super().__init__(f"plugin {plugin!r} failed in {hook}{about}: "
                         f"{exc.__class__.__name__}: {exc}")


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
            self.pm.trace.root.setwriter(lambda text: sys.stderr.write(text))
            self.pm.enable_tracing()
        self._transforms: dict[str, Transform] | None = None
        self._converters: dict[str, tuple[str, Converter]] | None = None
        self._settings: Mapping[str, Mapping[str, Any]] = {}

    # -- set-up ----------------------------------------------------------------

    def declared_settings(self) -> dict[str, Mapping[str, SettingSpec]]:
        declared: dict[str, Mapping[str, SettingSpec]] = {}

        def declare(name: str, specs: Mapping[str, SettingSpec]) -> None:
            declared[name] = specs

        self._each("cat2sync_declare_settings", declare=declare)
        return declared

    def disable(self, names: Iterable[str]) -> None:
        for name in names:
            self.pm.set_blocked(name)
        self._transforms = self._converters = None

    def configure(self, manifest: Manifest) -> None:
        self.disable(manifest.plugins.disable)
        self._settings = manifest.plugins.settings
        self._each("cat2sync_configure", manifest=manifest)

    def settings_for(self, plugin: str) -> Mapping[str, Any]:
        """The plugin's validated ``[plugins.NAME]`` table (empty when it has none)."""
        return self._settings.get(plugin, {})

    def check_manifest(self, manifest: Manifest) -> None:
        """Every transform a rule names must be registered; ManifestError otherwise."""
        known = self.transforms
        named = [(f"upload[{i}]", r.transforms) for i, r in enumerate(manifest.uploads)]
        named += [(f"subscribe[{i}]", r.transforms) for i, r in enumerate(manifest.subscriptions)]
        for key, specs in named:
            for position, spec in enumerate(specs):
                if spec.name not in known:
                    raise ManifestError(
                        manifest.source, f"{key}.transforms[{position}]",
                        f"unknown transform {spec.name!r} (known: "
                        f"{', '.join(sorted(known)) or 'none'})")

    def describe(self) -> list[PluginInfo]:
        """Each registered plugin: name, version and the hooks it implements."""
        versions = {name: dist.version for name, dist in self._dists()}
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or ()))
            builtin = name in DEFAULT_PLUGINS
            out.append(PluginInfo(name=name, version=__version__ if builtin else
                                  versions.get(name, "?"), hooks=hooks, builtin=builtin))
        return out

    def _dists(self) -> list[tuple[str, Any]]:
        return [(self.pm.get_name(p) or "", d) for p, d in self.pm.list_plugin_distinfo()]

    # -- contributions ---------------------------------------------------------

    @property
    def transforms(self) -> dict[str, Transform]:
        if self._transforms is None:
            self._transforms = self._registry("cat2sync_register_transforms", unique=True)
        return self._transforms

    @property
    def converters(self) -> dict[str, tuple[str, Converter]]:
        """Suffix (lower case, with the dot) -> (plugin name, converter)."""
        if self._converters is None:
            owners: dict[str, str] = {}
            found = self._registry("cat2sync_register_converters", owners=owners)
            self._converters = {k.lower(): (owners[k], v) for k, v in found.items()}
        return self._converters

    def _registry(self, hook: str, *, unique: bool = False,
                  owners: dict[str, str] | None = None) -> dict[str, Any]:
        found: dict[str, Any] = {}
        owner: dict[str, str] = {} if owners is None else owners
        for impl in self._impls(hook):
            def register(key: str, value: Any, _plugin: str = impl.plugin_name) -> None:
                if unique and key in found:
                    raise PluginError(_plugin, hook, ValueError(
                        f"{key!r} is already registered by {owner[key]!r}"))
                found[key], owner[key] = value, _plugin

            self._call(impl, hook, register=register)
        return found

    def jobs(self) -> list[tuple[str, float | str, Callable[[], object]]]:
        jobs: list[tuple[str, float | str, Callable[[], object]]] = []
        self._each("cat2sync_register_jobs",
                   register=lambda job_id, when, func: jobs.append((job_id, when, func)))
        return jobs

    # -- decisions and notifications -----------------------------------------

    def ignore(self, rule: UploadRule | SubscribeRule, path: str) -> bool:
        for impl in reversed(self._impls("cat2sync_ignore")):  # pluggy's LIFO order
            result = self._call(impl, "cat2sync_ignore", subject=path, rule=rule, path=path)
            if result is not None:
                return bool(result)
        return False

    def lazyexprs(self, rule: UploadRule, remote_path: str, info: Mapping[str, Any],
                  ) -> list[LazyExprRequest]:
        requests: list[LazyExprRequest] = []
        for impl in self._impls("cat2sync_lazyexprs"):
            result = self._call(impl, "cat2sync_lazyexprs", subject=remote_path, rule=rule,
                                remote_path=remote_path, info=info)
            requests.extend(result or ())
        return requests

    def uploaded(self, rule: UploadRule, local_path: Path, remote_path: str,
                 client: Client) -> None:
        self._each("cat2sync_uploaded", rule=rule, local_path=local_path,
                   remote_path=remote_path, client=client)

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

    def _each(self, hook: str, **kwargs: Any) -> None:
        for impl in self._impls(hook):
            self._call(impl, hook, **kwargs)

    @staticmethod
    def _call(impl: pluggy.HookImpl, hook: str, subject: str = "", **kwargs: Any) -> Any:
        """Call one plugin's implementation; any exception becomes a :class:`PluginError`."""
        try:
            return impl.function(*(kwargs[name] for name in impl.argnames))
        except (PluginError, ManifestError):
            raise  # a plugin's own one-line manifest error goes to the user as it is
        except Exception as exc:
            raise PluginError(impl.plugin_name, hook, exc, subject) from exc
