"""What the engine reports: one :class:`Event` per thing that happened to a file."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Event", "EventKind", "EventSink", "human_bytes", "printable"]


class EventKind(StrEnum):
    UPLOADED = "uploaded"  # a whole file was sent
    APPENDED = "appended"  # only new rows were sent
    MOVED = "moved"  # a local rename became a server-side move
    REMOVED = "removed"  # a remote file was removed after a local deletion
    DOWNLOADED = "downloaded"  # a mirror file was written
    DELETED = "deleted"  # a mirror file was removed after its remote vanished
    COMPUTED = "computed"  # a lazy expression was (re)computed on the server
    CONFLICT = "conflict"  # another writer's version met ours; both paths in the message
    ADOPTED = "adopted"  # found identical on the other side: recorded, nothing sent
    FREED = "freed"  # a shipped local file was removed, its remote copy verified equal
    SKIPPED = "skipped"  # refused on purpose (unsafe name, deletion cap, broken file)
    FAILED = "failed"  # an attempt failed; it will be retried


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    kind: EventKind
    rule: str
    path: str  # local path, relative to the rule's folder
    remote: str | None = None
    rows: int | None = None  # rows sent or received, for arrays
    bytes: int = 0  # body bytes moved over the network
    message: str | None = None  # why, for skipped and failed events
    seconds: float | None = None  # how long the transfer took

    def describe(self) -> str:
        """One human line."""
        parts = [f"{self.kind.value}: {printable(self.path)}"]
        if self.remote:
            arrow = "->" if self.kind != EventKind.DOWNLOADED else "<-"
            parts.append(f"{arrow} {printable(self.remote)}")
        if self.rows is not None:
            parts.append(f"({self.rows} rows)")
        if self.bytes:
            parts.append(f"[{human_bytes(self.bytes)}]")
        if self.message:
            parts.append(f"— {printable(self.message)}")
        return " ".join(parts)


EventSink = Callable[[Event], None]


def human_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KB'``."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc"  # newline, tab, escape, NUL, DEL...


def printable(text: str) -> str:
    """``text`` with control characters escaped, so that one event stays one log line
    and a file name cannot send escape sequences to a terminal."""
    if not any(_is_control(ch) for ch in text):
        return text
    return "".join(repr(ch)[1:-1] if _is_control(ch) else ch for ch in text)
