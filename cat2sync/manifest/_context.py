"""What the table readers need besides their table: the manifest's folder and environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ManifestError
from ._model import SettingSpec
from ._section import Section
from ._values import show

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# "$${" is an escaped literal "${"; "${NAME}" is a variable; a lone "${" is an error.
_INTERPOLATION = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """One loading of one manifest file.

    :param source: the file as the user named it; every message starts with it.
    :param base_dir: relative paths in the manifest are relative to this folder.
    :param env: variables for ``${VAR}`` interpolation.
    :param plugin_settings: the accepted settings of every installed plugin, if known.
    :param check_paths: whether local folders and files must exist on this machine.
    """

    source: str
    path: Path
    base_dir: Path
    env: Mapping[str, str]
    plugin_settings: Mapping[str, Mapping[str, SettingSpec]] | None
    check_paths: bool

    @classmethod
    def of_file(
        cls,
        source: str,
        *,
        env: Mapping[str, str],
        plugin_settings: Mapping[str, Mapping[str, SettingSpec]] | None,
        check_paths: bool,
    ) -> Context:
        path = Path(source).absolute()
        return cls(
            source=source,
            path=path,
            # The folder is resolved (symlinks, "..") but the file itself is not: relative
            # paths are relative to where the operator sees the manifest.
            base_dir=path.parent.resolve(),
            env=env,
            plugin_settings=plugin_settings,
            check_paths=check_paths,
        )

    def fail(self, key: str, message: str) -> ManifestError:
        return ManifestError(self.source, key, message)

    def top(self, document: Mapping[str, Any]) -> Section:
        """The whole document as a table."""
        return Section(self.source, document, "")

    def resolve(self, section: Section, name: str, text: str) -> Path:
        """``text`` as an absolute resolved path; relative to the manifest's folder."""
        try:
            return (self.base_dir / Path(text).expanduser()).resolve()
        # RuntimeError: symlink loop (3.11) or unknown home; ValueError: a NUL character.
        except (OSError, RuntimeError, ValueError) as exc:
            raise section.fail(name, f"cannot resolve path {show(text)}: {exc}") from None

    def interpolated(self, section: Section) -> Section:
        """A copy of ``section`` with ``${VAR}`` expanded in every string value."""
        data: dict[str, Any] = {}
        for name, value in section.data.items():
            if isinstance(value, str):
                expanded = self._interpolate(section, name, value)
                if value.strip() and not expanded.strip():
                    raise section.fail(name, "is empty after ${...} interpolation")
                value = expanded
            data[name] = value
        return section.with_data(data)

    def _interpolate(self, section: Section, name: str, text: str) -> str:
        """Expand ``${VAR}`` from the environment; ``$${`` is a literal ``${``."""

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            variable = match.group(1)
            if variable is None or not _ENV_NAME.fullmatch(variable):
                # The text is not shown: it may be part of a password.
                raise section.fail(
                    name, 'invalid "${...}" reference (write "$${" for a literal "${")'
                )
            if variable not in self.env:
                raise section.fail(name, f"environment variable {variable} is not set")
            return self.env[variable]

        return _INTERPOLATION.sub(replace, text)
