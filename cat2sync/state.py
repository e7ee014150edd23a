"""The state store: what cat2sync agreed with the server, in SQLite (WAL) in ``state_dir``.

One daemon writes at a time (an exclusive ``flock`` on ``state_dir/lock``); ``status``
reads concurrently. Tables (rows are the :mod:`cat2sync.records` values, by column name):

* ``shipped``  a local file as last sent: remote path, size/mtime/inode, array layout and
  per-chunk digests that prove an unchanged prefix for row appends;
* ``intents``  appends and temporary uploads in flight: written before the request
  (``upload``, then ``move`` right before the temporary is moved into place),
  removed after it is confirmed, so a restart knows what may have half-happened;
* ``pending``  files noticed and not shipped yet: attempts, the last error, its remedy
  and when the file is tried next (written by the upload queue alone);
* ``passes``   the last pass of each rule, and its last pass without error;
* ``mirrored`` a remote entry as last downloaded by a subscription.

The schema has a version (``meta``). An older state folder is migrated when a daemon
opens it; a newer one is refused with :class:`~cat2sync.errors.StateVersionError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .errors import StateLockedError, StateVersionError
from .records import Conflict, Intent, Mirrored, Pending, RuleStatus, Shipped, Total

__all__ = ["SCHEMA_VERSION", "StateStore"]

SCHEMA_VERSION = 3
_TABLES = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE shipped(
    rule TEXT, relpath TEXT, remote TEXT, kind TEXT, size INTEGER, mtime_ns INTEGER,
    dev INTEGER, inode INTEGER, shape TEXT, dtype TEXT, chunks TEXT, digests TEXT,
    tail_digest TEXT, updated REAL, etag TEXT, theirs INTEGER DEFAULT 0, freed REAL,
    PRIMARY KEY(rule, relpath));
CREATE INDEX shipped_inode ON shipped(rule, dev, inode);
CREATE TABLE intents(
    id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT, relpath TEXT, op TEXT, remote TEXT,
    start_row INTEGER, stop_row INTEGER, created REAL, dest TEXT);
CREATE TABLE pending(
    rule TEXT, relpath TEXT, since REAL, attempts INTEGER, next_attempt REAL,
    last_error TEXT, remedy TEXT, PRIMARY KEY(rule, relpath));
CREATE TABLE passes(
    rule TEXT PRIMARY KEY, started REAL, finished REAL, error TEXT, files INTEGER,
    bytes INTEGER, succeeded REAL);
CREATE TABLE mirrored(
    rule TEXT, remote_rel TEXT, etag TEXT, mtime TEXT, shape TEXT, nchunks INTEGER,
    size INTEGER, mtime_ns INTEGER, updated REAL, ours INTEGER DEFAULT 1,
    PRIMARY KEY(rule, remote_rel));
CREATE TABLE conflicts(
    id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT, side TEXT, path TEXT, remote TEXT,
    action TEXT, copy TEXT, reason TEXT, created REAL);
CREATE TABLE totals(
    rule TEXT, kind TEXT, files INTEGER, bytes INTEGER, PRIMARY KEY(rule, kind));
"""
#: version -> the statements that bring a state folder from it to the next version.
_MIGRATIONS: Mapping[int, tuple[str, ...]] = {
    # 2: in-flight requests are "intents" (a change journal on the server is another
    # thing); a pass remembers its last success, a pending file its error's remedy.
    1: (
        "ALTER TABLE journal RENAME TO intents",
        "ALTER TABLE passes ADD COLUMN succeeded REAL",
        "UPDATE passes SET succeeded = finished WHERE error IS NULL",
        "ALTER TABLE pending ADD COLUMN remedy TEXT",
    ),
    # 3: whose the remote and the local copies are (conflicts), freed local files, the
    # conflicts seen, and running totals per rule.
    2: (
        "ALTER TABLE shipped ADD COLUMN etag TEXT",
        "ALTER TABLE shipped ADD COLUMN theirs INTEGER DEFAULT 0",
        "ALTER TABLE shipped ADD COLUMN freed REAL",
        "ALTER TABLE mirrored ADD COLUMN ours INTEGER DEFAULT 1",
        "ALTER TABLE intents ADD COLUMN dest TEXT",
        "CREATE TABLE conflicts(id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT, side TEXT, "
        "path TEXT, remote TEXT, action TEXT, copy TEXT, reason TEXT, created REAL)",
        "CREATE TABLE totals(rule TEXT, kind TEXT, files INTEGER, bytes INTEGER, "
        "PRIMARY KEY(rule, kind))",
    ),
}
#: Columns stored as JSON arrays and read back as tuples.
_TUPLE_COLUMNS = frozenset({"shape", "chunks", "digests"})
#: Columns stored as 0/1 and read back as booleans.
_BOOL_COLUMNS = frozenset({"theirs", "ours"})

_Record = TypeVar("_Record", Shipped, Mirrored, Intent, Pending, Conflict, Total)


def _to_row(rec: Shipped | Mirrored) -> dict[str, Any]:
    """``rec`` as named SQL parameters, with ``updated`` set to now."""
    row = {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}
    for name in _TUPLE_COLUMNS & row.keys():
        row[name] = None if row[name] is None else json.dumps(row[name])
    row["updated"] = time.time()
    return row


def _from_row(cls: type[_Record], row: sqlite3.Row) -> _Record:
    values = {f.name: row[f.name] for f in dataclasses.fields(cls)}
    for name in _TUPLE_COLUMNS & values.keys():
        text = values[name]
        values[name] = None if text is None else tuple(json.loads(text))
    for name in _BOOL_COLUMNS & values.keys():
        values[name] = bool(values[name])
    return cls(**values)


def _insert(table: str, row: Mapping[str, Any]) -> str:
    names = ", ".join(row)
    return f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({', '.join(':' + n for n in row)})"


class StateStore:
    """The SQLite state of one manifest.

    :param readonly: open for reading only (``status``), without taking the lock.
    :raises StateLockedError: another process holds the lock.
    :raises StateVersionError: the folder was written by a newer cat2sync (or, when
        ``readonly``, by an older one that a daemon has not migrated yet).
    """

    def __init__(self, state_dir: Path, *, readonly: bool = False) -> None:
        self.state_dir = Path(state_dir)
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        if readonly:
            uri = f"file:{self.state_dir / 'state.db'}?mode=ro"
            self._db = self._connect(sqlite3.connect(uri, uri=True, check_same_thread=False))
            self._check_version(self._version(), readonly=True)
            return
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state_dir.chmod(0o700)  # holds names of private data: owner only
        self._take_lock()
        try:
            db = sqlite3.connect(
                self.state_dir / "state.db", check_same_thread=False, isolation_level=None
            )
            self._db = self._connect(db)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._open_schema()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _connect(db: sqlite3.Connection) -> sqlite3.Connection:
        db.row_factory = sqlite3.Row
        return db

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

    # -- schema ----------------------------------------------------------------

    def _version(self) -> int | None:
        """The schema version on disk; None for a new, empty database."""
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        return int(row["value"]) if row else None

    def _check_version(self, found: int | None, *, readonly: bool) -> None:
        if found is None:
            return
        if found > SCHEMA_VERSION or (readonly and found < SCHEMA_VERSION):
            raise StateVersionError(self.state_dir, found, SCHEMA_VERSION)

    def _open_schema(self) -> None:
        found = self._version()
        self._check_version(found, readonly=False)
        with self._tx() as db:
            if found is None:
                for statement in _TABLES.split(";"):
                    if statement.strip():
                        db.execute(statement)
            else:
                for version in range(found, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[version]:
                        db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    # -- plumbing --------------------------------------------------------------

    def close(self) -> None:
        with self._mutex:
            if hasattr(self, "_db"):
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

    def _rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._mutex:
            return self._db.execute(sql, args).fetchall()

    def _records(self, cls: type[_Record], sql: str, *args: Any) -> list[_Record]:
        return [_from_row(cls, row) for row in self._rows(sql, *args)]

    # -- shipped ---------------------------------------------------------------

    def get_shipped(self, rule: str, relpath: str) -> Shipped | None:
        found = self._records(
            Shipped, "SELECT * FROM shipped WHERE rule=? AND relpath=?", rule, relpath
        )
        return found[0] if found else None

    def shipped_for_rule(self, rule: str) -> list[Shipped]:
        return self._records(Shipped, "SELECT * FROM shipped WHERE rule=? ORDER BY relpath", rule)

    def shipped_by_inode(self, rule: str, dev: int, inode: int) -> list[Shipped]:
        return self._records(
            Shipped, "SELECT * FROM shipped WHERE rule=? AND dev=? AND inode=?", rule, dev, inode
        )

    def put_shipped(self, rec: Shipped, *, confirm: int | None = None) -> None:
        """Record ``rec``; in the same transaction confirm intent ``confirm``, so that a
        crash never separates them."""
        row = _to_row(rec)
        with self._tx() as db:
            db.execute(_insert("shipped", row), row)
            if confirm is not None:
                db.execute("DELETE FROM intents WHERE id=?", (confirm,))

    def rename_shipped(self, rec: Shipped, new_relpath: str, new_remote: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM shipped WHERE rule=? AND relpath=?", (rec.rule, new_relpath))
            db.execute(
                "UPDATE shipped SET relpath=?, remote=?, updated=? WHERE rule=? AND relpath=?",
                (new_relpath, new_remote, time.time(), rec.rule, rec.relpath),
            )

    def delete_shipped(self, rule: str, relpath: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM shipped WHERE rule=? AND relpath=?", (rule, relpath))

    def mark_freed(self, rule: str, relpath: str, when: float) -> None:
        """The local file is about to be removed, its remote copy verified equal."""
        with self._tx() as db:
            db.execute(
                "UPDATE shipped SET freed=? WHERE rule=? AND relpath=?", (when, rule, relpath)
            )

    def claim(self, rule: str, relpath: str, remote: str) -> None:
        """``remote`` holds a version of ``relpath`` cat2sync wrote, but which one, and
        its ETag, are unknown (a move whose answer was lost, or a crash right after it):
        the next version is sent whole, over it, without taking it for another writer's."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO shipped (rule, relpath, remote, kind, size, mtime_ns, "
                "dev, inode, updated) VALUES (?, ?, ?, 'file', -1, -1, 0, 0, ?)",
                (rule, relpath, remote, time.time()),
            )

    # -- intents ---------------------------------------------------------------

    def intend(
        self,
        rule: str,
        relpath: str,
        op: str,
        remote: str,
        start_row: int | None = None,
        stop_row: int | None = None,
    ) -> int:
        """Write down a request before it is sent; returns the intent's id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO intents(rule, relpath, op, remote, start_row, stop_row, created) "
                "VALUES (?,?,?,?,?,?,?)",
                (rule, relpath, op, remote, start_row, stop_row, time.time()),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def moving(self, intent_id: int, dest: str) -> None:
        """An uploaded temporary is about to be moved to ``dest``."""
        with self._tx() as db:
            db.execute("UPDATE intents SET op='move', dest=? WHERE id=?", (dest, intent_id))

    def done_intent(self, intent_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM intents WHERE id=?", (intent_id,))

    def intent(self, intent_id: int) -> Intent | None:
        found = self._records(Intent, "SELECT * FROM intents WHERE id=?", intent_id)
        return found[0] if found else None

    def intents(self, rule: str | None = None) -> list[Intent]:
        if rule is None:
            return self._records(Intent, "SELECT * FROM intents ORDER BY id")
        return self._records(Intent, "SELECT * FROM intents WHERE rule=? ORDER BY id", rule)

    # -- pending (written by the upload queue alone) ---------------------------

    def add_pending(self, rule: str, relpath: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO pending VALUES (?,?,?,0,0,NULL,NULL)",
                (rule, relpath, time.time()),
            )

    def fail_pending(
        self, rule: str, relpath: str, error: str, *, next_attempt: float, remedy: str
    ) -> int:
        """Record a failed attempt and when the next one is due; returns the number of
        attempts so far."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO pending VALUES (?,?,?,0,0,NULL,NULL)",
                (rule, relpath, time.time()),
            )
            db.execute(
                "UPDATE pending SET attempts=attempts+1, next_attempt=?, last_error=?, "
                "remedy=? WHERE rule=? AND relpath=?",
                (next_attempt, error, remedy, rule, relpath),
            )
            row = db.execute(
                "SELECT attempts FROM pending WHERE rule=? AND relpath=?", (rule, relpath)
            ).fetchone()
        return int(row["attempts"])

    def done_pending(self, rule: str, relpath: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM pending WHERE rule=? AND relpath=?", (rule, relpath))

    def drop_pending_of_other_rules(self, rules: set[str]) -> None:
        """Forget the pending files of rules that left the manifest."""
        with self._tx() as db:
            marks = ",".join("?" * len(rules))
            db.execute(f"DELETE FROM pending WHERE rule NOT IN ({marks})", tuple(rules))

    def pending(self, rule: str | None = None) -> list[Pending]:
        if rule is None:
            return self._records(Pending, "SELECT * FROM pending ORDER BY since")
        return self._records(Pending, "SELECT * FROM pending WHERE rule=? ORDER BY since", rule)

    # -- passes ----------------------------------------------------------------

    def record_pass(
        self, rule: str, *, started: float, error: str | None, files: int = 0, nbytes: int = 0
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO passes VALUES (:rule, :started, :finished, :error, :files, "
                ":bytes, CASE WHEN :error IS NULL THEN :finished END) "
                "ON CONFLICT(rule) DO UPDATE SET started=excluded.started, "
                "finished=excluded.finished, error=excluded.error, files=excluded.files, "
                "bytes=excluded.bytes, succeeded=coalesce(excluded.succeeded, succeeded)",
                {
                    "rule": rule,
                    "started": started,
                    "finished": time.time(),
                    "error": error,
                    "files": files,
                    "bytes": nbytes,
                },
            )

    def rule_status(self, rule: str) -> RuleStatus:
        rows = self._rows("SELECT * FROM passes WHERE rule=?", rule)
        pending = self.pending(rule)
        if not rows:
            return RuleStatus(rule=rule, pending=pending)
        row = rows[0]
        return RuleStatus(
            rule=rule,
            last_started=row["started"],
            last_finished=row["finished"],
            last_error=row["error"],
            last_success=row["succeeded"],
            files=row["files"],
            bytes=row["bytes"],
            pending=pending,
        )

    # -- mirror ----------------------------------------------------------------

    def get_mirrored(self, rule: str, remote_rel: str) -> Mirrored | None:
        found = self._records(
            Mirrored, "SELECT * FROM mirrored WHERE rule=? AND remote_rel=?", rule, remote_rel
        )
        return found[0] if found else None

    def mirrored_for_rule(self, rule: str) -> list[Mirrored]:
        return self._records(
            Mirrored, "SELECT * FROM mirrored WHERE rule=? ORDER BY remote_rel", rule
        )

    def put_mirrored(self, rec: Mirrored) -> None:
        row = _to_row(rec)
        with self._tx() as db:
            db.execute(_insert("mirrored", row), row)

    def delete_mirrored(self, rule: str, remote_rel: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM mirrored WHERE rule=? AND remote_rel=?", (rule, remote_rel))

    # -- conflicts -------------------------------------------------------------

    def add_conflict(self, conflict: Conflict) -> None:
        row = {f.name: getattr(conflict, f.name) for f in dataclasses.fields(conflict)}
        with self._tx() as db:
            db.execute(_insert("conflicts", row), row)

    def conflicts(self, rule: str, *, limit: int = 20) -> list[Conflict]:
        """The rule's latest conflicts, newest first."""
        return self._records(
            Conflict,
            "SELECT * FROM conflicts WHERE rule=? ORDER BY id DESC LIMIT ?",
            rule,
            limit,
        )

    # -- totals ----------------------------------------------------------------

    def add_total(self, rule: str, kind: str, nbytes: int) -> None:
        """Count one event of ``kind`` (and its bytes) in the rule's running totals."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO totals VALUES (?,?,1,?) ON CONFLICT(rule, kind) DO UPDATE SET "
                "files=files+1, bytes=bytes+excluded.bytes",
                (rule, kind, nbytes),
            )

    def totals(self, rule: str) -> list[Total]:
        return self._records(Total, "SELECT * FROM totals WHERE rule=? ORDER BY kind", rule)
