"""The upload side of a rule: local files → remote folder.

A file is sent whole the first time (under a temporary name, then moved into place, so
readers never see half a dataset), as new rows when a ``.b2nd`` only grew, as a
server-side move when it was renamed locally, and removed remotely only when the rule
allows deletions and the pass stays under the deletion cap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import blosc2
import numpy as np

from ..client import Client
from ..errors import BadRequest, Cat2Error, FileChanged, NotFound, NotReady, PluginError
from ..events import Event, EventKind, EventSink
from ..manifest import UploadRule
from ..plugins.hookspecs import ConverterContext
from ..plugins.manager import Plugins
from ..state import Shipped, StateStore
from .arrays import ARRAY_SUFFIXES, Layout, layout_of, open_array, rows_frame
from .localtree import TEMP_PREFIX, Matcher, scan
from .transforms import Chain

__all__ = ["ReconcileResult", "UploadEngine"]

log = logging.getLogger(__name__)

#: At most this many bytes of rows go into one append request.
_APPEND_BYTES = 64 * 2**20


@dataclass(slots=True)
class ReconcileResult:
    """What a full pass found: files to send, and what it did about vanished ones."""

    to_send: list[tuple[str, os.stat_result]] = field(default_factory=list)
    moved: int = 0
    removed: int = 0
    refused: str | None = None  # why deletions were refused, if they were


def _same_file(st: os.stat_result, rec: Shipped) -> bool:
    return st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


class UploadEngine:
    """Runs one ``[[upload]]`` rule against one server."""

    def __init__(
        self, rule: UploadRule, client: Client, state: StateStore, emit: EventSink, plugins: Plugins
    ) -> None:
        self.rule = rule
        self.client = client
        self.state = state
        self.emit = emit
        self.plugins = plugins
        self.matcher = Matcher(rule.include, rule.exclude)
        self.chain = Chain.build(rule.transforms, plugins.transforms, rule.name, "upload")
        # Moves and removals are decided against a consistent view of the records.
        self._structure = threading.Lock()
        self._refused: set[str] = set()  # names already reported as unsendable
        self._in_flight: set[int] = set()  # journal entries of uploads under way
        self._books = threading.Lock()  # guards the two sets above

    # -- paths -----------------------------------------------------------------

    def remote_for(self, relpath: str) -> str:
        """Where ``relpath`` goes; a file a plugin converts goes there as ``.b2nd``."""
        if PurePosixPath(relpath).suffix.lower() in self.plugins.converters:
            relpath = str(PurePosixPath(relpath).with_suffix(".b2nd"))
        return f"{self.rule.remote}/{relpath}"

    def local_for(self, relpath: str) -> Path:
        return self.rule.local / relpath

    def wants(self, relpath: str) -> bool:
        """The rule's globs accept ``relpath`` and no plugin's ``cat2sync_ignore`` skips it."""
        if not self.matcher(relpath) or self.plugins.ignore(self.rule, relpath):
            return False
        if "\n" in relpath:
            self._refuse_name(relpath)
            return False
        return True

    def _refuse_name(self, relpath: str) -> None:
        """Caterva2 cannot store a name with a newline (its routes do not match one):
        say so once, not at every pass."""
        with self._books:
            if relpath in self._refused:
                return
            self._refused.add(relpath)
        self.emit(
            Event(
                kind=EventKind.SKIPPED,
                rule=self.rule.name,
                path=relpath,
                message="the name holds a newline, which Caterva2 cannot store: not sent",
            )
        )

    def relpath_of(self, path: Path) -> str | None:
        """``path`` relative to the rule folder, or None when it is outside it."""
        try:
            rel = path.relative_to(self.rule.local)
        except ValueError:
            return None
        return rel.as_posix()

    # -- one file --------------------------------------------------------------

    def sync_file(self, relpath: str) -> Event | None:
        """Bring the remote copy of ``relpath`` up to date; returns what happened.

        :raises NotReady: an array file does not open yet.
        :raises FileChanged: the file changed during the transfer.
        :raises RemoteError: the server failed; the caller retries later.
        """
        path = self.local_for(relpath)
        try:
            st = path.stat() if self.rule.follow_symlinks else path.lstat()
        except FileNotFoundError:
            return None  # deleted meanwhile: the next pass decides about the remote copy
        if not path.is_file() or (path.is_symlink() and not self.rule.follow_symlinks):
            return None
        rec = self.state.get_shipped(self.rule.name, relpath)
        if rec is not None and _same_file(st, rec):
            self.state.done_pending(self.rule.name, relpath)
            return None
        if rec is None:
            moved = self._move_if_renamed(relpath, st)
            if moved is not None:
                return moved
            # A pass may have moved it here meanwhile (the rename was seen twice).
            rec = self.state.get_shipped(self.rule.name, relpath)
            if rec is not None and _same_file(st, rec):
                return None
        started = time.monotonic()
        # This thread's bytes only: other files are being sent at the same time.
        sent_before = self.client.stats.this_thread()[0]
        event = self._send(relpath, path, st, rec)
        return Event(
            kind=event.kind,
            rule=event.rule,
            path=event.path,
            remote=event.remote,
            rows=event.rows,
            bytes=self.client.stats.this_thread()[0] - sent_before,
            seconds=time.monotonic() - started,
        )

    def _send(self, relpath: str, path: Path, st: os.stat_result, rec: Shipped | None) -> Event:
        suffix = path.suffix.lower()
        if suffix in self.plugins.converters:
            return self._upload_converted(relpath, path, st)
        if suffix not in ARRAY_SUFFIXES:
            return self._upload_whole(relpath, path, st, layout=None)
        try:
            obj = open_array(path)
        except Exception as exc:  # blosc2 raises plain RuntimeError/ValueError on damage
            raise NotReady(f"does not open as a Blosc2 container yet ({exc})") from exc
        layout = self._layout(obj) if suffix == ".b2nd" and self.rule.append else None
        if layout is not None and rec is not None and rec.kind == "array":
            appended = self._try_append(relpath, path, st, rec, obj, layout)
            if appended is not None:
                return appended
        return self._upload_whole(relpath, path, st, layout=layout)

    @staticmethod
    def _layout(obj: Any) -> Layout | None:
        if not isinstance(obj, blosc2.NDArray) or obj.ndim == 0:
            return None
        return layout_of(obj)

    def _check_unchanged(self, path: Path, st: os.stat_result) -> None:
        try:
            now = path.stat()
        except FileNotFoundError as exc:
            raise FileChanged("vanished during the transfer") from exc
        if now.st_size != st.st_size or now.st_mtime_ns != st.st_mtime_ns:
            raise FileChanged("changed during the transfer")

    def _record(
        self, relpath: str, st: os.stat_result, layout: Layout | None, confirm: int | None
    ) -> None:
        self.state.put_shipped(
            Shipped(
                rule=self.rule.name,
                relpath=relpath,
                remote=self.remote_for(relpath),
                kind="array" if layout is not None else "file",
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                dev=st.st_dev,
                inode=st.st_ino,
                shape=layout.shape if layout else None,
                dtype=layout.dtype if layout else None,
                chunks=layout.chunks if layout else None,
                digests=layout.digests if layout else None,
                tail_digest=layout.tail_digest if layout else None,
            ),
            confirm=confirm,
        )

    def _scratch(self) -> tempfile.TemporaryDirectory[str]:
        """A private folder for converted or transformed copies, in the state folder
        (not /tmp, which is often a small RAM disk)."""
        root = self.state.state_dir / "tmp"
        root.mkdir(exist_ok=True)
        return tempfile.TemporaryDirectory(dir=root)

    def _upload_converted(self, relpath: str, path: Path, st: os.stat_result) -> Event:
        """Convert with the plugin registered for the suffix, then upload the ``.b2nd``."""
        owner, convert = self.plugins.converters[path.suffix.lower()]
        ctx = ConverterContext(
            settings=self.plugins.settings_for(owner), rule=self.rule.name, path=relpath
        )
        with self._scratch() as tmp:
            converted = Path(tmp) / PurePosixPath(relpath).with_suffix(".b2nd").name
            try:
                convert(path, converted, ctx)
            except Exception as exc:
                raise PluginError(owner, "converter", exc, relpath) from exc
            self._check_unchanged(path, st)
            if self.chain is not None:  # the rule's transforms apply to converted arrays too
                array = blosc2.open(str(converted), mode="r")
                if isinstance(array, blosc2.NDArray) and array.ndim:
                    transformed = Path(tmp) / f"t-{converted.name}"
                    self.chain.rewrite(array, transformed, path=relpath)
                    converted = transformed
            return self._upload_whole(relpath, path, st, layout=None, source=converted)

    def _upload_whole(
        self,
        relpath: str,
        path: Path,
        st: os.stat_result,
        layout: Layout | None,
        source: Path | None = None,
    ) -> Event:
        """Upload ``source`` (default: the local file itself) as ``relpath``'s remote."""
        if source is None and layout is not None and self.chain is not None:
            with self._scratch() as tmp:
                transformed = Path(tmp) / path.name
                self.chain.rewrite(open_array(path), transformed, path=relpath)
                return self._upload_whole(relpath, path, st, layout, source=transformed)
        remote = self.remote_for(relpath)
        final = PurePosixPath(remote)
        if final.suffix:
            # Upload beside the target, then move: the server writes uploads in place.
            tmp = str(final.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}")
            with self._books:
                entry = self.state.journal_begin(self.rule.name, relpath, "upload", tmp)
                self._in_flight.add(entry)
            try:
                self.client.upload(source or path, tmp)
                self._check_unchanged(path, st)
                self.client.move(tmp, remote)
            except Exception:
                # Readers list the folder: a temporary must not wait for the next start.
                self._drop_temporary(entry, tmp)
                raise
            finally:
                with self._books:
                    self._in_flight.discard(entry)
        else:
            # A name without suffix is a folder to the server's move: upload in place.
            entry = None
            self.client.upload(source or path, remote)
            self._check_unchanged(path, st)
        self._record(relpath, st, layout, confirm=entry)
        rows = layout.shape[0] if layout else None
        return Event(
            kind=EventKind.UPLOADED, rule=self.rule.name, path=relpath, remote=remote, rows=rows
        )

    # -- appends ---------------------------------------------------------------

    def _try_append(
        self, relpath: str, path: Path, st: os.stat_result, rec: Shipped, arr: Any, layout: Layout
    ) -> Event | None:
        """Send only the new rows, or return None when a whole upload is needed."""
        sent_rows = rec.shape[0] if rec.shape else 0
        grew = (
            layout.dtype == rec.dtype
            and layout.chunks == rec.chunks
            and rec.shape is not None
            and layout.shape[1:] == rec.shape[1:]
            and layout.shape[0] > sent_rows
        )
        if not grew:
            return None
        prefix = layout_of(arr, sent_rows)
        if (prefix.digests, prefix.tail_digest) != (rec.digests, rec.tail_digest):
            return None  # earlier rows changed: only a whole upload is right
        remote = self.remote_for(relpath)
        found = self._remote_cursor(remote, relpath, arr, sent_rows, layout.shape[0])
        if found is None:
            return None
        cursor, expect = found
        total = layout.shape[0]
        row_bytes = max(1, arr.dtype.itemsize * int(_prod(arr.shape[1:])))
        step = max(1, _APPEND_BYTES // row_bytes)
        while cursor < total:
            stop = min(total, cursor + step)
            rows = self._rows_to_send(arr, relpath, cursor, stop, expect)
            entry = self.state.journal_begin(
                self.rule.name, relpath, "append", remote, cursor, stop
            )
            new_shape = self.client.append(remote, rows)
            if new_shape[0] != stop:
                raise BadRequest(
                    f"append ended at {new_shape[0]} rows, expected {stop}", path=remote
                )
            self.state.journal_done(entry)
            cursor = stop
        self._check_unchanged(path, st)
        self._record(relpath, st, layout, confirm=None)
        return Event(
            kind=EventKind.APPENDED,
            rule=self.rule.name,
            path=relpath,
            remote=remote,
            rows=total - sent_rows,
        )

    def _rows_to_send(
        self, arr: Any, relpath: str, start: int, stop: int, expect: tuple[str, tuple[int, ...]]
    ) -> Any:
        """Rows ``start:stop`` as they must land remotely (transformed, checked)."""
        if self.chain is None:
            return rows_frame(arr, start, stop)
        rows = self.chain.apply(arr[start:stop], path=relpath, start_row=start, expect=expect)
        return blosc2.asarray(rows)

    def _remote_cursor(
        self,
        remote: str,
        relpath: str,
        arr: Any,
        sent_rows: int,
        total: int,
    ) -> tuple[int, tuple[str, tuple[int, ...]]] | None:
        """Rows the server already has and its ``(dtype, trailing shape)``, or None when
        it does not hold our prefix any more.

        The server's append is not idempotent: after a lost response or a crash the
        rows may already be there. The remote shape is the cursor, and rows beyond
        what we recorded are compared with the local ones before they are trusted.
        """
        try:
            info, _ = self.client.stat(remote)
        except NotFound:
            return None
        shape, dtype = info.get("shape"), info.get("dtype")
        if not shape or (self.chain is None and tuple(shape[1:]) != tuple(arr.shape[1:])):
            return None
        have, expect = int(shape[0]), (str(dtype), tuple(shape[1:]))
        if have == sent_rows:
            return have, expect
        if not sent_rows < have <= total:
            return None
        theirs = self.client.fetch(remote, slice(sent_rows, have))
        ours = (
            arr[sent_rows:have]
            if self.chain is None
            else self.chain.apply(arr[sent_rows:have], path=relpath, start_row=sent_rows)
        )
        return (have, expect) if np.array_equal(theirs, ours) else None

    # -- renames and deletions -------------------------------------------------

    def _move_if_renamed(self, relpath: str, st: os.stat_result) -> Event | None:
        """A new path that is a shipped file under its old name becomes a remote move."""
        with self._structure:
            for twin in self.state.shipped_by_inode(self.rule.name, *_identity(st)):
                if twin.relpath == relpath or not _same_file(st, twin):
                    continue
                if self.local_for(twin.relpath).exists():
                    continue  # a hard link, or the old name came back: not a rename
                new_remote = self.remote_for(relpath)
                if not PurePosixPath(new_remote).suffix:
                    return None  # the server would read the target as a folder: re-upload
                try:
                    self.client.move(twin.remote, new_remote)
                except NotFound:
                    self.state.delete_shipped(self.rule.name, twin.relpath)
                    return None  # the remote copy is gone: upload again
                self.state.rename_shipped(twin, relpath, new_remote)
                return Event(
                    kind=EventKind.MOVED,
                    rule=self.rule.name,
                    path=relpath,
                    remote=new_remote,
                    message=f"renamed from {twin.relpath}",
                )
        return None

    def reconcile(self) -> ReconcileResult:
        """A full pass: find files to send, turn renames into moves, apply deletions."""
        result = ReconcileResult()
        if not self.rule.local.is_dir():
            result.refused = (
                f"local folder {self.rule.local} is missing (unmounted?): "
                "nothing sent, no remote file removed"
            )
            self.emit(
                Event(
                    kind=EventKind.SKIPPED,
                    rule=self.rule.name,
                    path=".",
                    remote=self.rule.remote,
                    message=result.refused,
                )
            )
            return result
        self.drop_leftovers()
        local = dict(scan(self.rule.local, self.wants, follow_symlinks=self.rule.follow_symlinks))
        records = {r.relpath: r for r in self.state.shipped_for_rule(self.rule.name)}
        for relpath, st in local.items():
            rec = records.get(relpath)
            if rec is not None and _same_file(st, rec):
                continue
            moved = self._move_if_renamed(relpath, st) if rec is None else None
            if moved is not None:
                self.emit(moved)  # sync_file's caller emits its own; a pass must too
                result.moved += 1
                continue
            result.to_send.append((relpath, st))
        records = {r.relpath: r for r in self.state.shipped_for_rule(self.rule.name)}
        vanished = [r for p, r in records.items() if p not in local]
        if vanished:
            self._handle_vanished(
                vanished, total=len(records), local_count=len(local), result=result
            )
        return result

    def _handle_vanished(
        self, vanished: list[Shipped], *, total: int, local_count: int, result: ReconcileResult
    ) -> None:
        if not self.rule.delete:
            return
        cap = max(1, int(self.rule.max_delete * total))
        if local_count == 0:
            result.refused = (
                f"the local folder is empty but {total} files were shipped "
                "(unmounted?): no remote file removed"
            )
        elif len(vanished) > cap:
            result.refused = (
                f"{len(vanished)} of {total} shipped files vanished, more than "
                f"max_delete allows ({cap}): no remote file removed"
            )
        if result.refused:
            self.emit(
                Event(
                    kind=EventKind.SKIPPED,
                    rule=self.rule.name,
                    path=".",
                    remote=self.rule.remote,
                    message=result.refused,
                )
            )
            return
        with self._structure:
            for rec in vanished:
                if self.local_for(rec.relpath).exists():
                    continue  # came back meanwhile
                with contextlib.suppress(NotFound):  # already gone remotely: just forget it
                    self.client.remove(rec.remote)
                self.state.delete_shipped(self.rule.name, rec.relpath)
                result.removed += 1
                self.emit(
                    Event(
                        kind=EventKind.REMOVED,
                        rule=self.rule.name,
                        path=rec.relpath,
                        remote=rec.remote,
                    )
                )

    def _drop_temporary(self, entry: int, tmp: str) -> None:
        """Remove a temporary remote file; its journal entry goes only once it is gone."""
        try:
            self.client.remove(tmp)
        except NotFound:
            pass  # never created, or already moved into place
        except Cat2Error as exc:
            log.warning("%s: cannot remove leftover %s: %s", self.rule.name, tmp, exc)
            return  # the journal keeps it for the next pass
        self.state.journal_done(entry)

    def drop_leftovers(self) -> None:
        """Remove the temporary remote files of uploads that failed and could not clean
        up after themselves (the server was away); uploads under way keep theirs."""
        with self._books:
            leftovers = [
                e
                for e in self.state.journal(self.rule.name)
                if e.op == "upload" and e.id not in self._in_flight
            ]
        for entry in leftovers:
            self._drop_temporary(entry.id, entry.remote)

    def cleanup_journal(self) -> None:
        """At start: remove temporaries of interrupted uploads, forget finished appends
        (an append's cursor is the remote shape, not the journal)."""
        self.drop_leftovers()
        for entry in self.state.journal(self.rule.name):
            if entry.op != "upload":
                self.state.journal_done(entry.id)


def _prod(values: tuple[int, ...]) -> int:
    out = 1
    for v in values:
        out *= v
    return out
