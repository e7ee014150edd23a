"""Deciding what to do, with no I/O: the pure middle of march -> plan -> execute.

The engines march (scan the local folder, read the state store's records, list the
remote folder, ask for an entry's ``info``) and hand the evidence here; what comes back
is a decision, or a plan of decisions, each carrying the evidence it was taken on. The
engines then only execute. Nothing here imports the client or the state store, so a
table test can drive every decision without a server.

Upload side: :func:`plan_upload_pass` (a full pass: send, move, remove or refuse),
:func:`decide_file` (one file the watcher saw), :func:`rows_to_append` and
:func:`append_resume` (grow a remote array by its new rows only).
Mirror side: :func:`plan_listing` (a pass over a remote listing) and
:func:`decide_entry` (one entry, once its ``info`` is known), :func:`decide_deletion`.
Both sides: :func:`deletion_refusal`, the one deletion cap.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final

from ..records import Mirrored, Shipped
from .localtree import TEMP_PREFIX
from .names import collision_key

if TYPE_CHECKING:
    from .arrays import Layout

__all__ = [
    "MIRROR",
    "UPLOAD",
    "AppendFrom",
    "Delete",
    "Download",
    "Entry",
    "Extend",
    "KeepChanged",
    "LocalCopy",
    "LocalFile",
    "MirrorPlan",
    "Move",
    "Removal",
    "Send",
    "Side",
    "Unchanged",
    "Unreadable",
    "UploadPlan",
    "VerifyThenAppend",
    "append_resume",
    "decide_deletion",
    "decide_entry",
    "decide_file",
    "deletion_refusal",
    "is_own_temporary",
    "plan_listing",
    "plan_upload_pass",
    "remote_path",
    "rows_to_append",
]

#: A whole fetch of these sends the stored file with its ETag (caterva2-rest.md §6.3).
FETCHED_WHOLE: Final = frozenset({".b2nd", ".b2frame"})


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


def _is_folder_to_server(remote: str) -> bool:
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
    cap = max(1, int(max_delete * known))
    if vanished > cap:
        return (
            f"{vanished} of {known} {side.did} files vanished from {side.source}, more than "
            f"max_delete allows ({cap}): {side.kept}"
        )
    return None


# -- upload: a full pass -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``file``: it is new (``record`` None) or not the version shipped."""

    file: LocalFile
    record: Shipped | None


@dataclass(frozen=True, slots=True)
class Move:
    """``to`` is ``record``'s file under a new name (same inode, size and mtime, and the
    old name is gone): move the remote copy instead of sending it again."""

    record: Shipped
    to: LocalFile
    remote: str


@dataclass(frozen=True, slots=True)
class Removal:
    """``record``'s file is gone from the local folder: remove its remote copy."""

    record: Shipped


@dataclass(frozen=True, slots=True)
class UploadPlan:
    send: tuple[Send, ...] = ()
    moves: tuple[Move, ...] = ()
    removals: tuple[Removal, ...] = ()
    refusal: str | None = None  # why nothing, or no deletion, happens


def plan_upload_pass(
    *,
    remote_folder: str,
    local: Mapping[str, LocalFile] | None,
    records: Mapping[str, Shipped],
    converted: Collection[str] = (),
    delete: bool = False,
    max_delete: float = 0.5,
    folder: str = "",
) -> UploadPlan:
    """What a full pass of an upload rule does.

    :param local: the files the rule syncs, by relative path; None when the local
        folder is missing (then nothing at all happens).
    :param records: the state store's ``shipped`` records of the rule.
    :param converted: suffixes a plugin converts to ``.b2nd`` on the way.
    :param folder: the local folder, for the refusal message.
    """
    if local is None:
        return UploadPlan(
            refusal=f"local folder {folder} is missing (unmounted?): nothing sent, "
            "no remote file removed"
        )
    moves: list[Move] = []
    send: list[Send] = []
    claimed: set[str] = set()  # records already moved to a new name
    for relpath, file in local.items():
        rec = records.get(relpath)
        if rec is not None:
            if not file.is_version_of(rec):
                send.append(Send(file, rec))
            continue
        twin = _renamed_from(file, records.values(), present=local.keys(), claimed=claimed)
        remote = remote_path(remote_folder, relpath, converted)
        if twin is not None and not _is_folder_to_server(remote):
            claimed.add(twin.relpath)
            moves.append(Move(twin, file, remote))
        else:
            send.append(Send(file, None))
    vanished = [r for p, r in records.items() if p not in local and p not in claimed]
    if not delete or not vanished:
        return UploadPlan(send=tuple(send), moves=tuple(moves))
    refusal = deletion_refusal(
        UPLOAD,
        known=len(records),
        vanished=len(vanished),
        remaining=len(local),
        max_delete=max_delete,
    )
    removals = () if refusal else tuple(Removal(r) for r in vanished)
    return UploadPlan(send=tuple(send), moves=tuple(moves), removals=removals, refusal=refusal)


def _renamed_from(
    file: LocalFile,
    records: Iterable[Shipped],
    *,
    present: Collection[str],
    claimed: Collection[str] = (),
) -> Shipped | None:
    """The shipped record ``file`` is a rename of: same inode, size and mtime, and its
    old name gone (a hard link, or an old name that came back, is not a rename)."""
    for rec in records:
        if (
            rec.relpath != file.relpath
            and rec.relpath not in present
            and rec.relpath not in claimed
            and file.is_same_inode(rec)
            and file.is_version_of(rec)
        ):
            return rec
    return None


# -- upload: one file --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unchanged:
    """Nothing to do: the remote copy (or the mirror file) is this version already."""


def decide_file(
    file: LocalFile,
    record: Shipped | None,
    *,
    twins: Sequence[Shipped],
    present: Collection[str],
    remote: str,
) -> Unchanged | Move | Send:
    """What to do with one file the watcher saw.

    :param twins: records of the rule with the file's inode (rename candidates).
    :param present: which of the twins' old names still exist locally.
    :param remote: where the file goes.
    """
    if record is not None:
        return Unchanged() if file.is_version_of(record) else Send(file, record)
    twin = _renamed_from(file, twins, present=present)
    if twin is not None and not _is_folder_to_server(remote):
        return Move(twin, file, remote)
    return Send(file, None)


def rows_to_append(record: Shipped, layout: Layout, prefix: Layout | None = None) -> int | None:
    """Rows already sent, when the array only grew since ``record``: same dtype, chunk
    shape and trailing shape, more rows, and (given ``prefix``, the layout of the first
    ``record.shape[0]`` rows now) the same first rows; None when a whole upload is
    needed. Call it without ``prefix`` first: the prefix costs a read of the file.
    """
    if record.kind != "array" or record.shape is None:
        return None
    sent = record.shape[0]
    grew = (
        layout.dtype == record.dtype
        and layout.chunks == record.chunks
        and layout.shape[1:] == record.shape[1:]
        and layout.shape[0] > sent
    )
    if not grew:
        return None
    if prefix is not None and (prefix.digests, prefix.tail_digest) != (
        record.digests,
        record.tail_digest,
    ):
        return None  # earlier rows changed: only a whole upload is right
    return sent


@dataclass(frozen=True, slots=True)
class AppendFrom:
    """The server holds exactly ``cursor`` rows of ours: append from there."""

    cursor: int


@dataclass(frozen=True, slots=True)
class VerifyThenAppend:
    """The server holds ``have`` rows, more than recorded (a lost answer, or a crash
    after the request): rows ``sent:have`` must equal ours before appending from
    ``have``; otherwise the whole file is sent."""

    sent: int
    have: int


def append_resume(
    remote_shape: Sequence[int] | None,
    *,
    sent: int,
    total: int,
    trailing: Sequence[int] | None,
) -> AppendFrom | VerifyThenAppend | None:
    """Where appending resumes, from the remote array's shape (the server's append is
    not idempotent, so its shape is the cursor); None when the server no longer holds
    our prefix, and a whole upload is needed.

    :param remote_shape: the remote array's shape, None when it is missing.
    :param trailing: the trailing shape the remote must have (None: transforms decide).
    """
    if not remote_shape:
        return None
    if trailing is not None and tuple(remote_shape[1:]) != tuple(trailing):
        return None
    have = int(remote_shape[0])
    if have == sent:
        return AppendFrom(have)
    if sent < have <= total:
        return VerifyThenAppend(sent, have)
    return None


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
    :param fetch_whole: whether a new dataset may be fetched whole (not when the rule
        transforms what it writes).
    """
    chosen, skipped = _resolve_names(targets, known=records.keys())
    entries = tuple(
        Entry(name, target, fetch_whole and name not in records and _fetchable(name))
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
) -> Unchanged | Unreadable | Extend | Download:
    """What to do with one listed entry, once its ``info`` (and ETag) is known.

    :param local: the mirror file as it is now; None when it is missing.
    :param transformed: the rule transforms what it writes, so the local file is not
        the server's and cannot grow by the server's chunks.
    """
    intact = record is not None and local is not None and local.is_intact(record)
    if record is not None and etag is not None and record.etag == etag and intact:
        return Unchanged()
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


def decide_deletion(record: Mirrored, local: LocalCopy | None) -> Delete | KeepChanged:
    """Whether a mirror file whose remote vanished may be removed."""
    if local is not None and not local.is_intact(record):
        return KeepChanged()
    return Delete()
