"""The upload side's decisions: a full pass, one watched file, growth by rows."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ...manifest import OnConflict
from ...records import Shipped
from ._common import (
    UPLOAD,
    Adopt,
    Clash,
    LocalFile,
    Unchanged,
    deletion_cap,
    deletion_refusal,
    is_folder_to_server,
    remote_path,
)

if TYPE_CHECKING:
    from ..arrays import Layout

__all__ = [
    "ABSENT",
    "AppendFrom",
    "CompareFirst",
    "Free",
    "Move",
    "Proceed",
    "RemoteState",
    "Removal",
    "Send",
    "UploadPlan",
    "VerifyThenAppend",
    "append_resume",
    "decide_file",
    "decide_write",
    "first_contact",
    "plan_freeing",
    "plan_upload_pass",
    "rows_to_append",
]


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
    #: Records of vanished files whose remote is another writer's: forgotten, never
    #: removed remotely.
    forget: tuple[Shipped, ...] = ()
    #: New files whose name the server lists already (first contact): compared before
    #: anything is sent; the same content is adopted.
    compare_first: tuple[Send, ...] = ()


def plan_upload_pass(
    *,
    remote_folder: str,
    local: Mapping[str, LocalFile] | None,
    records: Mapping[str, Shipped],
    converted: Collection[str] = (),
    delete: bool = False,
    max_delete: float = 0.5,
    folder: str = "",
    listed: Collection[str] | None = None,
) -> UploadPlan:
    """What a full pass of an upload rule does.

    :param local: the files the rule syncs, by relative path; None when the local
        folder is missing (then nothing at all happens).
    :param records: the state store's ``shipped`` records of the rule.
    :param converted: suffixes a plugin converts to ``.b2nd`` on the way.
    :param folder: the local folder, for the refusal message.
    :param listed: the remote folder's listing (relative names), when the march has it.
    """
    if local is None:
        return UploadPlan(
            refusal=f"local folder {folder} is missing (unmounted?): nothing sent, "
            "no remote file removed"
        )
    moves: list[Move] = []
    send: list[Send] = []
    first: list[Send] = []
    claimed: set[str] = set()  # records already moved to a new name
    for relpath, file in local.items():
        rec = records.get(relpath)
        if rec is not None:
            if not file.is_version_of(rec):
                send.append(Send(file, rec))
            continue
        twin = _renamed_from(file, records.values(), present=local.keys(), claimed=claimed)
        remote = remote_path(remote_folder, relpath, converted)
        if twin is not None and not is_folder_to_server(remote):
            claimed.add(twin.relpath)
            moves.append(Move(twin, file, remote))
        elif listed is not None and remote[len(remote_folder) + 1 :] in listed:
            first.append(Send(file, None))
        else:
            send.append(Send(file, None))
    gone = [r for p, r in records.items() if p not in local and p not in claimed and not r.freed]
    forget = tuple(r for r in gone if r.theirs)
    vanished = [r for r in gone if not r.theirs]
    if not delete or not vanished:
        return UploadPlan(
            send=tuple(send), moves=tuple(moves), forget=forget, compare_first=tuple(first)
        )
    refusal = deletion_refusal(
        UPLOAD,
        known=len(records),
        vanished=len(vanished),
        remaining=len(local),
        max_delete=max_delete,
    )
    removals = () if refusal else tuple(Removal(r) for r in vanished)
    return UploadPlan(
        send=tuple(send),
        moves=tuple(moves),
        removals=removals,
        refusal=refusal,
        forget=forget,
        compare_first=tuple(first),
    )


def _renamed_from(
    file: LocalFile,
    records: Iterable[Shipped],
    *,
    present: Collection[str],
    claimed: Collection[str] = (),
) -> Shipped | None:
    """The shipped record ``file`` is a rename of: same inode, size and mtime, and its
    old name gone (a hard link, or an old name that came back, is not a rename). Only a
    remote cat2sync owns moves, and a freed file has no local name left to rename."""
    for rec in records:
        if (
            not rec.theirs
            and rec.freed is None
            and rec.relpath != file.relpath
            and rec.relpath not in present
            and rec.relpath not in claimed
            and file.is_same_inode(rec)
            and file.is_version_of(rec)
        ):
            return rec
    return None


# -- upload: one file --------------------------------------------------------------


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
    if twin is not None and not is_folder_to_server(remote):
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


# -- upload: another writer --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteState:
    """The remote file at a name, as an ``info`` saw it just now."""

    exists: bool
    etag: str | None = None


ABSENT: Final = RemoteState(exists=False)


@dataclass(frozen=True, slots=True)
class Proceed:
    """Write as planned: the name is free, or holds what cat2sync last wrote there."""


@dataclass(frozen=True, slots=True)
class CompareFirst:
    """First contact with a remote file of that name: it may be this very file (a lost
    state folder); compare contents before anything is written (see :func:`first_contact`)."""


def decide_write(
    record: Shipped | None, remote: RemoteState, on_conflict: OnConflict
) -> Proceed | CompareFirst | Clash:
    """Whether cat2sync may write over what the remote name holds now.

    The server has no conditional writes, so this is decided from the ETag an ``info``
    returned just before the write and the one recorded right after cat2sync's last
    write there. A record without an ETag (an older state folder, an older server)
    proves nothing either way and is trusted, as before.
    """
    if on_conflict == "overwrite" or not remote.exists:
        return Proceed()
    if record is None:
        return CompareFirst()
    if record.theirs:
        return Clash(on_conflict, "the remote is still another writer's version")
    if record.etag is None or remote.etag is None or remote.etag == record.etag:
        return Proceed()
    return Clash(on_conflict, "the remote was changed by another writer since cat2sync wrote it")


def first_contact(identical: bool, on_conflict: OnConflict) -> Adopt | Clash:
    """After comparing a local file with the remote file that was there first."""
    if identical:
        return Adopt()
    return Clash(on_conflict, "the server already holds a different file of that name")


# -- upload: freeing local space ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Free:
    """``file`` was shipped as ``record`` and has not changed for long enough: once the
    server's copy is verified equal to it, the local file may go."""

    record: Shipped
    file: LocalFile


def plan_freeing(
    *,
    local: Mapping[str, LocalFile],
    records: Mapping[str, Shipped],
    pending: Collection[str],
    remote_folder: str,
    converted: Collection[str] = (),
    now_ns: int,
    after: float,
    max_delete: float,
) -> tuple[Free, ...]:
    """The local files a pass may free (``delete_local_after``), at most the deletion
    cap of them; the rest wait for the next pass.

    Never a pending or failed file, one modified since it was shipped, nor a conflicted
    one (its remote is another writer's, or its version went to a conflict copy).
    """
    cutoff = now_ns - int(after * 1e9)
    due = []
    for relpath, rec in records.items():
        file = local.get(relpath)
        if (
            file is not None
            and file.is_version_of(rec)
            and file.mtime_ns <= cutoff
            and not rec.theirs
            and relpath not in pending
            and rec.remote == remote_path(remote_folder, relpath, converted)
        ):
            due.append(Free(rec, file))
    return tuple(due[: deletion_cap(len(records), max_delete)])
