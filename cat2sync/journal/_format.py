"""The journal's bytes: framing, entries, headers, positions, and their validation.

Pure: nothing here does I/O. A journal segment is a byte string of lines, each
``<crc32 of the JSON, 8 hex digits> <JSON>\\n``; the first line is the segment's
:class:`Header`, every other line one :class:`Entry` with its ``seq``. The package
docstring (:mod:`cat2sync.journal`) describes the format for people; this module is its
one implementation. Whatever a server returns is untrusted: every decoder returns a
value or :class:`Untrusted` with a one-line reason, never raises on bad bytes.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Final, TypeGuard

from ..engine.localtree import TEMP_PREFIX
from ..engine.names import _clean_parts as clean_parts  # local_target's rules, without its I/O
from ..errors import UnsafeName

__all__ = [
    "FORMAT_VERSION",
    "JOURNAL_FOLDER",
    "MAX_LINE",
    "SEGMENT_BYTES",
    "Entry",
    "Header",
    "Op",
    "Parsed",
    "Position",
    "Read",
    "Untrusted",
    "check_name",
    "dump_positions",
    "encode_body",
    "encode_entry",
    "encode_header",
    "entry_info",
    "is_journal_name",
    "last_line",
    "load_positions",
    "parse_segment",
    "parse_since",
    "segment_name",
    "split_segment_name",
]

#: The version this code writes and the newest it reads.
FORMAT_VERSION: Final = 1
#: The folder, directly inside the rule's remote folder, that holds the journals.
JOURNAL_FOLDER: Final = ".cat2sync"
#: The ``kind`` of a header: a file without it is not a cat2sync journal.
KIND: Final = "cat2sync-journal"
#: The longest line a writer writes (and a reader accepts), newline included.
MAX_LINE: Final = 16 * 1024
#: A writer starts a new segment once the current one would grow past this.
SEGMENT_BYTES: Final = 4 * 2**20

_CRC_DIGITS = 8
_SEGMENT_RE = re.compile(r"j([0-9]{1,4})-([0-9a-f]{16})-([0-9]{6,9})\.b2nd")
_WRITER_RE = re.compile(r"[0-9a-f]{16}")


class Op(StrEnum):
    """What an entry says happened to a name."""

    SENT = "sent"  # uploaded whole: new, or replacing what was there
    APPENDED = "appended"  # rows added along the first axis
    MOVED = "moved"  # moved from ``src`` (a move keeps the ETag)
    REMOVED = "removed"
    CONFLICT_COPY = "conflict-copy"  # another writer's version, kept under a new name (``of``)
    CHECK = "check"  # may have changed (a writer killed mid-change): ask the server


@dataclass(frozen=True, slots=True)
class Untrusted:
    """The journal cannot be trusted: a full pass is needed, for this one-line reason."""

    reason: str


# -- names -------------------------------------------------------------------------


def is_journal_name(name: str) -> bool:
    """Whether a listed name is a journal's (any path component is ``.cat2sync``):
    never mirrored, never counted as vanished, never shown to plugins."""
    return JOURNAL_FOLDER in name.split("/")


def check_name(name: str) -> str | None:
    """Why ``name`` may not appear in an entry (None when it may): the mirror's own
    rules for a remote name (nothing absolute, no ``..``, no control characters, no
    overlong component), and never a journal or a cat2sync temporary."""
    try:
        clean_parts(name)
    except UnsafeName as exc:
        return f"unsafe name {name!r}: {exc}"
    if is_journal_name(name):
        return f"names a journal file: {name!r}"
    if PurePosixPath(name).name.startswith(TEMP_PREFIX):
        return f"names a cat2sync temporary: {name!r}"
    return None


def segment_name(writer: str, segment: int) -> str:
    """The file name of ``writer``'s segment number ``segment``; the format version
    is in the name, so a reader knows it from the listing alone."""
    return f"j{FORMAT_VERSION}-{writer}-{segment:06d}.b2nd"


def split_segment_name(name: str) -> tuple[int, str, int] | None:
    """``(version, writer, segment)`` for a journal file name, None for any other."""
    match = _SEGMENT_RE.fullmatch(name)
    if match is None:
        return None
    return int(match.group(1)), match.group(2), int(match.group(3))


# -- the info an entry carries -----------------------------------------------------

_ARRAY_KEYS: Final = ("shape", "chunks", "blocks")
_SCHUNK_KEYS: Final = ("nbytes", "cbytes", "nchunks")
_GROUP_KEYS: Final = ("size", "nfiles")


def entry_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a server ``info`` answer that a mirror needs, in the same shape.

    An array keeps ``shape``, ``chunks``, ``blocks``, ``dtype``, ``mtime`` and
    ``schunk.{nbytes, cbytes, nchunks}``; a stored file (SChunk) its top-level
    ``nbytes``, ``cbytes``, ``nchunks`` and ``mtime``; a group (``.h5``, ``.b2z``) its
    ``kind``, ``size``, ``nfiles`` and ``mtime``; an ``error`` is kept as is. The rest
    (``cparams``, ``vlmeta``, the server's own ``urlpath``) stays out of the journal.
    """
    out: dict[str, Any] = {k: info[k] for k in ("mtime", "error", "kind") if k in info}
    if "shape" in info:
        out.update({k: info[k] for k in (*_ARRAY_KEYS, "dtype") if k in info})
        schunk = info.get("schunk")
        if isinstance(schunk, Mapping):
            out["schunk"] = {k: schunk[k] for k in _SCHUNK_KEYS if k in schunk}
    else:
        out.update({k: info[k] for k in (*_SCHUNK_KEYS, *_GROUP_KEYS) if k in info})
    return out


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_counts(value: Any) -> bool:
    return isinstance(value, list) and len(value) <= 32 and all(_is_count(v) for v in value)


def _info_problem(info: Any) -> str | None:
    """Why an entry's ``info`` is malformed, or None."""
    if not isinstance(info, dict):
        return "info is not an object"
    for key in _ARRAY_KEYS:
        if key in info and not _is_counts(info[key]):
            return f"info.{key} is not a list of counts"
    for key in (*_SCHUNK_KEYS, *_GROUP_KEYS):
        if key in info and not _is_count(info[key]):
            return f"info.{key} is not a count"
    for key in ("dtype", "mtime", "error", "kind"):
        if key in info and not isinstance(info[key], str):
            return f"info.{key} is not a string"
    schunk = info.get("schunk", {})
    if not isinstance(schunk, dict) or not all(
        _is_count(schunk[k]) for k in _SCHUNK_KEYS if k in schunk
    ):
        return "info.schunk is malformed"
    return None


# -- entries and headers -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One change a writer made in its remote folder, written after it became visible.

    Names are relative to the rule's remote folder, as the server lists them. Build
    entries with the class methods; ``info`` and ``etag`` are what the writer learned
    from the server right after its change (``client.stat``), so a subscriber can skip
    its own ``info``; both are optional (a subscriber then asks the server).
    """

    op: Op
    name: str
    src: str | None = None  # MOVED: the old name
    of: str | None = None  # CONFLICT_COPY: the name this is a copy of
    rows: tuple[int, int] | None = None  # APPENDED: rows before and after
    etag: str | None = None
    info: Mapping[str, Any] | None = None  # as :func:`entry_info` keeps it
    at: float = 0.0  # the writer's clock when the change was recorded (for people)

    @classmethod
    def sent(
        cls, name: str, *, info: Mapping[str, Any] | None = None, etag: str | None = None
    ) -> Entry:
        return cls(op=Op.SENT, name=name, etag=etag, info=_kept(info))

    @classmethod
    def appended(
        cls,
        name: str,
        rows: tuple[int, int],
        *,
        info: Mapping[str, Any] | None = None,
        etag: str | None = None,
    ) -> Entry:
        return cls(op=Op.APPENDED, name=name, rows=rows, etag=etag, info=_kept(info))

    @classmethod
    def moved(
        cls,
        src: str,
        name: str,
        *,
        info: Mapping[str, Any] | None = None,
        etag: str | None = None,
    ) -> Entry:
        return cls(op=Op.MOVED, name=name, src=src, etag=etag, info=_kept(info))

    @classmethod
    def removed(cls, name: str) -> Entry:
        return cls(op=Op.REMOVED, name=name)

    @classmethod
    def conflict_copy(
        cls,
        name: str,
        of: str,
        *,
        info: Mapping[str, Any] | None = None,
        etag: str | None = None,
    ) -> Entry:
        return cls(op=Op.CONFLICT_COPY, name=name, of=of, etag=etag, info=_kept(info))

    @classmethod
    def check(cls, name: str) -> Entry:
        return cls(op=Op.CHECK, name=name)

    def names(self) -> tuple[str, ...]:
        """The names this entry is about (a move: both)."""
        return (self.name,) if self.src is None else (self.src, self.name)

    def stamped(self, at: float) -> Entry:
        return replace(self, at=at)

    def body(self) -> dict[str, Any]:
        """The entry as its JSON object, without ``seq``."""
        out: dict[str, Any] = {"op": self.op.value, "name": self.name, "at": round(self.at, 3)}
        optional = {"src": self.src, "of": self.of, "etag": self.etag, "info": self.info}
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.rows is not None:
            out["rows"] = list(self.rows)
        return out


def _kept(info: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if info is None else entry_info(info)


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """The first line of every segment."""

    writer: str  # 16 hex digits, random, kept in the writer's state folder
    segment: int  # 1, 2, ...: also in the file name
    epoch: str  # random per segment file: a rewritten segment has another one
    seq: int  # the seq of the first entry after this header
    folder: str  # the remote folder the journal describes
    created: float
    version: int = FORMAT_VERSION

    def body(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "v": self.version,
            "writer": self.writer,
            "segment": self.segment,
            "epoch": self.epoch,
            "seq": self.seq,
            "folder": self.folder,
            "created": round(self.created, 3),
        }


# -- framing -----------------------------------------------------------------------


def _frame(obj: Mapping[str, Any]) -> bytes:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()
    line = b"%0*x %s\n" % (_CRC_DIGITS, zlib.crc32(body), body)
    if len(line) > MAX_LINE:
        raise ValueError(f"a journal line of {len(line)} bytes is longer than {MAX_LINE}")
    return line


def encode_entry(entry: Entry, seq: int) -> bytes:
    """The line of ``entry`` as entry number ``seq``.

    :raises ValueError: the entry names an unsafe path, or does not fit in a line.
    """
    for name in entry.names():
        problem = check_name(name)
        if problem:
            raise ValueError(problem)
    return encode_body(entry.body(), seq)


def encode_body(body: Mapping[str, Any], seq: int) -> bytes:
    """The line of an entry kept as its :meth:`Entry.body` (checked when it was made)."""
    return _frame({**body, "seq": seq})


def encode_header(header: Header) -> bytes:
    return _frame(header.body())


def _unframe(line: bytes) -> dict[str, Any] | str:
    """The JSON object of one line (newline stripped), or why it is not one."""
    if len(line) < _CRC_DIGITS + 3 or line[_CRC_DIGITS : _CRC_DIGITS + 1] != b" ":
        return "a line without a checksum"
    crc, body = line[:_CRC_DIGITS], line[_CRC_DIGITS + 1 :]
    try:
        if int(crc, 16) != zlib.crc32(body):
            return "a line whose checksum does not match"
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "a line that is not JSON"
    return obj if isinstance(obj, dict) else "a line that is not a JSON object"


def _is_seq(value: Any) -> TypeGuard[int]:
    return _is_count(value) and value >= 1


def _header_of(obj: dict[str, Any]) -> Header | str:
    if obj.get("kind") != KIND:
        return "its first line is not a cat2sync journal header"
    version = obj.get("v")
    if not _is_seq(version):
        return "its header has no format version"
    if version > FORMAT_VERSION:
        return f"format version {version} is newer than this cat2sync reads ({FORMAT_VERSION})"
    writer, folder, epoch = obj.get("writer"), obj.get("folder"), obj.get("epoch")
    segment, seq, created = obj.get("segment"), obj.get("seq"), obj.get("created")
    if not (isinstance(writer, str) and _WRITER_RE.fullmatch(writer)):
        return "its header names no valid writer"
    if not (isinstance(folder, str) and isinstance(epoch, str) and epoch):
        return "its header has no folder or epoch"
    if not (_is_seq(segment) and _is_seq(seq) and isinstance(created, int | float)):
        return "its header has no valid segment, seq or time"
    return Header(
        writer=writer,
        segment=segment,
        epoch=epoch,
        seq=seq,
        folder=folder,
        created=float(created),
        version=version,
    )


def _entry_of(obj: dict[str, Any]) -> Entry | str:
    """The entry a line holds, or why it is not a valid one."""
    try:
        op = Op(str(obj.get("op")))
    except ValueError:
        return f"an entry with an unknown operation {obj.get('op')!r}"
    name, src, of = obj.get("name"), obj.get("src"), obj.get("of")
    if not isinstance(name, str):
        return "an entry without a name"
    if (op is Op.MOVED) != isinstance(src, str) or (op is Op.CONFLICT_COPY) != isinstance(of, str):
        return f"a {op.value} entry with a wrong src/of"
    for each in (name, src, of):
        problem = each is not None and check_name(each)
        if problem:
            return f"an entry with an {problem}" if problem.startswith("unsafe") else problem
    rows, etag, info, at = obj.get("rows"), obj.get("etag"), obj.get("info"), obj.get("at", 0.0)
    if (op is Op.APPENDED) != (rows is not None):
        return f"a {op.value} entry with a wrong rows"
    if rows is not None and not (_is_counts(rows) and len(rows) == 2 and rows[0] < rows[1]):
        return "an appended entry whose rows are not [before, after]"
    if etag is not None and not isinstance(etag, str):
        return "an entry whose etag is not a string"
    problem = None if info is None else _info_problem(info)
    if problem:
        return f"an entry whose {problem}"
    if not isinstance(at, int | float) or not math.isfinite(at):
        return "an entry whose time is not a number"
    return Entry(
        op=op,
        name=name,
        src=src,
        of=of,
        rows=None if rows is None else (rows[0], rows[1]),
        etag=etag,
        info=info,
        at=float(at),
    )


# -- positions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """How far a reader got in one writer's journal.

    The reader next fetches segment ``segment`` from ``offset - tail``: the last line it
    read comes first and must still be there, byte for byte (its ``crc``), or the
    journal was rewritten, truncated or moved back. ``seq`` is the number the next
    entry must carry.
    """

    segment: int
    offset: int  # bytes of the segment read, up to the end of a line
    tail: int  # length of the last line read
    crc: int  # crc32 of that line
    seq: int

    def to_json(self) -> list[int]:
        return [self.segment, self.offset, self.tail, self.crc, self.seq]

    @classmethod
    def after(cls, segment: int, line_end: int, line: bytes, seq: int) -> Position:
        """The position right after ``line``, which ends at ``line_end``."""
        return cls(segment, line_end, len(line), zlib.crc32(line), seq)


def dump_positions(positions: Mapping[str, Position]) -> str:
    """Positions per writer as JSON text, for the subscriber's state."""
    return json.dumps({w: p.to_json() for w, p in sorted(positions.items())})


def load_positions(text: str | None) -> dict[str, Position]:
    """Positions saved by :func:`dump_positions`; empty (a full pass) when unreadable."""
    try:
        raw = json.loads(text) if text else {}
        return {
            w: Position(*map(int, p))
            for w, p in raw.items()
            if _WRITER_RE.fullmatch(w) and len(p) == 5
        }
    except (ValueError, TypeError, AttributeError):
        return {}


# -- parsing a segment -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Read:
    """An entry as read, with the position just before it (where a reader resumes if
    the entry's change could not be applied)."""

    seq: int
    entry: Entry
    before: Position


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a piece of a segment held: its entries, and where reading ends."""

    reads: tuple[Read, ...]
    end: Position
    complete: bool = True  # False: it ended in a partial line (an append in progress)
    header: Header | None = field(default=None)


def _lines(data: bytes, start: int) -> Iterator[tuple[int, bytes] | str]:
    """``(offset after the line, line with its newline)`` for each complete line of
    ``data`` (which starts at segment offset ``start``); a last partial line yields
    ``"partial"``, one too long to be ours an error."""
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos, pos + MAX_LINE)
        if end < 0:
            yield "partial" if len(data) - pos < MAX_LINE else "a line longer than any entry"
            return
        yield start + end + 1, data[pos : end + 1]
        pos = end + 1


def _parse_lines(data: bytes, begin: Position) -> Parsed | Untrusted:
    """The entries of ``data``, the segment's bytes from ``begin.offset`` on."""
    reads: list[Read] = []
    here = begin
    for item in _lines(data, begin.offset):
        if item == "partial":
            return Parsed(tuple(reads), here, complete=False)
        if isinstance(item, str):
            return Untrusted(f"{item} at byte {here.offset}")
        line_end, line = item
        obj = _unframe(line[:-1])
        entry = obj if isinstance(obj, str) else _entry_of(obj)
        if isinstance(entry, str):
            return Untrusted(f"{entry} at byte {here.offset}")
        assert isinstance(obj, dict)
        if obj.get("seq") != here.seq:
            return Untrusted(f"entry {obj.get('seq')!r} where entry {here.seq} was due")
        reads.append(Read(here.seq, entry, here))
        here = Position.after(here.segment, line_end, line, here.seq + 1)
    return Parsed(tuple(reads), here)


def parse_since(data: bytes, since: Position) -> Parsed | Untrusted:
    """The entries after ``since`` in ``data``, the segment's bytes from
    ``since.offset - since.tail`` on (the last line read, then what is new)."""
    if len(data) < since.tail:
        return Untrusted("it is shorter than when it was last read (truncated or moved back)")
    if zlib.crc32(data[: since.tail]) != since.crc:
        return Untrusted("the last entry read is no longer where it was (rewritten)")
    return _parse_lines(data[since.tail :], since)


def parse_segment(
    data: bytes, *, writer: str, segment: int, folder: str, seq: int | None = None
) -> Parsed | Untrusted:
    """A whole segment from its first byte: its header must name this ``writer``,
    ``segment`` and ``folder``, and continue at entry ``seq`` when given (the entry
    after the previous segment's last)."""
    first = next(_lines(data, 0), "an empty segment")
    if isinstance(first, str):
        return Untrusted(f"its header is {first}" if first == "partial" else first)
    line_end, line = first
    obj = _unframe(line[:-1])
    header = obj if isinstance(obj, str) else _header_of(obj)
    if isinstance(header, str):
        return Untrusted(header)
    if (header.writer, header.segment, header.folder) != (writer, segment, folder):
        return Untrusted("its header names another writer, segment or folder")
    if seq is not None and header.seq != seq:
        return Untrusted(f"it starts at entry {header.seq}, but entry {seq} was due (a gap)")
    parsed = _parse_lines(data[line_end:], Position.after(segment, line_end, line, header.seq))
    return parsed if isinstance(parsed, Untrusted) else replace(parsed, header=header)


def last_line(data: bytes, *, start: int, segment: int) -> Position | Untrusted:
    """The position after the last line of ``data``, a segment's bytes from ``start``
    to its end: where a reader that has never read the journal begins."""
    if not data.endswith(b"\n"):
        return Untrusted("it does not end with a complete line")
    begin = data.rfind(b"\n", 0, len(data) - 1) + 1
    if begin == 0 and start > 0:
        return Untrusted("its last line is longer than any entry")
    line = data[begin:]
    obj = _unframe(line[:-1])
    if isinstance(obj, str):
        return Untrusted(f"its last line is {obj}")
    seq = obj.get("seq")
    if "kind" in obj:  # only a header so far
        header = _header_of(obj)
        if isinstance(header, str):
            return Untrusted(header)
        return Position.after(segment, start + len(data), line, header.seq)
    entry = _entry_of(obj)
    if isinstance(entry, str) or not _is_seq(seq):
        return Untrusted(f"its last line is {entry if isinstance(entry, str) else 'unnumbered'}")
    return Position.after(segment, start + len(data), line, seq + 1)
