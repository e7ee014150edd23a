"""Remote names are untrusted: map them to local paths that stay inside the mirror."""

from __future__ import annotations

import unicodedata
from pathlib import Path

__all__ = ["UnsafeName", "local_target"]

_MAX_NAME_BYTES = 255  # one path component, as most file systems allow


class UnsafeName(ValueError):
    """The remote name cannot be written safely inside the mirror folder."""


def _clean_parts(name: str) -> list[str]:
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        raise UnsafeName("absolute, empty, or contains a backslash or NUL")
    parts = unicodedata.normalize("NFC", name).split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeName("has an empty, '.' or '..' segment")
        if any(ord(ch) < 32 for ch in part):
            raise UnsafeName("contains a control character")
        if len(part.encode()) > _MAX_NAME_BYTES:
            raise UnsafeName(f"has a name longer than {_MAX_NAME_BYTES} bytes")
    return parts


def local_target(root: Path, name: str) -> tuple[str, Path]:
    """``(normalised relative name, local path)`` for remote ``name`` below ``root``.

    :raises UnsafeName: the name climbs out, is absolute, or passes through a symlink
        or a file planted in the mirror folder.
    """
    parts = _clean_parts(name)
    folder = root
    for part in parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise UnsafeName(f"passes through the symlink {folder}")
        if folder.exists() and not folder.is_dir():
            raise UnsafeName(f"passes through the file {folder}")
    target = folder / parts[-1]
    if target.is_symlink():
        raise UnsafeName(f"{target} is a symlink")
    if target.is_dir():
        raise UnsafeName(f"{target} is a folder")
    return "/".join(parts), target
