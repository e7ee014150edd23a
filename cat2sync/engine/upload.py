"""The upload side of a rule: local files -> remote folder, as march -> plan -> execute.

The march scans the local folder and reads the state store's records (and, when files
meet the server for the first time, lists the remote folder); the planner
(:mod:`.plan`) decides, with no I/O, what a pass or a file needs; this module executes
it, and :mod:`.send` sends one version of a file. A local rename becomes a server-side
move, a local deletion a removal only when the rule allows deletions and the pass stays
under the deletion cap, and nothing another writer wrote is moved over, removed or
overwritten unless the rule says ``on_conflict = "overwrite"``. With
``delete_local_after``, shipped files verified equal to the server's copy are freed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..client import Client
from ..errors import Cat2Error, NotFound, PluginError
from ..events import Event, EventKind, EventSink
from ..manifest import UploadRule
from ..plugins.hookspecs import LazyExprRequest
from ..plugins.manager import Plugins
from ..records import Shipped
from ..state import StateStore
from . import conflicts
from .localtree import Matcher, scan
from .plan import (
    Clash,
    Free,
    LocalFile,
    Move,
    RemoteState,
    Send,
    Unchanged,
    UploadPlan,
    decide_file,
    decide_write,
    plan_freeing,
    plan_upload_pass,
)
from .send import Sender
from .transforms import Chain

__all__ = ["ReconcileResult", "UploadEngine"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ReconcileResult:
    """What a full pass did: files left to send (the queue sends them), moves and
    removals done, and why deletions (or the whole pass) were refused."""

    to_send: list[LocalFile] = field(default_factory=list)
    moved: int = 0
    removed: int = 0
    freed: int = 0
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
        self.sender = Sender(rule, client, state, emit, plugins, self.chain)
        # Moves and removals are decided and done against a consistent view of the
        # records: a pass and a watched file may both see one rename.
        self._structure = threading.Lock()
        self._refused: set[str] = set()  # names already reported as unsendable
        self._books = threading.Lock()  # guards the set above

    # -- paths -----------------------------------------------------------------

    def remote_for(self, relpath: str) -> str:
        """Where ``relpath`` goes; a file the rule converts goes there as ``.b2nd``."""
        return self.sender.remote_for(relpath)

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
        """Find the files to send, turn renames into moves, apply deletions, free space."""
        local = self._march()
        if local is not None:
            self.sender.drop_leftovers()
        records = {r.relpath: r for r in self.state.shipped_for_rule(self.rule.name)}
        plan = self._plan(local, records, listed=None)
        if self._meets_the_server(plan):
            # Files without a record may be on the server already (a lost state folder):
            # one listing says which to compare before anything is sent.
            plan = self._plan(local, records, listed=self._listing())
        result = self._execute(plan)
        if local is not None and self.rule.delete_local_after is not None:
            result.freed = self._free(local, records)
        return result

    def _plan(
        self,
        local: dict[str, LocalFile] | None,
        records: dict[str, Shipped],
        listed: set[str] | None,
    ) -> UploadPlan:
        return plan_upload_pass(
            remote_folder=self.rule.remote,
            local=local,
            records=records,
            converted=self.rule.convert,
            delete=self.rule.delete,
            max_delete=self.rule.max_delete,
            folder=str(self.rule.local),
            listed=listed,
        )

    def _meets_the_server(self, plan: UploadPlan) -> bool:
        """Whether some file has no record (and the rule cares about another writer)."""
        new = any(s.record is None for s in plan.send)
        return new and self.rule.on_conflict != "overwrite"

    def _listing(self) -> set[str]:
        try:
            return set(self.client.get_list(self.rule.remote))
        except NotFound:
            return set()

    def _march(self) -> dict[str, LocalFile] | None:
        """The files this rule syncs, by relative path; None when the folder is missing."""
        if not self.rule.local.is_dir():
            return None
        found = scan(self.rule.local, self.wants, follow_symlinks=self.rule.follow_symlinks)
        return {rel: LocalFile.of(rel, st) for rel, st in found}

    def _execute(self, plan: UploadPlan) -> ReconcileResult:
        result = ReconcileResult(to_send=[s.file for s in plan.send], refused=plan.refusal)
        for first in plan.compare_first:
            if not self._adopt(first.file):
                result.to_send.append(first.file)
        for rec in plan.forget:
            self.state.delete_shipped(self.rule.name, rec.relpath)
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

    def _adopt(self, file: LocalFile) -> bool:
        """A file met on the server at first contact: adopted (recorded, not sent) when
        the server holds the same content; False when it must go the usual way."""
        remote = self.remote_for(file.relpath)
        if self.sender.compare(file.relpath, remote) is not None:
            return False  # different: sending it meets the conflict
        self.emit(self.sender.adopt(file, remote))
        return True

    def _remove(self, rec: Shipped) -> int:
        """Remove the remote copy of a vanished file; 0 when it came back meanwhile, or
        when another writer changed the remote since (that is kept: a conflict)."""
        if self.local_for(rec.relpath).exists():
            return 0
        clash = self._theirs_now(rec)
        if clash is not None:
            self.state.delete_shipped(self.rule.name, rec.relpath)
            self.emit(
                conflicts.record(
                    self.state,
                    clash,
                    rule=self.rule.name,
                    side="upload",
                    path=rec.relpath,
                    remote=rec.remote,
                    copy=None,
                    outcome="the local file was deleted, the remote one is kept",
                )
            )
            return 0
        with contextlib.suppress(NotFound):  # already gone remotely: just forget it
            self.client.remove(rec.remote)
        self.state.delete_shipped(self.rule.name, rec.relpath)
        self.emit(
            Event(kind=EventKind.REMOVED, rule=self.rule.name, path=rec.relpath, remote=rec.remote)
        )
        return 1

    def _theirs_now(self, rec: Shipped) -> Clash | None:
        """The conflict, when another writer changed ``rec``'s remote since we wrote it."""
        if self.rule.on_conflict == "overwrite":
            return None
        try:
            _, etag = self.client.stat(rec.remote)
        except NotFound:
            return None
        decision = decide_write(rec, RemoteState(exists=True, etag=etag), self.rule.on_conflict)
        return decision if isinstance(decision, Clash) else None

    # -- freeing local space ---------------------------------------------------

    def _free(self, local: dict[str, LocalFile], records: dict[str, Shipped]) -> int:
        """Remove the local files that have been shipped, verified equal to the server's
        copy and left unchanged for ``delete_local_after``."""
        assert self.rule.delete_local_after is not None
        due = plan_freeing(
            local=local,
            records=records,
            pending={p.relpath for p in self.state.pending(self.rule.name)},
            remote_folder=self.rule.remote,
            converted=self.rule.convert,
            now_ns=time.time_ns(),
            after=self.rule.delete_local_after,
            max_delete=self.rule.max_delete,
        )
        return sum(self._free_one(item) for item in due)

    def _free_one(self, item: Free) -> int:
        relpath = item.file.relpath
        difference = self.sender.compare(relpath, item.record.remote)
        if difference is not None:
            self.emit(
                Event(
                    kind=EventKind.SKIPPED,
                    rule=self.rule.name,
                    path=relpath,
                    remote=item.record.remote,
                    message=f"not freed: the server's copy differs ({difference})",
                )
            )
            return 0
        path = self.local_for(relpath)
        if LocalFile.of(relpath, path.lstat()) != item.file:
            return 0  # changed while it was verified: the next pass decides
        # Recorded first: a crash before the unlink leaves a file that is freed again,
        # never a vanished file whose remote copy a deletion would remove.
        self.state.mark_freed(self.rule.name, relpath, time.time())
        path.unlink()
        self.emit(
            Event(
                kind=EventKind.FREED,
                rule=self.rule.name,
                path=relpath,
                remote=item.record.remote,
                bytes=item.file.size,
                message="verified on the server; local copy removed",
            )
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
        event = self.sender.send(file, placed.record)
        return replace(
            event,
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
        """Move the remote copy; None when it is gone (then the file is sent again).

        A new name another writer already uses is a conflict: with keep-both our copy
        moves to a conflict name beside it, with skip it stays where it is.
        """
        target, clash = move.remote, None
        if self.rule.on_conflict != "overwrite":
            try:
                _, etag = self.client.stat(target)
            except NotFound:
                pass
            else:
                clash = Clash(self.rule.on_conflict, "another writer's file has that name")
                if clash.action == "skip":
                    return self.sender.skip_rename(move, etag, clash)
                target = conflicts.free_remote_name(self.client, target, time.time())
        try:
            self.client.move(move.record.remote, target)
        except NotFound:
            self.state.delete_shipped(self.rule.name, move.record.relpath)
            return None
        self.state.rename_shipped(move.record, move.to.relpath, target)  # a move keeps the ETag
        if clash is not None:
            return conflicts.record(
                self.state,
                clash,
                rule=self.rule.name,
                side="upload",
                path=move.to.relpath,
                remote=move.remote,
                copy=target,
                outcome=f"renamed from {move.record.relpath}; this version went to {target}",
            )
        return Event(
            kind=EventKind.MOVED,
            rule=self.rule.name,
            path=move.to.relpath,
            remote=target,
            message=f"renamed from {move.record.relpath}",
        )

    def follow_up(self, relpath: str, event: Event) -> list[LazyExprRequest]:
        """The plugins' work on the server after ``relpath`` was sent; returns the lazy
        expressions they want computed from it.

        :raises PluginError: a plugin failed; the file is then sent again later, and the
            hooks with it (its record keeps the remote as ours, its version unknown).
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
            self.state.claim(self.rule.name, relpath, event.remote)
            raise

    # -- start-up ----------------------------------------------------------------

    def cleanup_intents(self) -> None:
        """At start: remove temporaries of interrupted uploads (a temporary already
        moved into place makes its remote cat2sync's again, see
        :meth:`.StateStore.claim`), and forget finished appends (an append's cursor is
        the remote shape, not the intent)."""
        self.sender.drop_leftovers()
        for intent in self.state.intents(self.rule.name):
            if intent.op == "append":
                self.state.done_intent(intent.id)
