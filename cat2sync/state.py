"""The state store: what cat2sync agreed with the server, in SQLite (WAL) in ``state_dir``.

One daemon writes at a time (an exclusive ``flock`` on ``state_dir/lock``); ``status``
reads concurrently. Tables:

* ``shipped``  a local file as last sent: remote path, size/mtime/inode, array layout and
  per-chunk digests that prove an unchanged prefix for row appends;
* ``journal``  appends and temporary uploads in flight: written before the request,
  removed after it is confirmed, so a restart knows what may have half-happened;
* ``pending``  files noticed but not yet shipped, with attempts and the last error
  (the persistent retry queue);
* ``passes``   the last pass of each rule;
* ``mirrored`` a remote entry as last downloaded by a subscription.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import StateLockedError

__all__ = ["JournalEntry", "Mirrored", "Pending", "RuleStatus", "Shipped", "StateStore"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS shipped(
    rule TEXT, relpath TEXT, remote TEXT, kind TEXT, size INTEGER, mtime_ns INTEGER,
    dev INTEGER, inode INTEGER, shape TEXT, dtype TEXT, chunks TEXT, digests TEXT,
    tail_digest TEXT, updated REAL, PRIMARY KEY(rule, relpath));
CREATE INDEX IF NOT EXISTS shipped_inode ON shipped(rule, dev, inode);
CREATE TABLE IF NOT EXISTS journal(
    id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT, relpath TEXT, op TEXT, remote TEXT,
    start_row INTEGER, stop_row INTEGER, created REAL);
CREATE TABLE IF NOT EXISTS pending(
    rule TEXT, relpath TEXT, since REAL, attempts INTEGER, next_attempt REAL,
    last_error TEXT, PRIMARY KEY(rule, relpath));
CREATE TABLE IF NOT EXISTS passes(
    rule TEXT PRIMARY KEY, started REAL, finished REAL, error TEXT, files INTEGER,
    bytes INTEGER);
CREATE TABLE IF NOT EXISTS mirrored(
    rule TEXT, remote_rel TEXT, etag TEXT, mtime TEXT, shape TEXT, nchunks INTEGER,
    size INTEGER, mtime_ns INTEGER, updated REAL, PRIMARY KEY(rule, remote_rel));
"""


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _tuple(text: str | None) -> tuple[Any, ...] | None:
    return None if text is None else tuple(json.loads(text))


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


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEntry:
    id: int
    rule: str
    relpath: str
    op: str  # "append" or "upload" (a temporary remote file)
    remote: str
    start_row: int | None
    stop_row: int | None
    created: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    rule: str
    relpath: str
    since: float
    attempts: int
    next_attempt: float
    last_error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleStatus:
    rule: str
    last_started: float | None = None
    last_finished: float | None = None
    last_error: str | None = None
    files: int = 0
    bytes: int = 0
    pending: list[Pending] = field(default_factory=list)


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


class StateStore:
    """The SQLite state of one manifest.

    :param readonly: open for reading only (``status``), without taking the lock.
    :raises StateLockedError: another process holds the lock.
    """

    def __init__(self, state_dir: Path, *, readonly: bool = False) -> None:
        self.state_dir = Path(state_dir)
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        if readonly:
            uri = f"file:{self.state_dir / 'state.db'}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            return
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state_dir.chmod(0o700)  # holds names of private data: owner only
        self._take_lock()
        self._db = sqlite3.connect(
            self.state_dir / "state.db", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(_SCHEMA_VERSION),))

    def _take_lock(self) -> None:
        path = self.state_dir / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StateLockedError(
                f"{self.state_dir} is in use by process {holder}: is the daemon already running?"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        with self._mutex:
            self._db.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
                self._lock_fd = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._mutex:
            return self._db.execute(sql, args).fetchall()

    # -- shipped ---------------------------------------------------------------

    _SHIPPED_COLS = (
        "rule, relpath, remote, kind, size, mtime_ns, dev, inode, shape, dtype, "
        "chunks, digests, tail_digest"
    )

    @staticmethod
    def _shipped(row: tuple[Any, ...]) -> Shipped:
        (
            rule,
            relpath,
            remote,
            kind,
            size,
            mtime_ns,
            dev,
            inode,
            shape,
            dtype,
            chunks,
            digests,
            tail,
        ) = row
        return Shipped(
            rule=rule,
            relpath=relpath,
            remote=remote,
            kind=kind,
            size=size,
            mtime_ns=mtime_ns,
            dev=dev,
            inode=inode,
            shape=_tuple(shape),
            dtype=dtype,
            chunks=_tuple(chunks),
            digests=_tuple(digests),
            tail_digest=tail,
        )

    def get_shipped(self, rule: str, relpath: str) -> Shipped | None:
        rows = self._rows(
            f"SELECT {self._SHIPPED_COLS} FROM shipped WHERE rule=? AND relpath=?", rule, relpath
        )
        return self._shipped(rows[0]) if rows else None

    def shipped_for_rule(self, rule: str) -> list[Shipped]:
        rows = self._rows(
            f"SELECT {self._SHIPPED_COLS} FROM shipped WHERE rule=? ORDER BY relpath", rule
        )
        return [self._shipped(r) for r in rows]

    def shipped_by_inode(self, rule: str, dev: int, inode: int) -> list[Shipped]:
        rows = self._rows(
            f"SELECT {self._SHIPPED_COLS} FROM shipped WHERE rule=? AND dev=? AND inode=?",
            rule,
            dev,
            inode,
        )
        return [self._shipped(r) for r in rows]

    def put_shipped(
        self, rec: Shipped, *, confirm: int | None = None, done_pending: bool = True
    ) -> None:
        """Record ``rec``; in the same transaction confirm journal entry ``confirm`` and
        take the file off the pending queue, so that a crash never separates them."""
        with self._tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO shipped ({self._SHIPPED_COLS}, updated) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rec.rule,
                    rec.relpath,
                    rec.remote,
                    rec.kind,
                    rec.size,
                    rec.mtime_ns,
                    rec.dev,
                    rec.inode,
                    _dump(rec.shape),
                    rec.dtype,
                    _dump(rec.chunks),
                    _dump(rec.digests),
                    rec.tail_digest,
                    time.time(),
                ),
            )
            if confirm is not None:
                db.execute("DELETE FROM journal WHERE id=?", (confirm,))
            if done_pending:
                db.execute(
                    "DELETE FROM pending WHERE rule=? AND relpath=?", (rec.rule, rec.relpath)
                )

    def rename_shipped(self, rec: Shipped, new_relpath: str, new_remote: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM shipped WHERE rule=? AND relpath=?", (rec.rule, new_relpath))
            db.execute(
                "UPDATE shipped SET relpath=?, remote=?, updated=? WHERE rule=? AND relpath=?",
                (new_relpath, new_remote, time.time(), rec.rule, rec.relpath),
            )
            db.execute(
                "DELETE FROM pending WHERE rule=? AND relpath IN (?, ?)",
                (rec.rule, rec.relpath, new_relpath),
            )

    def delete_shipped(self, rule: str, relpath: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM shipped WHERE rule=? AND relpath=?", (rule, relpath))
            db.execute("DELETE FROM pending WHERE rule=? AND relpath=?", (rule, relpath))

    # -- journal ---------------------------------------------------------------

    def journal_begin(
        self,
        rule: str,
        relpath: str,
        op: str,
        remote: str,
        start_row: int | None = None,
        stop_row: int | None = None,
    ) -> int:
        """Write down an operation before its request is sent; returns its id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO journal(rule, relpath, op, remote, start_row, stop_row, created) "
                "VALUES (?,?,?,?,?,?,?)",
                (rule, relpath, op, remote, start_row, stop_row, time.time()),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def journal_done(self, entry_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM journal WHERE id=?", (entry_id,))

    def journal(self, rule: str | None = None) -> list[JournalEntry]:
        sql = "SELECT id, rule, relpath, op, remote, start_row, stop_row, created FROM journal"
        rows = (
            self._rows(sql + " WHERE rule=? ORDER BY id", rule)
            if rule
            else self._rows(sql + " ORDER BY id")
        )
        return [
            JournalEntry(
                id=r[0],
                rule=r[1],
                relpath=r[2],
                op=r[3],
                remote=r[4],
                start_row=r[5],
                stop_row=r[6],
                created=r[7],
            )
            for r in rows
        ]

    # -- pending queue ---------------------------------------------------------

    def add_pending(self, rule: str, relpath: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO pending VALUES (?,?,?,0,0,NULL)",
                (rule, relpath, time.time()),
            )

    def fail_pending(self, rule: str, relpath: str, error: str, next_attempt: float) -> int:
        """Record a failed attempt; returns the number of attempts so far."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO pending VALUES (?,?,?,0,0,NULL)",
                (rule, relpath, time.time()),
            )
            db.execute(
                "UPDATE pending SET attempts=attempts+1, next_attempt=?, last_error=? "
                "WHERE rule=? AND relpath=?",
                (next_attempt, error, rule, relpath),
            )
            row = db.execute(
                "SELECT attempts FROM pending WHERE rule=? AND relpath=?", (rule, relpath)
            ).fetchone()
        return int(row[0])

    def done_pending(self, rule: str, relpath: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM pending WHERE rule=? AND relpath=?", (rule, relpath))

    def pending(self, rule: str | None = None) -> list[Pending]:
        sql = "SELECT rule, relpath, since, attempts, next_attempt, last_error FROM pending"
        rows = (
            self._rows(sql + " WHERE rule=? ORDER BY since", rule)
            if rule
            else self._rows(sql + " ORDER BY since")
        )
        return [
            Pending(
                rule=r[0],
                relpath=r[1],
                since=r[2],
                attempts=r[3],
                next_attempt=r[4],
                last_error=r[5],
            )
            for r in rows
        ]

    # -- passes ----------------------------------------------------------------

    def record_pass(
        self, rule: str, *, started: float, error: str | None, files: int = 0, nbytes: int = 0
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO passes VALUES (?,?,?,?,?,?)",
                (rule, started, time.time(), error, files, nbytes),
            )

    def rule_status(self, rule: str) -> RuleStatus:
        rows = self._rows(
            "SELECT started, finished, error, files, bytes FROM passes WHERE rule=?", rule
        )
        pending = self.pending(rule)
        if not rows:
            return RuleStatus(rule=rule, pending=pending)
        started, finished, error, files, nbytes = rows[0]
        return RuleStatus(
            rule=rule,
            last_started=started,
            last_finished=finished,
            last_error=error,
            files=files,
            bytes=nbytes,
            pending=pending,
        )

    # -- mirror ----------------------------------------------------------------

    def get_mirrored(self, rule: str, remote_rel: str) -> Mirrored | None:
        rows = self._rows(
            "SELECT rule, remote_rel, etag, mtime, shape, nchunks, size, mtime_ns "
            "FROM mirrored WHERE rule=? AND remote_rel=?",
            rule,
            remote_rel,
        )
        return self._mirrored(rows[0]) if rows else None

    def mirrored_for_rule(self, rule: str) -> list[Mirrored]:
        rows = self._rows(
            "SELECT rule, remote_rel, etag, mtime, shape, nchunks, size, mtime_ns "
            "FROM mirrored WHERE rule=? ORDER BY remote_rel",
            rule,
        )
        return [self._mirrored(r) for r in rows]

    @staticmethod
    def _mirrored(r: tuple[Any, ...]) -> Mirrored:
        return Mirrored(
            rule=r[0],
            remote_rel=r[1],
            etag=r[2],
            mtime=r[3],
            shape=_tuple(r[4]),
            nchunks=r[5],
            size=r[6],
            mtime_ns=r[7],
        )

    def put_mirrored(self, rec: Mirrored) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO mirrored VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    rec.rule,
                    rec.remote_rel,
                    rec.etag,
                    rec.mtime,
                    _dump(rec.shape),
                    rec.nchunks,
                    rec.size,
                    rec.mtime_ns,
                    time.time(),
                ),
            )

    def delete_mirrored(self, rule: str, remote_rel: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM mirrored WHERE rule=? AND remote_rel=?", (rule, remote_rel))
