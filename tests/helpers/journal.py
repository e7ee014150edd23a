"""A journal writer's state for tests (SQLite, so a killed writer process keeps it),
segments stored byte by byte (hostile ones too), and every entry of a folder's journals.

:class:`WriterStore` implements :class:`cat2sync.journal.WriterState` with the two
tables the daemon's state store needs for it.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import blosc2
import numpy as np

from cat2sync.client import Client
from cat2sync.journal import JOURNAL_FOLDER, Entry, JournalWriter, PendingRow
from cat2sync.journal._format import Parsed, parse_segment, segment_name, split_segment_name

__all__ = ["MakeWriter", "WriterStore", "journal_entries", "upload_bytes"]

#: The ``make_writer`` fixture of ``tests/journal``: ``make_writer(killed=False, **kw)``.
MakeWriter = Callable[..., JournalWriter]

_TABLES = """
CREATE TABLE IF NOT EXISTS journal_cursor(rule TEXT PRIMARY KEY, cursor TEXT);
CREATE TABLE IF NOT EXISTS journal_pending(
    row INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT, names TEXT, entry TEXT);
"""


class WriterStore:
    """The journal tables of a state folder, in the SQLite file ``path``."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_TABLES)
        self._mutex = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def journal_cursor(self, rule: str) -> str | None:
        with self._mutex:
            row = self._db.execute(
                "SELECT cursor FROM journal_cursor WHERE rule = ?", (rule,)
            ).fetchone()
        return None if row is None else str(row[0])

    def put_journal_cursor(self, rule: str, cursor: str, *, done: Collection[int] = ()) -> None:
        with self._mutex:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO journal_cursor VALUES (?, ?)", (rule, cursor))
            self._db.executemany(
                "DELETE FROM journal_pending WHERE rule = ? AND row = ?",
                [(rule, row) for row in done],
            )
            self._db.execute("COMMIT")

    def add_journal_pending(self, rule: str, names: Sequence[str], entry: str | None = None) -> int:
        with self._mutex:
            cur = self._db.execute(
                "INSERT INTO journal_pending(rule, names, entry) VALUES (?, ?, ?)",
                (rule, json.dumps(list(names)), entry),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def fill_journal_pending(self, rule: str, row: int, entry: str) -> None:
        with self._mutex:
            self._db.execute(
                "UPDATE journal_pending SET entry = ? WHERE rule = ? AND row = ?",
                (entry, rule, row),
            )

    def drop_journal_pending(self, rule: str, rows: Collection[int]) -> None:
        with self._mutex:
            self._db.executemany(
                "DELETE FROM journal_pending WHERE rule = ? AND row = ?",
                [(rule, row) for row in rows],
            )

    def journal_pending(self, rule: str) -> list[PendingRow]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT row, names, entry FROM journal_pending WHERE rule = ? ORDER BY row",
                (rule,),
            ).fetchall()
        return [PendingRow(r[0], tuple(json.loads(r[1])), r[2]) for r in rows]


def upload_bytes(client: Client, remote: str, data: bytes) -> None:
    """Store ``data`` at ``remote`` as a 1-D uint8 ``.b2nd``, as a journal segment is."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "segment.b2nd"
        blosc2.asarray(np.frombuffer(data, dtype=np.uint8), urlpath=str(local), mode="w")
        client.upload(local, remote)


def journal_entries(client: Client, folder: str) -> dict[str, list[tuple[int, Entry]]]:
    """Every entry of every journal in ``folder``, by writer, read from the first byte
    of each segment (which must follow each other without a gap)."""
    out: dict[str, list[tuple[int, Entry]]] = {}
    segments: dict[str, list[int]] = {}
    for name in client.get_list(f"{folder}/{JOURNAL_FOLDER}"):
        parts = split_segment_name(name)
        if parts is not None:
            segments.setdefault(parts[1], []).append(parts[2])
    for writer, numbers in segments.items():
        seq = None
        for number in sorted(numbers):
            remote = f"{folder}/{JOURNAL_FOLDER}/{segment_name(writer, number)}"
            data = client.get_slice(remote, slice(0, None), as_blosc2=False).tobytes()
            parsed = parse_segment(data, writer=writer, segment=number, folder=folder, seq=seq)
            assert isinstance(parsed, Parsed), f"{remote}: {parsed}"
            out.setdefault(writer, []).extend((r.seq, r.entry) for r in parsed.reads)
            seq = parsed.end.seq
    return out
