"""The upload side of a rule: local files -> remote folder, as march -> plan -> execute.

The march scans the local folder and reads the state store's records; the planner
(:mod:`.plan`) decides, with no I/O, what a pass or a file needs; this module executes
it. A file is sent whole the first time (under a temporary name, then moved into place,
so readers never see half a dataset), as new rows when a ``.b2nd`` only grew, as a
server-side move when it was renamed locally, and removed remotely only when the rule
allows deletions and the pass stays under the deletion cap.
"""

from __future__ import annotations

import contextlib
import logging
import math
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
from ..plugins.hookspecs import ConverterContext, LazyExprRequest
from ..plugins.manager import Plugins
from ..records import Shipped
from ..state import StateStore
from .arrays import ARRAY_SUFFIXES, Layout, layout_of, open_array, rows_frame
from .localtree import TEMP_PREFIX, Matcher, scan
from .plan import (
    AppendFrom,
    LocalFile,
    Move,
    Send,
    Unchanged,
    UploadPlan,
    append_resume,
    decide_file,
    plan_upload_pass,
    remote_path,
    rows_to_append,
)
from .transforms import Chain

__all__ = ["ReconcileResult", "UploadEngine"]

log = logging.getLogger(__name__)

#: At most this many bytes of rows go into one append request.
_APPEND_BYTES = 64 * 2**20


@dataclass(slots=True)
class ReconcileResult:
    """What a full pass did: files left to send (the queue sends them), moves and
    removals done, and why deletions (or the whole pass) were refused."""

    to_send: list[LocalFile] = field(default_factory=list)
    moved: int = 0
    removed: int = 0
    refused: str | None = None


class UploadEngine:
    """Runs one ``[[upload]]`` rule against one server."""

    def __init__(
        self,
        rule: UploadRule,
        client: Client,
        state: StateStore,
        emit: EventSink,
        plugins: Plugins,
    ) -> None:
        self.rule = rule
        self.client = client
        self.state = state
        self.emit = emit
        self.plugins = plugins
        self.matcher = Matcher(rule.include, rule.exclude)
        self.chain = Chain.build(rule.transforms, plugins.transforms, rule.name, "upload")
        # Moves and removals are decided and done against a consistent view of the
        # records: a pass and a watched file may both see one rename.
        self._structure = threading.Lock()
        self._refused: set[str] = set()  # names already reported as unsendable
        self._in_flight: set[int] = set()  # intents of uploads under way
        self._books = threading.Lock()  # guards the two sets above

    # -- paths -----------------------------------------------------------------

    def remote_for(self, relpath: str) -> str:
        """Where ``relpath`` goes; a file the rule converts goes there as ``.b2nd``."""
        return remote_path(self.rule.remote, relpath, self.rule.convert)

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

    # -- a full pass -----------------------------------------------------------

    def run_pass(self) -> ReconcileResult:
        """A full pass, recorded in the state store (``status`` shows it); a failure is
        reported, and the next pass tries again."""
        started = time.time()
        try:
            result = self.reconcile()
        except Cat2Error as exc:
            log.warning("%s: pass failed: %s", self.rule.name, exc)
            result = ReconcileResult(refused=str(exc))
        self.state.record_pass(self.rule.name, started=started, error=result.refused)
        return result

    def reconcile(self) -> ReconcileResult:
        """Find the files to send, turn renames into moves, apply deletions."""
        local = self._march()
        if local is not None:
            self.drop_leftovers()
        records = {r.relpath: r for r in self.state.shipped_for_rule(self.rule.name)}
        plan = plan_upload_pass(
            remote_folder=self.rule.remote,
            local=local,
            records=records,
            converted=self.rule.convert,
            delete=self.rule.delete,
            max_delete=self.rule.max_delete,
            folder=str(self.rule.local),
        )
        return self._execute(plan)

    def _march(self) -> dict[str, LocalFile] | None:
        """The files this rule syncs, by relative path; None when the folder is missing."""
        if not self.rule.local.is_dir():
            return None
        found = scan(self.rule.local, self.wants, follow_symlinks=self.rule.follow_symlinks)
        return {rel: LocalFile.of(rel, st) for rel, st in found}

    def _execute(self, plan: UploadPlan) -> ReconcileResult:
        result = ReconcileResult(to_send=[s.file for s in plan.send], refused=plan.refusal)
        for move in plan.moves:
            placed = self._place(move.to)
            if isinstance(placed, Event):
                self.emit(placed)
                result.moved += 1
            elif isinstance(placed, Send):
                result.to_send.append(move.to)
        if plan.refusal:
            self.emit(
                Event(
                    kind=EventKind.SKIPPED,
                    rule=self.rule.name,
                    path=".",
                    remote=self.rule.remote,
                    message=plan.refusal,
                )
            )
        with self._structure:
            for removal in plan.removals:
                result.removed += self._remove(removal.record)
        return result

    def _remove(self, rec: Shipped) -> int:
        """Remove the remote copy of a vanished file; 0 when it came back meanwhile."""
        if self.local_for(rec.relpath).exists():
            return 0
        with contextlib.suppress(NotFound):  # already gone remotely: just forget it
            self.client.remove(rec.remote)
        self.state.delete_shipped(self.rule.name, rec.relpath)
        self.emit(
            Event(kind=EventKind.REMOVED, rule=self.rule.name, path=rec.relpath, remote=rec.remote)
        )
        return 1

    # -- one file --------------------------------------------------------------

    def sync_file(self, relpath: str) -> Event | None:
        """Bring the remote copy of ``relpath`` up to date; returns what happened (None
        when nothing had to be done).

        :raises NotReady: an array file does not open yet.
        :raises FileChanged: the file changed during the transfer.
        :raises RemoteError: the server failed; the caller retries later.
        """
        file = self._local_file(relpath)
        if file is None:
            return None  # deleted meanwhile: the next pass decides about the remote copy
        placed = self._place(file)
        if not isinstance(placed, Send):
            return placed if isinstance(placed, Event) else None
        started = time.monotonic()
        # This thread's bytes only: other files are being sent at the same time.
        sent_before = self.client.stats.this_thread()[0]
        event = self._send(file, placed.record)
        return Event(
            kind=event.kind,
            rule=event.rule,
            path=event.path,
            remote=event.remote,
            rows=event.rows,
            bytes=self.client.stats.this_thread()[0] - sent_before,
            seconds=time.monotonic() - started,
        )

    def _local_file(self, relpath: str) -> LocalFile | None:
        path = self.local_for(relpath)
        try:
            st = path.stat() if self.rule.follow_symlinks else path.lstat()
        except FileNotFoundError:
            return None
        if not path.is_file() or (path.is_symlink() and not self.rule.follow_symlinks):
            return None
        return LocalFile.of(relpath, st)

    def _place(self, file: LocalFile) -> Unchanged | Send | Event:
        """Decide ``file``'s fate from the records as they are now, and do a move.

        A pass and a watched change may see the same rename, so the decision is taken
        again here, under the lock, right before the move is done.
        """
        with self._structure:
            rec = self.state.get_shipped(self.rule.name, file.relpath)
            twins = [] if rec else self.state.shipped_by_inode(self.rule.name, file.dev, file.inode)
            present = {t.relpath for t in twins if self.local_for(t.relpath).exists()}
            decision = decide_file(
                file, rec, twins=twins, present=present, remote=self.remote_for(file.relpath)
            )
            if isinstance(decision, Move):
                moved = self._move(decision)
                return moved if moved is not None else Send(file, None)
            return decision

    def _move(self, move: Move) -> Event | None:
        """Move the remote copy; None when it is gone (then the file is sent again)."""
        try:
            self.client.move(move.record.remote, move.remote)
        except NotFound:
            self.state.delete_shipped(self.rule.name, move.record.relpath)
            return None
        self.state.rename_shipped(move.record, move.to.relpath, move.remote)
        return Event(
            kind=EventKind.MOVED,
            rule=self.rule.name,
            path=move.to.relpath,
            remote=move.remote,
            message=f"renamed from {move.record.relpath}",
        )

    def follow_up(self, relpath: str, event: Event) -> list[LazyExprRequest]:
        """The plugins' work on the server after ``relpath`` was sent; returns the lazy
        expressions they want computed from it.

        :raises PluginError: a plugin failed; the file is then sent again later (its
            record is forgotten, so the retry does not find it up to date).
        """
        if event.remote is None or event.kind not in (EventKind.UPLOADED, EventKind.APPENDED):
            return []
        try:
            if event.kind == EventKind.UPLOADED:
                self.plugins.uploaded(self.rule, self.local_for(relpath), event.remote, self.client)
            if event.rows is None:
                return []
            rec = self.state.get_shipped(self.rule.name, relpath)
            info = {
                "shape": rec.shape if rec else None,
                "dtype": rec.dtype if rec else None,
                "rows": event.rows,
            }
            return self.plugins.lazyexprs(self.rule, event.remote, info)
        except PluginError:
            self.state.delete_shipped(self.rule.name, relpath)
            raise

    # -- sending ---------------------------------------------------------------

    def _send(self, file: LocalFile, rec: Shipped | None) -> Event:
        path = self.local_for(file.relpath)
        suffix = path.suffix.lower()
        if suffix in self.rule.convert:  # only what the rule asks for, whatever is installed
            return self._upload_converted(file, path)
        if suffix not in ARRAY_SUFFIXES:
            return self._upload_whole(file, path, layout=None)
        try:
            obj = open_array(path)
        except Exception as exc:  # blosc2 raises plain RuntimeError/ValueError on damage
            raise NotReady(f"does not open as a Blosc2 container yet ({exc})") from exc
        layout = self._layout(obj) if suffix == ".b2nd" and self.rule.append else None
        if layout is not None and rec is not None:
            appended = self._try_append(file, path, rec, obj, layout)
            if appended is not None:
                return appended
        return self._upload_whole(file, path, layout=layout)

    @staticmethod
    def _layout(obj: Any) -> Layout | None:
        if not isinstance(obj, blosc2.NDArray) or obj.ndim == 0:
            return None
        return layout_of(obj)

    @staticmethod
    def _check_unchanged(path: Path, file: LocalFile) -> None:
        try:
            now = path.stat()
        except FileNotFoundError as exc:
            raise FileChanged("vanished during the transfer") from exc
        if (now.st_size, now.st_mtime_ns) != (file.size, file.mtime_ns):
            raise FileChanged("changed during the transfer")

    def _record(self, file: LocalFile, layout: Layout | None, confirm: int | None) -> None:
        self.state.put_shipped(
            Shipped(
                rule=self.rule.name,
                relpath=file.relpath,
                remote=self.remote_for(file.relpath),
                kind="array" if layout is not None else "file",
                size=file.size,
                mtime_ns=file.mtime_ns,
                dev=file.dev,
                inode=file.inode,
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

    def _upload_converted(self, file: LocalFile, path: Path) -> Event:
        """Convert with the plugin registered for the suffix, then upload the ``.b2nd``."""
        owner, convert = self.plugins.converters[path.suffix.lower()]
        ctx = ConverterContext(
            settings=self.plugins.settings_for(owner), rule=self.rule.name, path=file.relpath
        )
        with self._scratch() as tmp:
            converted = Path(tmp) / PurePosixPath(file.relpath).with_suffix(".b2nd").name
            try:
                convert(path, converted, ctx)
            except Exception as exc:
                raise PluginError(owner, "converter", exc, file.relpath) from exc
            self._check_unchanged(path, file)
            if self.chain is not None:  # the rule's transforms apply to converted arrays too
                array = blosc2.open(str(converted), mode="r")
                if isinstance(array, blosc2.NDArray) and array.ndim:
                    transformed = Path(tmp) / f"t-{converted.name}"
                    self.chain.rewrite(array, transformed, path=file.relpath)
                    converted = transformed
            return self._upload_whole(file, path, layout=None, source=converted)

    def _upload_whole(
        self, file: LocalFile, path: Path, layout: Layout | None, source: Path | None = None
    ) -> Event:
        """Upload ``source`` (default: the local file itself) as the file's remote."""
        if source is None and layout is not None and self.chain is not None:
            with self._scratch() as tmp:
                transformed = Path(tmp) / path.name
                self.chain.rewrite(open_array(path), transformed, path=file.relpath)
                return self._upload_whole(file, path, layout, source=transformed)
        remote = self.remote_for(file.relpath)
        final = PurePosixPath(remote)
        intent = None
        if final.suffix:
            # Upload beside the target, then move: the server writes uploads in place.
            tmp = str(final.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}")
            intent = self._upload_then_move(file, source or path, tmp, remote)
        else:
            # A name without suffix is a folder to the server's move: upload in place.
            self.client.upload(source or path, remote)
            self._check_unchanged(path, file)
        self._record(file, layout, confirm=intent)
        rows = layout.shape[0] if layout else None
        return Event(
            kind=EventKind.UPLOADED,
            rule=self.rule.name,
            path=file.relpath,
            remote=remote,
            rows=rows,
        )

    def _upload_then_move(self, file: LocalFile, source: Path, tmp: str, remote: str) -> int:
        """Upload ``source`` as ``tmp`` and move it to ``remote``; returns the intent to
        confirm with the record."""
        path = self.local_for(file.relpath)
        with self._books:
            intent = self.state.intend(self.rule.name, file.relpath, "upload", tmp)
            self._in_flight.add(intent)
        try:
            self.client.upload(source, tmp)
            self._check_unchanged(path, file)
            self.client.move(tmp, remote)
        except Exception:
            # Readers list the folder: a temporary must not wait for the next start.
            self._drop_temporary(intent, tmp)
            raise
        finally:
            with self._books:
                self._in_flight.discard(intent)
        return intent

    # -- appends ---------------------------------------------------------------

    def _try_append(
        self, file: LocalFile, path: Path, rec: Shipped, arr: Any, layout: Layout
    ) -> Event | None:
        """Send only the new rows, or return None when a whole upload is needed."""
        sent = rows_to_append(rec, layout)
        if sent is None or rows_to_append(rec, layout, layout_of(arr, sent)) is None:
            return None
        remote = self.remote_for(file.relpath)
        found = self._remote_cursor(remote, file.relpath, arr, sent, layout.shape[0])
        if found is None:
            return None
        cursor, expect = found
        total = layout.shape[0]
        row_bytes = max(1, arr.dtype.itemsize * math.prod(arr.shape[1:]))
        step = max(1, _APPEND_BYTES // row_bytes)
        while cursor < total:
            stop = min(total, cursor + step)
            rows = self._rows_to_send(arr, file.relpath, cursor, stop, expect)
            intent = self.state.intend(self.rule.name, file.relpath, "append", remote, cursor, stop)
            new_shape = self.client.append(remote, rows)
            if new_shape[0] != stop:
                raise BadRequest(
                    f"append ended at {new_shape[0]} rows, expected {stop}", path=remote
                )
            self.state.done_intent(intent)
            cursor = stop
        self._check_unchanged(path, file)
        self._record(file, layout, confirm=None)
        return Event(
            kind=EventKind.APPENDED,
            rule=self.rule.name,
            path=file.relpath,
            remote=remote,
            rows=total - sent,
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
        self, remote: str, relpath: str, arr: Any, sent: int, total: int
    ) -> tuple[int, tuple[str, tuple[int, ...]]] | None:
        """Rows the server already has and its ``(dtype, trailing shape)``, or None when
        it does not hold our prefix any more (see :func:`.plan.append_resume`)."""
        try:
            info, _ = self.client.stat(remote)
        except NotFound:
            return None
        shape = info.get("shape")
        trailing = None if self.chain is not None else tuple(arr.shape[1:])
        resume = append_resume(shape, sent=sent, total=total, trailing=trailing)
        if resume is None:
            return None
        assert shape  # append_resume said so
        expect = (str(info.get("dtype")), tuple(shape[1:]))
        if isinstance(resume, AppendFrom):
            return resume.cursor, expect
        # Rows beyond what we recorded must be ours before they are trusted.
        theirs = self.client.fetch(remote, slice(resume.sent, resume.have))
        ours = arr[resume.sent : resume.have]
        if self.chain is not None:
            ours = self.chain.apply(ours, path=relpath, start_row=resume.sent)
        return (resume.have, expect) if np.array_equal(theirs, ours) else None

    # -- temporaries -----------------------------------------------------------

    def _drop_temporary(self, intent: int, tmp: str) -> None:
        """Remove a temporary remote file; its intent goes only once it is gone."""
        try:
            self.client.remove(tmp)
        except NotFound:
            pass  # never created, or already moved into place
        except Cat2Error as exc:
            log.warning("%s: cannot remove leftover %s: %s", self.rule.name, tmp, exc)
            return  # the intent keeps it for the next pass
        self.state.done_intent(intent)

    def drop_leftovers(self) -> None:
        """Remove the temporary remote files of uploads that failed and could not clean
        up after themselves (the server was away); uploads under way keep theirs."""
        with self._books:
            leftovers = [
                i
                for i in self.state.intents(self.rule.name)
                if i.op == "upload" and i.id not in self._in_flight
            ]
        for intent in leftovers:
            self._drop_temporary(intent.id, intent.remote)

    def cleanup_intents(self) -> None:
        """At start: remove temporaries of interrupted uploads, forget finished appends
        (an append's cursor is the remote shape, not the intent)."""
        self.drop_leftovers()
        for intent in self.state.intents(self.rule.name):
            if intent.op != "upload":
                self.state.done_intent(intent.id)
