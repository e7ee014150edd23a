"""What both sides decide from: the evidence a march gathers, and the deletion cap."""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

from ...manifest import OnConflict
from ...records import Mirrored, Shipped

__all__ = [
    "MIRROR",
    "UPLOAD",
    "Adopt",
    "Clash",
    "LocalCopy",
    "LocalFile",
    "Side",
    "Unchanged",
    "conflict_name",
    "deletion_cap",
    "deletion_refusal",
    "is_folder_to_server",
    "remote_path",
]


# -- evidence ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A local file as the march saw it."""

    relpath: str
    size: int
    mtime_ns: int
    dev: int = 0
    inode: int = 0

    @classmethod
    def of(cls, relpath: str, st: os.stat_result) -> LocalFile:
        return cls(relpath, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)

    def is_version_of(self, rec: Shipped) -> bool:
        """Whether this is the version ``rec`` recorded (same size and mtime)."""
        return self.size == rec.size and self.mtime_ns == rec.mtime_ns

    def is_same_inode(self, rec: Shipped) -> bool:
        return (self.dev, self.inode) == (rec.dev, rec.inode)


@dataclass(frozen=True, slots=True)
class LocalCopy:
    """A mirror file as it is on disk now (size and mtime), to compare with its record."""

    size: int
    mtime_ns: int

    def is_intact(self, rec: Mirrored) -> bool:
        """Unchanged since this rule wrote it."""
        return (self.size, self.mtime_ns) == (rec.size, rec.mtime_ns)


def remote_path(remote_folder: str, relpath: str, converted: Collection[str]) -> str:
    """Where ``relpath`` goes; a file whose suffix a plugin converts goes as ``.b2nd``."""
    if PurePosixPath(relpath).suffix.lower() in converted:
        relpath = str(PurePosixPath(relpath).with_suffix(".b2nd"))
    return f"{remote_folder}/{relpath}"


def is_folder_to_server(remote: str) -> bool:
    """The server's move reads a target without suffix as a folder (caterva2-rest.md §6.5)."""
    return not PurePosixPath(remote).suffix


# -- the deletion cap, both sides --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Side:
    """How one direction of sync speaks of deletions, for :func:`deletion_refusal`."""

    source: str  # where files vanished from
    did: str  # what this rule did with the files
    kept: str  # what a refusal keeps
    empty_hint: str = ""  # the likely cause of an empty source


UPLOAD: Final = Side("the local folder", "shipped", "no remote file removed", " (unmounted?)")
MIRROR: Final = Side("the remote folder", "mirrored", "no local file removed")


def deletion_cap(known: int, max_delete: float) -> int:
    """How many of ``known`` files one pass may remove: ``max_delete`` of them, at least 1."""
    return max(1, int(max_delete * known))


def deletion_refusal(
    side: Side, *, known: int, vanished: int, remaining: int, max_delete: float
) -> str | None:
    """Why ``vanished`` of the ``known`` files may not be deleted, or None when they may.

    Deletions are refused when the source holds nothing at all (an unmounted disk, an
    empty listing) or when more than ``max_delete`` of the known files vanished at once;
    at least one file may always go.
    """
    if not vanished:
        return None
    if remaining == 0:
        why = f"{side.source} is empty but {known} files were {side.did}{side.empty_hint}"
        return f"{why}: {side.kept}"
    cap = deletion_cap(known, max_delete)
    if vanished > cap:
        return (
            f"{vanished} of {known} {side.did} files vanished from {side.source}, more than "
            f"max_delete allows ({cap}): {side.kept}"
        )
    return None


@dataclass(frozen=True, slots=True)
class Unchanged:
    """Nothing to do: the remote copy (or the mirror file) is this version already."""


# -- conflicts, both sides ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clash:
    """Another writer's version is where ours would go: the rule's ``on_conflict``
    (keep-both or skip) decides; ``reason`` says what was seen."""

    action: OnConflict
    reason: str


@dataclass(frozen=True, slots=True)
class Adopt:
    """The other side already holds this very content: record it as ours, send nothing."""


def conflict_name(path: str, when: float, counter: int = 0) -> str:
    """``run.b2nd`` -> ``run.conflict-20261201T120000Z.b2nd`` (UTC), beside it; a
    ``counter`` (1, 2, ...) when that name is taken."""
    name = PurePosixPath(path)
    suffix = name.suffix
    stem = name.name[: -len(suffix)] if suffix else name.name
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    tail = f"-{counter}" if counter else ""
    return str(name.with_name(f"{stem}.conflict-{stamp}{tail}{suffix}"))
