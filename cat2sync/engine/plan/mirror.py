"""The mirror side's decisions: a pass over a remote listing, one entry, one deletion."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

from ...manifest import OnConflict
from ...records import Mirrored
from ..localtree import TEMP_PREFIX
from ..names import collision_key
from ._common import MIRROR, Clash, LocalCopy, Unchanged, deletion_refusal

__all__ = [
    "FETCHED_WHOLE",
    "Delete",
    "Download",
    "Entry",
    "Extend",
    "KeepChanged",
    "MirrorPlan",
    "Targets",
    "Unreadable",
    "decide_deletion",
    "decide_entry",
    "is_own_temporary",
    "plan_listing",
]

#: A whole fetch of these sends the stored file with its ETag (caterva2-rest.md §6.3).
FETCHED_WHOLE: Final = frozenset({".b2nd", ".b2frame"})


# -- mirror: a pass over the listing -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """A listed entry to bring: ``first`` when it was never mirrored and can be fetched
    whole in one request (its ETag comes with it), else its ``info`` decides."""

    name: str
    target: Path
    first: bool


@dataclass(frozen=True, slots=True)
class MirrorPlan:
    entries: tuple[Entry, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (name, why) of unsafe names
    removals: tuple[Mirrored, ...] = ()
    refusal: str | None = None  # why no local file is removed


#: For each listed name a rule wants: ``(clean name, local path)``, or why it is unsafe.
Targets = Mapping[str, "tuple[str, Path] | str"]


def plan_listing(
    *,
    listing: Sequence[str],
    targets: Targets,
    records: Mapping[str, Mirrored],
    existing: Collection[str] = (),
    delete: bool = False,
    max_delete: float = 0.5,
    fetch_whole: bool = True,
) -> MirrorPlan:
    """What a pass of a subscription does with a remote listing.

    :param listing: every name the server listed (what still exists remotely, even the
        names this rule skips).
    :param targets: the names the rule wants, mapped by the march to local paths (see
        :data:`Targets`).
    :param records: the state store's ``mirrored`` records of the rule.
    :param existing: the names whose local path already holds a file (a first fetch
        would write over it: its ``info`` decides, as for a conflict).
    :param fetch_whole: whether a new dataset may be fetched whole (not when the rule
        transforms what it writes).
    """
    chosen, skipped = _resolve_names(targets, known=records.keys())
    entries = tuple(
        Entry(
            name,
            target,
            fetch_whole and name not in records and name not in existing and _fetchable(name),
        )
        for name, target in chosen.items()
    )
    present = set(listing)
    gone = tuple(r for name, r in records.items() if name not in present)
    if not delete or not gone:
        return MirrorPlan(entries=entries, skipped=skipped)
    refusal = deletion_refusal(
        MIRROR,
        known=len(records),
        vanished=len(gone),
        remaining=len(present),
        max_delete=max_delete,
    )
    return MirrorPlan(
        entries=entries, skipped=skipped, removals=() if refusal else gone, refusal=refusal
    )


def _fetchable(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in FETCHED_WHOLE


def is_own_temporary(name: str) -> bool:
    """A remote name of one of cat2sync's temporary uploads, never mirrored."""
    return name.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)


def _is_nfc(name: str) -> bool:
    return unicodedata.is_normalized("NFC", name)


def _resolve_names(
    targets: Targets, *, known: Collection[str]
) -> tuple[dict[str, Path], tuple[tuple[str, str], ...]]:
    """The names to mirror and the names skipped, with why.

    Of names that collide once normalised, one already mirrored wins (a newcomer never
    evicts it), then one already in NFC (the server cannot even serve some other forms).
    A file named like another entry's folder is skipped too.
    """
    chosen: dict[str, Path] = {}
    skipped: list[tuple[str, str]] = []
    keys: dict[str, str] = {}  # collision key -> the name that took it
    for name in sorted(targets, key=lambda n: (n not in known, not _is_nfc(n))):
        target = targets[name]
        if isinstance(target, str):
            skipped.append((name, target))
            continue
        key = collision_key(target[0])
        if key in keys:
            skipped.append((name, f"collides with {keys[key]!r} once normalised"))
            continue
        keys[key] = name
        chosen[name] = target[1]
    for key in _folder_clashes(keys):
        skipped.append((keys[key], "is also the name of a remote folder"))
        del chosen[keys[key]]
    return chosen, tuple(skipped)


def _folder_clashes(keys: Iterable[str]) -> list[str]:
    """Collision keys of files that are also a folder on another entry's path."""
    files = list(keys)
    folders = {
        "/".join(parts[:i]) for parts in (k.split("/") for k in files) for i in range(1, len(parts))
    }
    return [k for k in files if k in folders]


# -- mirror: one entry -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The server cannot read the entry (nor serve it): skip it, saying why."""

    reason: str


@dataclass(frozen=True, slots=True)
class Extend:
    """The dataset only grew along its first axis: fetch the new chunks only."""

    old_rows: int
    new_rows: int


@dataclass(frozen=True, slots=True)
class Download:
    """Download the entry whole (new, replaced, or not provably just grown)."""


def decide_entry(
    name: str,
    record: Mirrored | None,
    *,
    info: Mapping[str, Any],
    etag: str | None,
    local: LocalCopy | None,
    transformed: bool = False,
    on_conflict: OnConflict = "keep-both",
) -> Unchanged | Unreadable | Extend | Download | Clash:
    """What to do with one listed entry, once its ``info`` (and ETag) is known.

    A local file cat2sync did not write (there before the first pass), or changed since
    it wrote it, is left alone while the remote does not change, and meets a remote
    change as a conflict, unless the rule says ``on_conflict = "overwrite"``.

    :param local: the mirror file as it is now; None when it is missing.
    :param transformed: the rule transforms what it writes, so the local file is not
        the server's and cannot grow by the server's chunks.
    """
    intact = record is not None and record.ours and local is not None and local.is_intact(record)
    if record is not None and etag is not None and record.etag == etag and intact:
        return Unchanged()
    someone_elses = local is not None and not intact
    if someone_elses and on_conflict != "overwrite":
        if record is not None and _same_remote(record, etag, info):
            return Unchanged()  # no new remote change: nothing to bring, nothing to keep
        if "error" not in info:
            return Clash(on_conflict, _why_local_is_not_ours(record))
    if "error" in info:
        return Unreadable(f"the server cannot read it ({info['error']}): not mirrored")
    shape = info.get("shape")
    if transformed or not intact or record is None or record.shape is None or not shape:
        return Download()
    old_rows, new_rows = record.shape[0], int(shape[0])
    grew = tuple(shape[1:]) == record.shape[1:] and new_rows > old_rows
    return Extend(old_rows, new_rows) if grew and name.endswith(".b2nd") else Download()


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove the mirror file (or, when it is already gone, just forget it)."""


@dataclass(frozen=True, slots=True)
class KeepChanged:
    """The mirror file changed locally since this rule wrote it: keep it."""


def _same_remote(record: Mirrored, etag: str | None, info: Mapping[str, Any]) -> bool:
    """Whether the remote is the version ``record`` last saw: by ETag, or by the
    server's mtime for entries that have no ETag (HDF5 files)."""
    if etag is not None:
        return record.etag == etag
    return record.mtime is not None and record.mtime == info.get("mtime")


def _why_local_is_not_ours(record: Mirrored | None) -> str:
    if record is None:
        return "a local file of that name was there before cat2sync mirrored it"
    if not record.ours:
        return "the local file is not cat2sync's (kept through an earlier conflict)"
    return "the local file changed since cat2sync wrote it, and the remote changed too"


def decide_deletion(record: Mirrored, local: LocalCopy | None) -> Delete | KeepChanged:
    """Whether a mirror file whose remote vanished may be removed: never one that is not
    cat2sync's (a conflicted file) or that changed locally since it wrote it."""
    if local is not None and (not record.ours or not local.is_intact(record)):
        return KeepChanged()
    return Delete()
