"""The ``[plugins]`` table: disabled plugins and each plugin's ``[plugins.NAME]`` settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from ._context import Context
from ._model import MISSING, REQUIRED, PluginsConfig, SettingSpec
from ._section import Section
from ._values import show

_TYPE_NAMES: Final[Mapping[type, str]] = MappingProxyType(
    {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
        Path: "a path",
    }
)


def read_plugins(section: Section | None, context: Context) -> PluginsConfig:
    """Without ``plugin_settings`` in the context, plugin tables are taken as written."""
    known = context.plugin_settings
    if section is None:
        return PluginsConfig(settings=MappingProxyType(_defaults(known, set())))
    disable = section.string_list("disable", (), allow_empty=True)
    if known is not None:
        for index, name in enumerate(disable):
            if name not in known:
                raise section.index_fail("disable", index, f"unknown plugin {show(name)}")
    settings: dict[str, Mapping[str, Any]] = {}
    for name in section.data:
        if name != "disable":
            settings[name] = MappingProxyType(_plugin_table(section, name, context))
    settings.update(_defaults(known, set(settings)))
    return PluginsConfig(disable=disable, settings=MappingProxyType(settings))


def _plugin_table(plugins: Section, name: str, context: Context) -> dict[str, Any]:
    table = plugins.raw(name)
    if not isinstance(table, dict):
        raise plugins.fail(name, f"expected a table [plugins.{name}], got {show(table)}")
    known = context.plugin_settings
    if known is None:
        return dict(table)
    if name not in known:
        raise plugins.fail(name, "unknown plugin")
    # ${VAR} too: a webhook URL or a token often holds a secret.
    section = context.interpolated(plugins.inner(table, plugins.key(name)))
    return _settings(section, known[name], context)


def _defaults(
    known: Mapping[str, Mapping[str, SettingSpec]] | None, configured: set[str]
) -> dict[str, Mapping[str, Any]]:
    """Defaults for known plugins without a table (only when nothing is required)."""
    defaults: dict[str, Mapping[str, Any]] = {}
    for name, specs in (known or {}).items():
        if name in configured or any(spec.default is REQUIRED for spec in specs.values()):
            continue
        defaults[name] = MappingProxyType({key: spec.default for key, spec in specs.items()})
    return defaults


def _settings(
    section: Section, specs: Mapping[str, SettingSpec], context: Context
) -> dict[str, Any]:
    section.check_keys(tuple(specs))
    values: dict[str, Any] = {}
    for key, spec in specs.items():
        value = section.raw(key)
        if value is MISSING:
            if spec.default is REQUIRED:
                raise section.fail(key, "missing required setting")
            values[key] = spec.default
        else:
            values[key] = _setting(section, key, value, spec, context)
    return values


def _setting(section: Section, key: str, value: Any, spec: SettingSpec, context: Context) -> Any:
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    if isinstance(value, bool):
        accepted = bool in types  # bool is an int subclass, but never a number here
    elif isinstance(value, int) and float in types and int not in types:
        return float(value)
    elif isinstance(value, str) and Path in types and str not in types:
        return context.resolve(section, key, value)
    else:
        accepted = isinstance(value, types)
    if not accepted:
        expected = " or ".join(_TYPE_NAMES.get(kind, kind.__name__) for kind in types)
        raise section.fail(key, f"expected {expected}, got {show(value)}")
    return value
