"""What a manifest value must look like, and how a bad one is shown in a message.

Pure functions of text: the table readers and ``starter_manifest`` share them.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from urllib.parse import urlsplit

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_ROOT = re.compile(r"@[A-Za-z0-9_-]+")
_MAX_SHOWN = 60


def join_key(prefix: str, key: str) -> str:
    """Key path ``prefix.key``; keys that are not TOML bare keys are quoted."""
    shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{prefix}.{shown}" if prefix else shown


def kind(value: object) -> str:
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


def show(value: object) -> str:
    """A short one-line rendering of a (non-secret) bad value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # json.dumps escapes newlines and control characters: messages stay one line.
        shown = json.dumps(value, ensure_ascii=False)
        return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 2] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    return kind(value)


def one_line(text: str) -> str:
    return " ".join(text.split())


def safe_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a server or a dataset file, or None."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name or name == ".":
        return (
            f"expected a plain name (letters, digits, '_', '-', '.'; no '/' or '..'), "
            f"got {show(name)}"
        )
    return None


def remote_path_problem(text: str, *, min_segments: int = 1) -> str | None:
    """Why ``text`` is not an acceptable remote path, or None.

    :param min_segments: how many path segments (the root included) are required.
    """
    expected = 'expected a remote path like "@personal/folder"'
    if not text:
        return f"{expected}, got an empty string"
    if "\\" in text:
        return f"{expected} with '/' separators, got {show(text)}"
    if text.startswith("/"):
        return f"{expected} (no leading '/'), got {show(text)}"
    segments = text.split("/")
    if not _ROOT.fullmatch(segments[0]):
        return f"{expected} starting with a root (@public, @personal, @shared), got {show(text)}"
    for segment in segments[1:]:
        if segment in ("", ".", ".."):
            return f"{expected} (no empty, '.' or '..' segments), got {show(text)}"
        if any(ord(char) < 0x20 for char in segment):
            return f"{expected} (no control characters), got {show(text)}"
    if len(segments) < min_segments:
        return f'expected a remote path below a root like "{segments[0]}/name", got {show(text)}'
    return None


def url_problem(url: str, *, as_written: str | None = None) -> str | None:
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
        shown = show(url if as_written is None else as_written)
        return f'expected "embedded" or an http:// or https:// URL, got {shown}'
    return None
