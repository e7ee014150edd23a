"""Remote names are untrusted: map them to local paths that stay inside the mirror."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from ..errors import UnsafeName

__all__ = ["clean_parts", "collision_key", "local_target"]

# One path component may have 255 bytes on most file systems, but a download is first
# written beside its target as ".<name>.<8 random>.part": keep room for that.
_MAX_NAME_BYTES = 255 - len("..12345678.part")


def clean_parts(name: str) -> list[str]:
    if not name or name.startswith("/") or "\\" in name:
        raise UnsafeName("absolute, empty, or contains a backslash")
    parts = unicodedata.normalize("NFC", name).split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeName("has an empty, '.' or '..' segment")
        # Cc covers NUL, the C0 controls, DEL and the C1 controls (terminal escapes).
        if any(unicodedata.category(ch) == "Cc" for ch in part):
            raise UnsafeName("contains a control character")
        if len(part.encode()) > _MAX_NAME_BYTES:
            raise UnsafeName(f"has a name longer than {_MAX_NAME_BYTES} bytes")
    return parts


def collision_key(clean: str) -> str:
    """What two names must not share to coexist on a case-insensitive file system."""
    return unicodedata.normalize("NFC", clean.casefold())


def local_target(root: Path, name: str) -> tuple[str, Path]:
    """``(normalised relative name, local path)`` for remote ``name`` below ``root``.

    :raises UnsafeName: the name climbs out, is absolute, or passes through a symlink
        or a file planted in the mirror folder.
    """
    parts = clean_parts(name)
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
