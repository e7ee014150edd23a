"""Sending one version of a local file: whole (under a temporary name, then moved into
place, so readers never see half a dataset), or only its new rows when a ``.b2nd`` grew.

Right before anything is written under a final name, an ``info`` says what the name
holds and :func:`.plan.decide_write` whether cat2sync may write over it: the name is
free, or holds what cat2sync last wrote there (its ETag is recorded after every write).
Another writer's version is a conflict, carried out as the rule's ``on_conflict`` says;
``overwrite`` skips the check (and its requests) altogether.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from ..records import Intent, Shipped
from ..state import StateStore
from . import conflicts
from .arrays import ARRAY_SUFFIXES, Layout, layout_of, open_array, rows_frame
from .compare import compare
from .localtree import TEMP_PREFIX
from .plan import (
    ABSENT,
    Adopt,
    AppendFrom,
    Clash,
    CompareFirst,
    LocalFile,
    Move,
    Proceed,
    RemoteState,
    append_resume,
    decide_write,
    first_contact,
    remote_path,
    rows_to_append,
)
from .transforms import Chain

__all__ = ["Sender"]

log = logging.getLogger(__name__)

#: At most this many bytes of rows go into one append request.
_APPEND_BYTES = 64 * 2**20


@dataclass(frozen=True, slots=True)
class _Landed:
    """Where a version ended up: ``remote`` with its ETag, or nowhere (``theirs``: a
    skipped conflict, or ``adopted``: the server held it already)."""

    remote: str
    etag: str | None
    kind: EventKind
    theirs: bool = False
    clash: Clash | None = None


class Sender:
    """Sends files of one ``[[upload]]`` rule."""

    def __init__(
        self,
        rule: UploadRule,
        client: Client,
        state: StateStore,
        emit: EventSink,
        plugins: Plugins,
        chain: Chain | None,
    ) -> None:
        self.rule = rule
        self.client = client
        self.state = state
        self.emit = emit
        self.plugins = plugins
        self.chain = chain
        self._in_flight: set[int] = set()  # intents of uploads under way
        self._books = threading.Lock()

    def remote_for(self, relpath: str) -> str:
        """Where ``relpath`` goes; a file the rule converts goes there as ``.b2nd``."""
        return remote_path(self.rule.remote, relpath, self.rule.convert)

    def target_for(self, relpath: str, rec: Shipped | None) -> str:
        """Where the next version of ``relpath`` goes: where the last one went (its
        conflict copy, after a kept-both conflict), or its own name."""
        own = self.remote_for(relpath)
        if (
            rec is None
            or rec.theirs
            or PurePosixPath(rec.remote).suffix != PurePosixPath(own).suffix
        ):
            return own
        return rec.remote

    # -- one version -----------------------------------------------------------

    def send(self, file: LocalFile, rec: Shipped | None) -> Event:
        """Send ``file``, whose last shipped version is ``rec``; returns what happened.

        :raises NotReady: an array file does not open yet.
        :raises FileChanged: the file changed during the transfer.
        """
        path = self.rule.local / file.relpath
        suffix = path.suffix.lower()
        if suffix in self.rule.convert:  # only what the rule asks for, whatever is installed
            return self._send_converted(file, path, rec)
        if suffix not in ARRAY_SUFFIXES:
            return self._send_whole(file, path, None, rec)
        try:
            obj = open_array(path)
        except Exception as exc:  # blosc2 raises plain RuntimeError/ValueError on damage
            raise NotReady(f"does not open as a Blosc2 container yet ({exc})") from exc
        layout = _layout(obj) if suffix == ".b2nd" and self.rule.append else None
        if layout is not None and rec is not None and not rec.theirs:
            appended = self._try_append(file, path, rec, obj, layout)
            if appended is not None:
                return appended
        return self._send_whole(file, path, layout, rec)

    @contextlib.contextmanager
    def comparable(self, relpath: str) -> Iterator[Path]:
        """The local file as it is compared with the server's copy: converted first
        when the rule converts it (the transforms apply slab by slab while comparing)."""
        path = self.rule.local / relpath
        if path.suffix.lower() not in self.rule.convert:
            yield path
            return
        with self._scratch() as tmp:
            yield self._convert(path, Path(tmp), relpath)

    def compare(
        self, relpath: str, remote: str, *, progress: Callable[[int], None] | None = None
    ) -> str | None:
        """What differs between the local file and ``remote`` (None: nothing)."""
        with self.comparable(relpath) as local:
            return compare(
                self.client,
                remote,
                local,
                scratch=self.state.state_dir / "tmp",
                chain=self.chain,
                progress=progress,
            )

    def adopt(self, file: LocalFile, remote: str) -> Event:
        """Record ``file`` as shipped to ``remote``, which already holds its content (a
        first contact after a lost state folder): nothing is sent again."""
        path = self.rule.local / file.relpath
        layout = None
        if path.suffix.lower() == ".b2nd" and path.suffix.lower() not in self.rule.convert:
            layout = _layout(open_array(path)) if self.rule.append else None
        now = self._remote_state(remote)
        return self._landed(file, layout, _Landed(remote, now.etag, EventKind.ADOPTED), None)

    def skip_rename(self, move: Move, etag: str | None, clash: Clash) -> Event:
        """A renamed file's new name holds another writer's file and the rule skips
        conflicts: nothing moves; the old name's remote stays ours."""
        landed = _Landed(move.remote, etag, EventKind.CONFLICT, theirs=True, clash=clash)
        return self._landed(move.to, None, landed, None)

    # -- whole files -----------------------------------------------------------

    def _scratch(self) -> tempfile.TemporaryDirectory[str]:
        """A private folder for converted or transformed copies, in the state folder
        (not /tmp, which is often a small RAM disk)."""
        root = self.state.state_dir / "tmp"
        root.mkdir(exist_ok=True)
        return tempfile.TemporaryDirectory(dir=root)

    def _convert(self, path: Path, folder: Path, relpath: str) -> Path:
        """Convert with the plugin registered for the suffix; returns the ``.b2nd``."""
        owner, convert = self.plugins.converters[path.suffix.lower()]
        ctx = ConverterContext(
            settings=self.plugins.settings_for(owner), rule=self.rule.name, path=relpath
        )
        converted = folder / PurePosixPath(relpath).with_suffix(".b2nd").name
        try:
            convert(path, converted, ctx)
        except Exception as exc:
            raise PluginError(owner, "converter", exc, relpath) from exc
        return converted

    def _send_converted(self, file: LocalFile, path: Path, rec: Shipped | None) -> Event:
        with self._scratch() as tmp:
            converted = self._convert(path, Path(tmp), file.relpath)
            _check_unchanged(path, file)
            if self.chain is not None:  # the rule's transforms apply to converted arrays too
                array = blosc2.open(str(converted), mode="r")
                if isinstance(array, blosc2.NDArray) and array.ndim:
                    transformed = Path(tmp) / f"t-{converted.name}"
                    self.chain.rewrite(array, transformed, path=file.relpath)
                    converted = transformed
            return self._send_whole(file, path, None, rec, source=converted)

    def _send_whole(
        self,
        file: LocalFile,
        path: Path,
        layout: Layout | None,
        rec: Shipped | None,
        source: Path | None = None,
    ) -> Event:
        """Upload ``source`` (default: the local file itself) as the file's remote."""
        if source is None and layout is not None and self.chain is not None:
            with self._scratch() as tmp:
                transformed = Path(tmp) / path.name
                self.chain.rewrite(open_array(path), transformed, path=file.relpath)
                return self._send_whole(file, path, layout, rec, source=transformed)
        source = source or path
        target = self.target_for(file.relpath, rec)
        if PurePosixPath(target).suffix:
            intent, landed = self._upload_then_place(file, source, target, rec)
        else:
            # A name without suffix is a folder to the server's move: upload in place.
            intent, landed = None, self._upload_in_place(file, source, target, rec)
        return self._landed(file, layout, landed, confirm=intent)

    def _upload_then_place(
        self, file: LocalFile, source: Path, target: str, rec: Shipped | None
    ) -> tuple[int, _Landed]:
        """Upload ``source`` beside ``target`` (the server writes uploads in place), then
        move it where the check of ``target`` says."""
        name = f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{PurePosixPath(target).name}"
        tmp = str(PurePosixPath(target).parent / name)
        with self._books:
            intent = self.state.intend(self.rule.name, file.relpath, "upload", tmp)
            self._in_flight.add(intent)
        try:
            self.client.upload(source, tmp)
            _check_unchanged(self.rule.local / file.relpath, file)
            decision, now = self._may_write(source, target, rec)
            if isinstance(decision, Proceed):
                self._move_into_place(intent, tmp, target)
                return intent, _Landed(target, self._etag(target), EventKind.UPLOADED)
            if isinstance(decision, Clash) and decision.action == "keep-both":
                copy = conflicts.free_remote_name(self.client, target, time.time())
                self._move_into_place(intent, tmp, copy)
                return intent, _Landed(copy, self._etag(copy), EventKind.CONFLICT, clash=decision)
            self.client.remove(tmp)  # adopted, or a skipped conflict: nothing is written
            return intent, self._not_written(decision, target, now)
        except Exception:
            # Readers list the folder: a temporary must not wait for the next start.
            self.drop_temporary(self.state.intent(intent))
            raise
        finally:
            with self._books:
                self._in_flight.discard(intent)

    def _upload_in_place(
        self, file: LocalFile, source: Path, target: str, rec: Shipped | None
    ) -> _Landed:
        decision, now = self._may_write(source, target, rec)
        if isinstance(decision, Clash) and decision.action == "keep-both":
            target = conflicts.free_remote_name(self.client, target, time.time())
        elif not isinstance(decision, Proceed):
            return self._not_written(decision, target, now)
        self.client.upload(source, target)
        _check_unchanged(self.rule.local / file.relpath, file)
        kind = EventKind.UPLOADED if isinstance(decision, Proceed) else EventKind.CONFLICT
        clash = decision if isinstance(decision, Clash) else None
        return _Landed(target, self._etag(target), kind, clash=clash)

    @staticmethod
    def _not_written(decision: Adopt | Clash, target: str, now: RemoteState) -> _Landed:
        if isinstance(decision, Adopt):
            return _Landed(target, now.etag, EventKind.ADOPTED)
        return _Landed(target, now.etag, EventKind.CONFLICT, theirs=True, clash=decision)

    def _may_write(
        self, source: Path, target: str, rec: Shipped | None
    ) -> tuple[Proceed | Adopt | Clash, RemoteState]:
        """Whether ``target`` may be written over, and what it holds now.

        The planner decides from the ETag; a first contact, or a remote that changed
        since cat2sync's last write, is then compared with ``source``: the same content
        is adopted (a lost state folder, or our own write before a crash), a different
        one is a conflict.
        """
        if self.rule.on_conflict == "overwrite":
            return Proceed(), ABSENT
        now = self._remote_state(target)
        decision = decide_write(rec, now, self.rule.on_conflict)
        if isinstance(decision, Proceed):
            return decision, now
        scratch = self.state.state_dir / "tmp"
        identical = compare(self.client, target, source, scratch=scratch) is None
        if isinstance(decision, CompareFirst) or identical:
            return first_contact(identical, self.rule.on_conflict), now
        return decision, now

    def _remote_state(self, remote: str) -> RemoteState:
        try:
            _, etag = self.client.stat(remote)
        except NotFound:
            return ABSENT
        return RemoteState(exists=True, etag=etag)

    def _etag(self, remote: str) -> str | None:
        """The ETag of what cat2sync just wrote, to recognise another writer's change
        later (not asked for when the rule overwrites anyway)."""
        if self.rule.on_conflict == "overwrite":
            return None
        return self._remote_state(remote).etag

    # -- records and events ----------------------------------------------------

    def _landed(
        self, file: LocalFile, layout: Layout | None, landed: _Landed, confirm: int | None
    ) -> Event:
        """Record where the version landed and say so."""
        self._record(file, None if landed.theirs else layout, landed, confirm)
        if landed.clash is None:
            rows = layout.shape[0] if layout and landed.kind == EventKind.UPLOADED else None
            message = "the server holds this content already: recorded, not sent again"
            return Event(
                kind=landed.kind,
                rule=self.rule.name,
                path=file.relpath,
                remote=landed.remote,
                rows=rows,
                message=message if landed.kind == EventKind.ADOPTED else None,
            )
        own = self.remote_for(file.relpath)
        outcome = (
            "this version not sent (on_conflict = skip)"
            if landed.theirs
            else f"this version went to {landed.remote}"
        )
        return conflicts.record(
            self.state,
            landed.clash,
            rule=self.rule.name,
            side="upload",
            path=file.relpath,
            remote=own,
            copy=None if landed.theirs else landed.remote,
            outcome=outcome,
        )

    def _record(
        self, file: LocalFile, layout: Layout | None, landed: _Landed, confirm: int | None
    ) -> None:
        self.state.put_shipped(
            Shipped(
                rule=self.rule.name,
                relpath=file.relpath,
                remote=landed.remote,
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
                etag=landed.etag,
                theirs=landed.theirs,
            ),
            confirm=confirm,
        )

    # -- appends ---------------------------------------------------------------

    def _try_append(
        self, file: LocalFile, path: Path, rec: Shipped, arr: Any, layout: Layout
    ) -> Event | None:
        """Send only the new rows, or return None when a whole upload is needed (the
        array was rewritten, the server no longer holds our rows, or another writer
        changed it: the whole upload's check then decides)."""
        sent = rows_to_append(rec, layout)
        if sent is None or rows_to_append(rec, layout, layout_of(arr, sent)) is None:
            return None
        target = rec.remote
        found = self._remote_cursor(target, rec, file.relpath, arr, sent, layout.shape[0])
        if found is None:
            return None
        cursor, expect = found
        total = layout.shape[0]
        row_bytes = max(1, arr.dtype.itemsize * math.prod(arr.shape[1:]))
        step = max(1, _APPEND_BYTES // row_bytes)
        while cursor < total:
            stop = min(total, cursor + step)
            rows = self._rows_to_send(arr, file.relpath, cursor, stop, expect)
            intent = self.state.intend(self.rule.name, file.relpath, "append", target, cursor, stop)
            new_shape = self.client.append(target, rows)
            if new_shape[0] != stop:
                raise BadRequest(
                    f"append ended at {new_shape[0]} rows, expected {stop}", path=target
                )
            self.state.done_intent(intent)
            cursor = stop
        _check_unchanged(path, file)
        self._record(file, layout, _Landed(target, self._etag(target), EventKind.APPENDED), None)
        return Event(
            kind=EventKind.APPENDED,
            rule=self.rule.name,
            path=file.relpath,
            remote=target,
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
        self, remote: str, rec: Shipped, relpath: str, arr: Any, sent: int, total: int
    ) -> tuple[int, tuple[str, tuple[int, ...]]] | None:
        """Rows the server already has and its ``(dtype, trailing shape)``, or None when
        it does not hold our rows any more (see :func:`.plan.append_resume`)."""
        try:
            info, etag = self.client.stat(remote)
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
            # Exactly our rows by count: the ETag says whether they are still ours.
            now = RemoteState(exists=True, etag=etag)
            ours = isinstance(decide_write(rec, now, self.rule.on_conflict), Proceed)
            return (resume.cursor, expect) if ours else None
        # More rows than recorded (a lost answer, a crash): they must be ours, row for row.
        theirs = self.client.fetch(remote, slice(resume.sent, resume.have))
        mine = arr[resume.sent : resume.have]
        if self.chain is not None:
            mine = self.chain.apply(mine, path=relpath, start_row=resume.sent)
        return (resume.have, expect) if np.array_equal(theirs, mine) else None

    # -- temporaries -----------------------------------------------------------

    def _move_into_place(self, intent: int, tmp: str, dest: str) -> None:
        self.state.moving(intent, dest)  # a lost answer still tells where it went
        self.client.move(tmp, dest)

    def drop_temporary(self, intent: Intent | None) -> None:
        """Remove a temporary remote file; its intent goes only once it is gone. One
        that is gone after its move was sent was moved into place: the remote is ours."""
        if intent is None:
            return
        try:
            self.client.remove(intent.remote)
        except NotFound:
            if intent.op == "move" and intent.dest is not None:
                self.state.claim(self.rule.name, intent.relpath, intent.dest)
        except Cat2Error as exc:
            log.warning("%s: cannot remove leftover %s: %s", self.rule.name, intent.remote, exc)
            return  # the intent keeps it for the next pass
        self.state.done_intent(intent.id)

    def drop_leftovers(self) -> None:
        """Remove the temporary remote files of uploads that failed and could not clean
        up after themselves (the server was away); uploads under way keep theirs."""
        with self._books:
            leftovers = [
                i
                for i in self.state.intents(self.rule.name)
                if i.op in ("upload", "move") and i.id not in self._in_flight
            ]
        for intent in leftovers:
            self.drop_temporary(intent)


def _layout(obj: Any) -> Layout | None:
    if not isinstance(obj, blosc2.NDArray) or obj.ndim == 0:
        return None
    return layout_of(obj)


def _check_unchanged(path: Path, file: LocalFile) -> None:
    try:
        now = path.stat()
    except FileNotFoundError as exc:
        raise FileChanged("vanished during the transfer") from exc
    if (now.st_size, now.st_mtime_ns) != (file.size, file.mtime_ns):
        raise FileChanged("changed during the transfer")
