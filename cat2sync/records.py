"""The records the state store keeps: plain frozen values, shared by the planner (which
decides from them) and the state store (which persists them). No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Conflict", "Intent", "Mirrored", "Pending", "RuleStatus", "Shipped", "Total"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Shipped:
    """A local file as last sent to the server."""

    rule: str
    relpath: str
    remote: str
    kind: str  # "array" (a .b2nd sent so that it can grow by appends) or "file"
    size: int
    mtime_ns: int
    dev: int = 0
    inode: int = 0
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    chunks: tuple[int, ...] | None = None
    digests: tuple[str, ...] | None = None  # one per complete row of chunks
    tail_digest: str | None = None  # the rows after the last complete row of chunks
    etag: str | None = None  # the remote's ETag right after this version was written
    #: The remote is another writer's and this version was not sent (a conflict the rule
    #: skips): it is never moved, appended to or removed.
    theirs: bool = False
    freed: float | None = None  # when the local file was removed, verified on the server


@dataclass(frozen=True, slots=True, kw_only=True)
class Mirrored:
    """A remote entry as last written to the local mirror."""

    rule: str
    remote_rel: str
    etag: str | None
    mtime: str | None
    shape: tuple[int, ...] | None
    nchunks: int | None
    size: int  # local file size after writing
    mtime_ns: int  # local file mtime after writing
    #: Whether the local file at the name is cat2sync's: False for one that was there
    #: before the first pass, or kept through a conflict.
    ours: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Intent:
    """A request that may half-happen, written down before it is sent: an ``append`` of
    rows ``start_row:stop_row``, or an ``upload`` to the temporary name ``remote`` (and
    its ``move`` into place)."""

    id: int
    rule: str
    relpath: str
    op: str  # "append", "upload" (the temporary is being written) or "move" (moved next)
    remote: str
    start_row: int | None
    stop_row: int | None
    created: float
    dest: str | None = None  # where a "move" takes the temporary


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """A file noticed and not shipped yet; after a failure, when it is tried next."""

    rule: str
    relpath: str
    since: float
    attempts: int
    next_attempt: float  # 0: as soon as it settles
    last_error: str | None
    remedy: str | None  # what the last error asks for (a ``Remedy`` value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Conflict:
    """Two writers disagreed about a file, and what the rule did about it."""

    rule: str
    side: str  # "upload" or "mirror"
    path: str  # the local file, relative to the rule's folder
    remote: str
    action: str  # the rule's on_conflict: "keep-both", "skip" or "overwrite"
    copy: str | None  # where the other version went (keep-both), if anywhere
    reason: str
    created: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Total:
    """Files and bytes of one kind of event of a rule, since the state folder was made."""

    rule: str
    kind: str  # an EventKind value
    files: int
    bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleStatus:
    """A rule's last pass (``last_success``: the last one that went without error) and
    its pending files."""

    rule: str
    last_started: float | None = None
    last_finished: float | None = None
    last_error: str | None = None
    last_success: float | None = None
    files: int = 0
    bytes: int = 0
    pending: list[Pending] = field(default_factory=list)
