"""Reading the journals of a remote folder, for a subscription.

One ``list`` of ``<folder>/.cat2sync/`` and, per writer, one ``fetch`` of the bytes
after the last line read (that line included, to prove it is still there): a pass
that finds no change costs 1 + (writers) requests, whatever the number of files. A
writer that started a new segment since costs one request more per new segment.
Anything the reader cannot trust makes it answer :class:`FullPass`, with the reason
in one line and the positions to resume from once that full pass is done.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..client import Client
from ..errors import BadRequest, NotFound, ServerError
from ._changes import Change, coalesce
from ._format import (
    FORMAT_VERSION,
    JOURNAL_FOLDER,
    MAX_LINE,
    Parsed,
    Position,
    Read,
    Untrusted,
    last_line,
    parse_segment,
    parse_since,
    segment_name,
    split_segment_name,
)

__all__ = ["FullPass", "Incremental", "JournalReader", "NoJournal"]

#: How much of a segment's end a reader that never read it fetches to find its last line.
_SNAPSHOT_BYTES = 4 * MAX_LINE


@dataclass(frozen=True, slots=True)
class Incremental:
    """The journals were read: apply ``changes``, then save ``positions``."""

    changes: tuple[Change, ...]
    positions: dict[str, Position]
    reads: Mapping[str, tuple[Read, ...]]  # the new entries of each writer's journal

    def positions_keeping(self, failed: Collection[str]) -> dict[str, Position]:
        """The positions to save when the changes of the ``failed`` names could not be
        applied: each journal resumes at its first entry about one of them (the entries
        after it are read again, and apply nothing twice: their ETags match)."""
        kept = dict(self.positions)
        for writer, reads in self.reads.items():
            first = next((r for r in reads if set(r.entry.names()) & set(failed)), None)
            if first is not None:
                kept[writer] = first.before
        return kept


@dataclass(frozen=True, slots=True)
class FullPass:
    """The journals cannot say what changed (``reason``, one line): do a full pass,
    then save ``positions`` (taken before it, so nothing written meanwhile is lost)."""

    reason: str
    positions: dict[str, Position]


@dataclass(frozen=True, slots=True)
class NoJournal:
    """The folder has no journal: it is mirrored by full passes, as without journals."""


@dataclass(frozen=True, slots=True)
class _Journal:
    writer: str
    segments: tuple[int, ...]  # ascending


class JournalReader:
    """The journals of one remote ``folder``, read for one subscription.

    The reader keeps nothing: the subscription saves the positions it returns (see
    :func:`~cat2sync.journal.dump_positions`) and gives them back at the next pass.
    """

    def __init__(self, client: Client, folder: str) -> None:
        self.client = client
        self.folder = folder.strip("/")
        self.journal_folder = f"{self.folder}/{JOURNAL_FOLDER}"

    def read(self, positions: Mapping[str, Position]) -> Incremental | FullPass | NoJournal:
        """What changed since ``positions`` (by writer id; empty at the first pass).

        :raises RemoteError: the server could not be asked (the pass fails as a whole).
        """
        journals, newer = self._journals(self.client.get_list(self.journal_folder))
        if newer:
            return FullPass(f"journal {newer} has a format newer than this cat2sync reads", {})
        if not journals and not positions:
            return NoJournal()
        problems = [f"journal {w} is gone" for w in sorted(positions.keys() - journals.keys())]
        reads: dict[str, tuple[Read, ...]] = {}
        resume: dict[str, Position] = {}
        for journal in journals.values():
            since = positions.get(journal.writer)
            followed = (
                self._follow(journal, since)
                if since is not None
                else Untrusted("read for the first time")
            )
            if isinstance(followed, Untrusted):
                start = self._snapshot(journal)
                problem = f"journal {journal.writer}: {followed.reason}"
                if isinstance(start, Untrusted):
                    problem += f", and it cannot be followed from its end: {start.reason}"
                else:
                    resume[journal.writer] = start
                problems.append(problem)
                continue
            reads[journal.writer], resume[journal.writer] = followed
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return FullPass(problems[0] + more, resume)
        changes = coalesce({w: [r.entry for r in rs] for w, rs in reads.items()})
        return Incremental(changes, resume, reads)

    def _journals(self, listing: Iterable[str]) -> tuple[dict[str, _Journal], str | None]:
        """The journals listed, by writer; and a journal of a newer format, if any."""
        segments: dict[str, list[int]] = {}
        for name in listing:
            parts = split_segment_name(name)
            if parts is None:
                continue  # a temporary, or not ours: never read
            version, writer, number = parts
            if version > FORMAT_VERSION:
                return {}, name
            if version == FORMAT_VERSION:
                segments.setdefault(writer, []).append(number)
        return {w: _Journal(w, tuple(sorted(s))) for w, s in segments.items()}, None

    def _path(self, writer: str, segment: int) -> str:
        return f"{self.journal_folder}/{segment_name(writer, segment)}"

    def _follow(
        self, journal: _Journal, since: Position
    ) -> tuple[tuple[Read, ...], Position] | Untrusted:
        """The entries after ``since``, through every later segment, and where they end."""
        if since.segment not in journal.segments:
            if since.segment < journal.segments[0]:
                return Untrusted(f"segment {since.segment} was removed before it was read out")
            return Untrusted(f"segment {since.segment} is gone (moved back?)")
        later = [s for s in journal.segments if s > since.segment]
        if later != list(range(since.segment + 1, since.segment + 1 + len(later))):
            return Untrusted("a segment is missing between the ones listed")
        data = self._fetch(journal.writer, since.segment, since.offset - since.tail)
        parsed = data if isinstance(data, Untrusted) else parse_since(data, since)
        reads: list[Read] = []
        for segment in later:
            if isinstance(parsed, Untrusted):
                return parsed
            if not parsed.complete:
                return Untrusted(f"segment {parsed.end.segment} ends in a partial line")
            reads.extend(parsed.reads)
            parsed = self._whole(journal.writer, segment, parsed.end.seq)
        if isinstance(parsed, Untrusted):
            return parsed
        return (*reads, *parsed.reads), parsed.end

    def _whole(self, writer: str, segment: int, seq: int | None) -> Parsed | Untrusted:
        data = self._fetch(writer, segment, 0)
        if isinstance(data, Untrusted):
            return data
        return parse_segment(data, writer=writer, segment=segment, folder=self.folder, seq=seq)

    def _snapshot(self, journal: _Journal) -> Position | Untrusted:
        """Where a reader starts in a journal it cannot follow: after the last line of
        the newest segment (what is there now is covered by the full pass to come)."""
        segment = journal.segments[-1]
        try:
            info, _ = self.client.stat(self._path(journal.writer, segment))
        except NotFound:
            return Untrusted("it vanished while being read")
        except (BadRequest, ServerError) as exc:
            return Untrusted(f"the server cannot read segment {segment} ({exc})")
        shape = info.get("shape")
        if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int)):
            return Untrusted("it is not a journal (not a 1-D array)")
        if shape[0] <= _SNAPSHOT_BYTES:  # small: read whole, header included
            whole = self._whole(journal.writer, segment, None)
            return whole if isinstance(whole, Untrusted) else whole.end
        start = shape[0] - _SNAPSHOT_BYTES
        data = self._fetch(journal.writer, segment, start, shape[0])
        return (
            data if isinstance(data, Untrusted) else last_line(data, start=start, segment=segment)
        )

    def _fetch(
        self, writer: str, segment: int, start: int, stop: int | None = None
    ) -> bytes | Untrusted:
        """Bytes ``start:stop`` of a segment, in one request."""
        try:
            got = self.client.get_slice(
                self._path(writer, segment), slice(start, stop), as_blosc2=False
            )
        except NotFound:
            return Untrusted(f"segment {segment} vanished while being read")
        except (BadRequest, ServerError) as exc:
            return Untrusted(f"the server cannot read segment {segment} ({exc})")
        except (ValueError, RuntimeError, KeyError) as exc:  # blosc2, on an undecodable body
            return Untrusted(f"segment {segment} came back undecodable ({exc})")
        if not isinstance(got, np.ndarray) or got.dtype != np.uint8 or got.ndim != 1:
            return Untrusted(f"segment {segment} is not a journal (not a 1-D uint8 array)")
        return got.tobytes()
