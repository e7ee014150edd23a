"""Reading a plugin's ``[plugins.NAME]`` table in ``cat2sync_configure``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import SettingError

if TYPE_CHECKING:
    from ..manifest import Manifest

__all__ = ["read_settings"]

T = TypeVar("T")


def read_settings(manifest: Manifest, name: str, parse: Callable[[Mapping[str, Any]], T]) -> T:
    """``parse`` applied to the manifest's ``[plugins.<name>]`` table (empty when absent).

    A :class:`~cat2sync.errors.SettingError` that ``parse`` raises is reported against
    the manifest's file, so that the plugin's ``cat2sync_configure`` gives the same
    one-line error as the rest of the manifest, even when called on its own::

        @hookimpl
        def cat2sync_configure(manifest):
            global _options
            _options = read_settings(manifest, "lab", LabOptions.from_settings)
    """
    try:
        return parse(manifest.plugins.settings.get(name, {}))
    except SettingError as exc:
        raise exc.in_file(manifest.source) from None
