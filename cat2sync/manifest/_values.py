"""What a manifest value must look like, and how a bad one is shown in a message.

Pure functions of text: the table readers and ``starter_manifest`` share them.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import re
from typing import Final
from urllib.parse import urlsplit

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_ROOT = re.compile(r"@[A-Za-z0-9_-]+")
_MAX_SHOWN = 60
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
_ADDRESS = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]*)):(?P<port>[0-9]+)")
#: Where a status endpoint given by its port alone listens: this machine only.
LOOPBACK: Final = "127.0.0.1"


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


def parse_address(value: object) -> tuple[str, int]:
    """``"host:port"``, ``"[v6]:port"`` or a port alone (on :data:`LOOPBACK`) as
    ``(host, port)``; port 0 means any free port.

    :raises ValueError: with a one-line message.
    """
    expected = 'expected "host:port" like "127.0.0.1:9464", or a port'
    if isinstance(value, int) and not isinstance(value, bool):
        return LOOPBACK, _port(value)
    if not isinstance(value, str):
        raise ValueError(f"{expected}, got {show(value)}")
    if value.isdigit():
        return LOOPBACK, _port(int(value))
    match = _ADDRESS.fullmatch(value)
    if match is None:
        raise ValueError(f"{expected}, got {show(value)}")
    host = match["v6"] if match["v6"] is not None else match["host"]
    if not host:
        raise ValueError(
            f'{show(value)} names no host: "127.0.0.1:{match["port"]}" for this machine only, '
            f'"0.0.0.0:{match["port"]}" for every network interface'
        )
    if not _is_host(host, ipv6=match["v6"] is not None):
        raise ValueError(f"{expected}; {show(host)} is not a host name or IP address")
    return host, _port(int(match["port"]))


def _port(port: int) -> int:
    if not 0 <= port <= 65535:
        raise ValueError(f"the port must be between 0 and 65535, got {port}")
    return port


def _is_host(host: str, *, ipv6: bool) -> bool:
    if ipv6:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return bool(_HOSTNAME.fullmatch(host))
