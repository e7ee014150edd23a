"""Writing an upload rule's journal: entries batched into one ``append`` per flush.

The contract with the engine (see :class:`JournalWriter`): announce a remote change
before making it (:meth:`JournalWriter.change`), record its entry once the change is
visible under its final name, and let the writer flush. Everything is kept in the
state folder (:class:`WriterState`) until it is on the server, so a writer killed at
any moment repairs its journal at the next start: entries recorded but not appended
are appended, and a change announced but never recorded becomes a ``check`` entry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Protocol

import blosc2
import numpy as np

from ..client import Client
from ..engine.localtree import TEMP_PREFIX
from ..errors import BadRequest, Cat2Error, NotFound, RemoteError, ServerError
from ._format import (
    JOURNAL_FOLDER,
    SEGMENT_BYTES,
    Entry,
    Header,
    Parsed,
    Position,
    Untrusted,
    check_name,
    encode_body,
    encode_entry,
    encode_header,
    parse_segment,
    parse_since,
    segment_name,
    split_segment_name,
)

__all__ = ["JournalWriter", "PendingChange", "PendingRow", "WriterState"]

log = logging.getLogger(__name__)

#: At most this many bytes of lines go into one append.
MAX_BATCH = 2**20
# The journal array's layout: appends rewrite the last chunk only, so chunks stay small.
_CHUNKS, _BLOCKS = (65536,), (8192,)
_RETRY_MAX = 60.0


class PendingRow(NamedTuple):
    """A change kept in the writer's state until its entry is on the server."""

    row: int
    names: tuple[str, ...]
    entry: str | None  # the entry's JSON body; None while the change is under way


class WriterState(Protocol):
    """What a journal writer keeps in the uploader's state folder, per rule.

    The daemon's :class:`~cat2sync.state.StateStore` implements it (two tables: the
    cursor per rule, and the pending rows in insertion order).
    """

    def journal_cursor(self, rule: str) -> str | None:
        """The cursor last saved for ``rule`` (JSON text), None if never."""

    def put_journal_cursor(self, rule: str, cursor: str, *, done: Collection[int] = ()) -> None:
        """Save the cursor and drop the pending rows ``done``, in one transaction."""

    def add_journal_pending(self, rule: str, names: Sequence[str], entry: str | None = None) -> int:
        """Keep a pending change (its entry, when known already); returns its row id,
        which increases with every call."""

    def fill_journal_pending(self, rule: str, row: int, entry: str) -> None:
        """Set the entry of a pending change."""

    def drop_journal_pending(self, rule: str, rows: Collection[int]) -> None:
        """Forget pending rows (changes that did not happen)."""

    def journal_pending(self, rule: str) -> list[PendingRow]:
        """The rule's pending rows, by row id."""


@dataclass(frozen=True, slots=True)
class _Cursor:
    """Where the writer's journal ends on the server."""

    writer: str
    folder: str
    identity: str  # the host and state folder that own the writer id
    end: Position | None  # None: no segment yet (``seq`` of the first entry is then 1)
    epoch: str = ""

    @property
    def next_seq(self) -> int:
        return 1 if self.end is None else self.end.seq

    def to_json(self) -> str:
        return json.dumps(
            {
                "writer": self.writer,
                "folder": self.folder,
                "identity": self.identity,
                "epoch": self.epoch,
                "end": None if self.end is None else self.end.to_json(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> _Cursor | None:
        try:
            raw = json.loads(text)
            end = raw["end"]
            return cls(
                writer=str(raw["writer"]),
                folder=str(raw["folder"]),
                identity=str(raw["identity"]),
                epoch=str(raw["epoch"]),
                end=None if end is None else Position(*map(int, end)),
            )
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True, slots=True)
class _Unsent:
    row: int
    body: dict[str, Any]


class PendingChange:
    """A remote change announced to the journal; see :meth:`JournalWriter.change`."""

    def __init__(self, writer: JournalWriter, row: int, names: tuple[str, ...]) -> None:
        self._writer = writer
        self._row: int | None = row
        self.names = names

    def record(self, entry: Entry) -> None:
        """The change is visible under its final name: journal ``entry`` (call again
        for a change that needs more than one entry)."""
        row, self._row = self._row, None
        self._writer._record(entry, row)

    def nothing(self) -> None:
        """The change did not happen on the server (it failed before any write)."""
        if self._row is not None:
            self._writer._forget(self._row)
            self._row = None

    def __enter__(self) -> PendingChange:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._row is not None:  # neither recorded nor ruled out: subscribers ask
            for name in self.names:
                self.record(Entry.check(name))


class JournalWriter:
    """The journal of one upload rule in its remote ``folder``.

    Use: :meth:`start` once (it repairs what a previous run left), then, around every
    remote change the rule makes::

        with journal.change(remote_name) as change:
            ...                                  # upload + move, append, move, remove
            info, etag = client.stat(remote)     # the engine learns the new ETag anyway
            change.record(Entry.sent(name, info=info, etag=etag))

    An entry is recorded only once its change is visible under its final name, so a
    subscriber that trusts it never records an old version as current. Entries are
    appended in batches: after ``quiet`` seconds without a new one, at most
    ``max_delay`` after the first one waiting, and at :meth:`close`.

    :param identity: who owns the writer id (host and state folder): a state folder
        copied elsewhere gets a writer id, and a journal, of its own.
    """

    def __init__(
        self,
        client: Client,
        state: WriterState,
        *,
        rule: str,
        folder: str,
        identity: str,
        quiet: float = 0.5,
        max_delay: float = 2.0,
    ) -> None:
        self.client = client
        self.state = state
        self.rule = rule
        self.folder = folder.strip("/")
        self.journal_folder = f"{self.folder}/{JOURNAL_FOLDER}"
        self.identity = identity
        self.quiet = quiet
        self.max_delay = max_delay
        self._cursor = self._load_cursor()
        pending = self.state.journal_pending(rule)
        # Entries a previous run recorded and did not append, in the order it did.
        self._unsent = [_Unsent(r.row, json.loads(r.entry)) for r in pending if r.entry]
        # Changes a previous run announced and never recorded: it was killed meanwhile.
        self._orphans = [r for r in pending if r.entry is None]
        self._unsure = True  # the server's side is checked before the first append
        self._lock = threading.Condition()  # guards _unsent, the timing, _stopping
        self._flushing = threading.Lock()  # one flush at a time
        self._first_waiting = self._last_record = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def writer(self) -> str:
        """This writer's id: its journal files are ``.cat2sync/j1-<id>-<segment>.b2nd``."""
        return self._cursor.writer

    # -- life cycle ------------------------------------------------------------

    def start(self, *, also_check: Iterable[str] = ()) -> None:
        """Repair the journal, then flush in the background.

        :param also_check: names the engine knows may have changed without an entry
            (e.g. its own in-flight records from before journals existed): they are
            journaled as ``check`` entries.
        """
        try:
            self.repair(also_check)
        except (Cat2Error, OSError) as exc:  # the background flush tries again
            log.warning("%s: journal not repaired yet: %s", self.rule, exc)
        self._thread = threading.Thread(
            target=self._run, name=f"cat2sync-journal-{self.rule}", daemon=True
        )
        self._thread.start()

    def repair(self, also_check: Iterable[str] = ()) -> None:
        """Turn what a killed run left into entries, and append them.

        :raises RemoteError: the server is away; the entries stay in the state, and
            the background flush tries again.
        """
        orphans, self._orphans = self._orphans, []
        for row in orphans:  # announced, never recorded: the change may have happened
            for i, name in enumerate(row.names):
                self._record(Entry.check(name), row.row if i == 0 else None)
        for name in also_check:
            self._record(Entry.check(name), None)
        self.flush()

    def close(self) -> None:
        """Stop the background flush, and append what is left (a failure is logged:
        the entries stay in the state for the next start)."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        except (Cat2Error, OSError) as exc:
            log.warning("%s: journal not written, kept for the next start: %s", self.rule, exc)

    # -- recording -------------------------------------------------------------

    def change(self, *names: str) -> PendingChange:
        """Announce a change of ``names`` (relative to the folder) before making it.

        Use the result as a context manager and call its ``record`` once the change
        is visible (or ``nothing`` when it did not happen): leaving the block without
        either journals the names as ``check`` entries.
        """
        row = self.state.add_journal_pending(self.rule, names)
        return PendingChange(self, row, names)

    def record(self, entry: Entry) -> None:
        """Journal a change that is visible already (one not announced: a writer
        killed between the change and this call will not repair it)."""
        self._record(entry, None)

    def _record(self, entry: Entry, row: int | None) -> None:
        unsafe = next(filter(None, map(check_name, entry.names())), None)
        if unsafe:
            # No subscriber mirrors such a name (the same rules): nothing to tell them.
            log.info("%s: not journaled: %s", self.rule, unsafe)
            if row is not None:
                self._forget(row)
            return
        entry = entry.stamped(time.time())
        encode_entry(entry, 1)  # an entry too long for a line fails here, not at a flush
        body = entry.body()
        text = json.dumps(body)
        if row is None:
            row = self.state.add_journal_pending(self.rule, entry.names(), text)
        else:
            self.state.fill_journal_pending(self.rule, row, text)
        with self._lock:
            now = time.monotonic()
            if not self._unsent:
                self._first_waiting = now
            self._last_record = now
            self._unsent.append(_Unsent(row, body))
            self._lock.notify_all()

    def _forget(self, row: int) -> None:
        self.state.drop_journal_pending(self.rule, [row])

    # -- flushing --------------------------------------------------------------

    def flush(self) -> int:
        """Append every entry recorded so far; returns how many were written.

        :raises RemoteError: the server refused or is away (the entries are kept).
        """
        written = 0
        with self._flushing:
            while True:
                with self._lock:
                    batch = self._batch()
                if not batch:
                    return written
                written += self._write(batch)

    def _batch(self) -> list[_Unsent]:
        """The first unsent entries, at most :data:`MAX_BATCH` bytes of them."""
        size, batch = 0, list[_Unsent]()
        for unsent in self._unsent:
            size += len(encode_body(unsent.body, 1)) + 8  # seq grows by a few digits
            if batch and size > MAX_BATCH:
                break
            batch.append(unsent)
        return batch

    def _write(self, batch: list[_Unsent]) -> int:
        """Append ``batch`` (or open a segment with it); returns the entries that are
        now on the server (0 when a check found some of them there already)."""
        cursor = self._cursor
        if self._unsure:
            self._unsure = False
            return self._resync()
        if cursor.end is None:
            return self._new_segment(batch)
        lines = [encode_body(u.body, cursor.end.seq + i) for i, u in enumerate(batch)]
        data = b"".join(lines)
        if cursor.end.offset + len(data) > SEGMENT_BYTES:
            return self._new_segment(batch)
        path = self._path(cursor.end.segment)
        try:
            shape = self.client.append(path, np.frombuffer(data, dtype=np.uint8))
        except (NotFound, BadRequest) as exc:
            log.warning(
                "%s: journal %s refused an append (%s): starting anew", self.rule, path, exc
            )
            return self._new_segment(batch)
        except RemoteError:
            self._unsure = True  # it may have been appended: look before the next one
            raise
        if tuple(shape) != (cursor.end.offset + len(data),):
            log.warning(
                "%s: journal %s was written by someone else: starting anew", self.rule, path
            )
            return self._new_segment(batch)
        end = Position.after(cursor.end.segment, shape[0], lines[-1], cursor.end.seq + len(lines))
        self._confirm(replace(cursor, end=end), batch)
        return len(batch)

    def _confirm(self, cursor: _Cursor, done: Sequence[_Unsent]) -> None:
        """The server holds ``done``: save the cursor and drop them, in one step."""
        self.state.put_journal_cursor(self.rule, cursor.to_json(), done=[u.row for u in done])
        self._cursor = cursor
        with self._lock:
            del self._unsent[: len(done)]

    def _resync(self) -> int:
        """Before the first append of a run, or after one whose answer was lost: make
        the cursor match the server. Lines past it must be the first unsent entries
        (appended, answer lost), and so must a next segment made by a run killed before
        it saved the cursor; anything else makes the writer start a new segment."""
        cursor = self._cursor
        own = self._own_segments()
        current = 0 if cursor.end is None else cursor.end.segment
        newest = max(own, default=0)
        if newest == current + 1 and self._adopt(newest):
            return 0
        if cursor.end is None or current not in own or newest > current:
            return self._new_segment(self._batch_now(), known=own)
        since = cursor.end
        try:
            got = self.client.get_slice(
                self._path(since.segment), slice(since.offset - since.tail, None), as_blosc2=False
            )
            data = got.tobytes() if isinstance(got, np.ndarray) else b""
        except (NotFound, BadRequest) as exc:
            log.warning("%s: journal cannot be read back (%s): starting anew", self.rule, exc)
            return self._new_segment(self._batch_now(), known=own)
        parsed = parse_since(data, since)
        with self._lock:
            unsent = list(self._unsent)
        if not self._are_ours(parsed, data, since.offset - since.tail, unsent):
            log.warning("%s: journal changed on the server: starting anew", self.rule)
            return self._new_segment(self._batch_now(), known=own)
        assert isinstance(parsed, Parsed)
        self._confirm(replace(cursor, end=parsed.end), unsent[: len(parsed.reads)])
        return 0

    def _adopt(self, segment: int) -> bool:
        """Take over ``segment`` as the current one when it holds the first unsent
        entries (a run killed between making it and saving the cursor)."""
        try:
            got = self.client.get_slice(self._path(segment), slice(0, None), as_blosc2=False)
        except (NotFound, BadRequest, ServerError):
            return False
        data = got.tobytes() if isinstance(got, np.ndarray) else b""
        parsed = parse_segment(
            data,
            writer=self.writer,
            segment=segment,
            folder=self.folder,
            seq=self._cursor.next_seq,
        )
        with self._lock:
            unsent = list(self._unsent)
        if not self._are_ours(parsed, data, 0, unsent):
            return False
        assert isinstance(parsed, Parsed) and parsed.header is not None
        cursor = replace(self._cursor, end=parsed.end, epoch=parsed.header.epoch)
        self._confirm(cursor, unsent[: len(parsed.reads)])
        return True

    @staticmethod
    def _are_ours(
        parsed: Parsed | Untrusted, data: bytes, base: int, unsent: Sequence[_Unsent]
    ) -> bool:
        """Whether the entries ``parsed`` from ``data`` (which starts at segment offset
        ``base``) are the first ``unsent`` ones, byte for byte."""
        if isinstance(parsed, Untrusted) or not parsed.complete or len(parsed.reads) > len(unsent):
            return False
        for read, waiting in zip(parsed.reads, unsent, strict=False):
            line = encode_body(waiting.body, read.seq)
            start = read.before.offset - base
            if data[start : start + len(line)] != line:
                return False
        return True

    def _batch_now(self) -> list[_Unsent]:
        with self._lock:
            return self._batch()

    def _own_segments(self) -> list[int]:
        found = []
        for name in self.client.get_list(self.journal_folder):
            parts = split_segment_name(name)
            if parts is not None and parts[1] == self.writer:
                found.append(parts[2])
        return found

    def _path(self, segment: int) -> str:
        return f"{self.journal_folder}/{segment_name(self.writer, segment)}"

    def _new_segment(self, batch: Sequence[_Unsent], known: Sequence[int] | None = None) -> int:
        """Start the next segment with ``batch`` in it, then remove the segments before
        the previous one (readers may still be finishing that)."""
        own = self._own_segments() if known is None else known
        cursor = self._cursor
        segment = max([*own, 0 if cursor.end is None else cursor.end.segment]) + 1
        header = Header(
            writer=self.writer,
            segment=segment,
            epoch=secrets.token_hex(4),
            seq=cursor.next_seq,
            folder=self.folder,
            created=time.time(),
        )
        lines = [encode_header(header)]
        lines += [encode_body(u.body, header.seq + i) for i, u in enumerate(batch)]
        data = b"".join(lines)
        self._upload(data, self._path(segment))
        end = Position.after(segment, len(data), lines[-1], header.seq + len(batch))
        self._confirm(replace(cursor, end=end, epoch=header.epoch), batch)
        self._unsure = False
        for old in own:
            if old < segment - 1:
                with contextlib.suppress(NotFound):
                    self.client.remove(self._path(old))
        return len(batch)

    def _upload(self, data: bytes, remote: str) -> None:
        """Upload a segment beside its name, then move it there: readers never see
        half of one."""
        tmp = f"{self.journal_folder}/{TEMP_PREFIX}{self.writer}-{secrets.token_hex(4)}.b2nd"
        with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as scratch:
            local = Path(scratch) / "segment.b2nd"
            blosc2.asarray(
                np.frombuffer(data, dtype=np.uint8),
                urlpath=str(local),
                mode="w",
                chunks=_CHUNKS,
                blocks=_BLOCKS,
            )
            self.client.upload(local, tmp)
        try:
            self.client.move(tmp, remote)
        except RemoteError:
            with contextlib.suppress(RemoteError):
                self.client.remove(tmp)
            raise

    # -- the cursor ------------------------------------------------------------

    def _load_cursor(self) -> _Cursor:
        """The saved cursor, or a new writer id when there is none, or when it belongs
        to another folder (the rule changed) or to another host or state folder."""
        text = self.state.journal_cursor(self.rule)
        cursor = None if text is None else _Cursor.from_json(text)
        if cursor is not None and (cursor.folder, cursor.identity) == (self.folder, self.identity):
            return cursor
        fresh = _Cursor(
            writer=secrets.token_hex(8), folder=self.folder, identity=self.identity, end=None
        )
        stale: list[int] = []
        if cursor is not None and cursor.folder != self.folder:
            # Their names are relative to the old folder; the rule ships anew anyway.
            stale = [row.row for row in self.state.journal_pending(self.rule)]
        self.state.put_journal_cursor(self.rule, fresh.to_json(), done=stale)
        return fresh

    # -- the background flush --------------------------------------------------

    def _due_in(self) -> float | None:
        """Seconds until the next flush is due; None when nothing waits."""
        if not self._unsent:
            return None
        now = time.monotonic()
        return max(
            0.0, min(self._last_record + self.quiet, self._first_waiting + self.max_delay) - now
        )

    def _run(self) -> None:
        delay = 0.0
        while True:
            with self._lock:
                while not self._stopping and (due := self._due_in()) != 0.0:
                    self._lock.wait(timeout=due)
                if self._stopping:
                    return
            try:
                self.flush()
                delay = 0.0
            except Exception as exc:  # the thread must outlive any failure: retry later
                delay = min(_RETRY_MAX, max(1.0, 2 * delay))
                log.warning(
                    "%s: journal not written (retrying in %.0f s): %s",
                    self.rule,
                    delay,
                    exc,
                    exc_info=not isinstance(exc, Cat2Error | OSError),
                )
                with self._lock:
                    self._lock.wait_for(lambda: self._stopping, timeout=delay)
