"""Reading one TOML table: typed values with one-line errors naming the key path."""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..durations import parse_duration, parse_fraction
from ..errors import ManifestError
from ._model import _MISSING

if TYPE_CHECKING:
    from ._loader import _Loader


# --------------------------------------------------------------------------- value helpers

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ROOT = re.compile(r"@[A-Za-z0-9_-]+")
_IDENTIFIER = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*")
# "$${" is an escaped literal "${"; "${NAME}" is a variable; a lone "${" is an error.
_INTERPOLATION = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_MAX_SHOWN = 60


def _join(prefix: str, key: str) -> str:
    """Key path ``prefix.key``; keys that are not TOML bare keys are quoted."""
    shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{prefix}.{shown}" if prefix else shown


def _kind(value: object) -> str:
    """The TOML type of a value, with an article, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, _dt.date | _dt.time):
        return "a date/time"
    return type(value).__name__


def _show(value: object) -> str:
    """A short one-line rendering of a (non-secret) bad value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # json.dumps escapes newlines and control characters: messages stay one line.
        shown = json.dumps(value, ensure_ascii=False)
        return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 2] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    return _kind(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _safe_name_problem(name: str) -> str | None:
    if not _SAFE_NAME.fullmatch(name) or ".." in name or name == ".":
        return (
            f"expected a plain name (letters, digits, '_', '-', '.'; no '/' or '..'), "
            f"got {_show(name)}"
        )
    return None


def _remote_path_problem(text: str, *, min_segments: int = 1) -> str | None:
    """Why ``text`` is not an acceptable remote path, or None.

    :param min_segments: how many path segments (the root included) are required.
    """
    expected = 'expected a remote path like "@personal/folder"'
    if not text:
        return f"{expected}, got an empty string"
    if "\\" in text:
        return f"{expected} with '/' separators, got {_show(text)}"
    if text.startswith("/"):
        return f"{expected} (no leading '/'), got {_show(text)}"
    segments = text.split("/")
    if not _ROOT.fullmatch(segments[0]):
        return f"{expected} starting with a root (@public, @personal, @shared), got {_show(text)}"
    for segment in segments[1:]:
        if segment in ("", ".", ".."):
            return f"{expected} (no empty, '.' or '..' segments), got {_show(text)}"
        if any(ord(char) < 0x20 for char in segment):
            return f"{expected} (no control characters), got {_show(text)}"
    if len(segments) < min_segments:
        return f'expected a remote path below a root like "{segments[0]}/name", got {_show(text)}'
    return None


def _url_problem(url: str, *, as_written: str | None = None) -> str | None:
    """Why ``url`` is not an http(s) server URL, or None. Never echoes credentials.

    :param as_written: the text before ``${VAR}`` expansion, shown instead of ``url``
        (an expanded variable may hold a token).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None and parts.username is not None:
        return "credentials must not be written in the URL; use username and password"
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        shown = _show(url if as_written is None else as_written)
        return f'expected "embedded" or an http:// or https:// URL, got {shown}'
    return None


# --------------------------------------------------------------------------- loader


class _Section:
    """A TOML table being validated, with typed getters that fail with its key path."""

    def __init__(self, loader: _Loader, data: Mapping[str, Any], prefix: str) -> None:
        self.loader = loader
        self.data = data
        self.prefix = prefix

    def key(self, name: str) -> str:
        return _join(self.prefix, name)

    def fail(self, name: str, message: str) -> ManifestError:
        return ManifestError(self.loader.source, self.key(name), message)

    def check_keys(self, allowed: Sequence[str]) -> None:
        for name in self.data:
            if name not in allowed:
                expected = ", ".join(sorted(allowed))
                raise self.fail(name, f"unknown key (expected one of: {expected})")

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, *, required: bool = False) -> Any:
        if name in self.data:
            return self.data[name]
        if required:
            raise self.fail(name, "missing required key")
        return _MISSING

    def string(self, name: str, *, required: bool = False, secret: bool = False) -> str | None:
        """A non-empty string, or None when absent and not required."""
        value = self.raw(name, required=required)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            shown = _kind(value) if secret else _show(value)
            raise self.fail(name, f"expected a string, got {shown}")
        if not value.strip():
            raise self.fail(name, "must not be empty")
        return value

    def required_string(self, name: str) -> str:
        value = self.string(name, required=True)
        assert value is not None  # required=True never returns None
        return value

    def choice(self, name: str, choices: Sequence[str], default: str) -> str:
        value = self.string(name)
        if value is None:
            return default
        if value.lower() not in choices:
            expected = ", ".join(f'"{choice}"' for choice in choices)
            raise self.fail(name, f"expected one of {expected}, got {_show(value)}")
        return value.lower()

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self.fail(name, f"expected a boolean, got {_show(value)}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"expected an integer, got {_show(value)}")
        if not low <= value <= high:
            raise self.fail(name, f"must be between {low} and {high}, got {value}")
        return value

    def duration(self, name: str, default: float | None, *, positive: bool) -> float | None:
        """Seconds; ``positive`` rejects 0 (intervals), else 0 is allowed (delays)."""
        value = self.raw(name)
        if value is _MISSING:
            return default
        if not isinstance(value, str | int | float):
            raise self.fail(name, f'expected a duration like "2s", got {_show(value)}')
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.fail(name, _one_line(str(exc))) from None
        if positive and seconds <= 0:
            raise self.fail(name, f"must be greater than 0, got {_show(value)}")
        return seconds

    def required_duration(self, name: str, default: float, *, positive: bool) -> float:
        seconds = self.duration(name, default, positive=positive)
        assert seconds is not None  # a non-None default is returned when absent
        return seconds

    def fraction(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if not isinstance(value, str | int | float):
            raise self.fail(
                name,
                f'expected a fraction between 0 and 1 or a percentage like "50%", '
                f"got {_show(value)}",
            )
        try:
            return parse_fraction(value)
        except ValueError as exc:
            raise self.fail(name, _one_line(str(exc))) from None

    def string_list(
        self, name: str, default: tuple[str, ...], *, allow_empty: bool
    ) -> tuple[str, ...]:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if not isinstance(value, list):
            raise self.fail(name, f"expected an array of strings, got {_show(value)}")
        if not value and not allow_empty:
            raise self.fail(name, "must not be empty")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.index_fail(name, index, f"expected a string, got {_show(item)}")
            if not item.strip():
                raise self.index_fail(name, index, "must not be empty")
        return tuple(value)

    def subtable(self, name: str) -> _Section | None:
        value = self.raw(name)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            raise self.fail(name, f"expected a table, got {_show(value)}")
        return _Section(self.loader, value, self.key(name))

    def index_fail(self, name: str, index: int, message: str) -> ManifestError:
        return ManifestError(self.loader.source, f"{self.key(name)}[{index}]", message)
