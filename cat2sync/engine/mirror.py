"""The mirror side of a rule: a remote folder -> a local folder, as march -> plan -> execute.

A pass lists the remote folder and maps each name to a safe local path (the march);
the planner (:mod:`.plan`) picks what to bring and what to delete. A dataset never
mirrored is fetched whole in one request, its ETag with it; every other entry is asked
for its ``info`` (the listing has names only), and :func:`.plan.decide_entry` compares it
with what was last written (ETag, shape). New or replaced entries are downloaded to a
temporary file and renamed into place; a dataset that only grew along its first axis is
extended with just the new compressed chunks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import blosc2

from ..client import Client, is_partial
from ..errors import (
    BadRequest,
    Cat2Error,
    NotFound,
    Remedy,
    ServerError,
    UnsafeName,
    explain,
    remedy_for,
)
from ..events import Event, EventKind, EventSink
from ..journal import (
    FullPass,
    Incremental,
    JournalReader,
    NoJournal,
    dump_positions,
    is_journal_name,
    load_positions,
)
from ..manifest import SubscribeRule
from ..plugins.manager import Plugins
from ..records import Mirrored
from ..state import StateStore
from . import conflicts
from .conflicts import place_beside, same_bytes
from .extend import chunks_to_fetch, extend_copy, schunk_info
from .localtree import TEMP_PREFIX, Matcher
from .names import local_target
from .plan import (
    Clash,
    Download,
    Entry,
    Extend,
    KeepChanged,
    LocalCopy,
    LocalMove,
    MirrorPlan,
    Unchanged,
    Unreadable,
    decide_deletion,
    decide_entry,
    is_own_temporary,
    plan_changes,
    plan_listing,
)
from .transforms import Chain

__all__ = ["MirrorEngine", "PassResult"]

log = logging.getLogger(__name__)

#: Chunk requests a journal pass may spend extending one dataset (else a small one is
#: fetched whole, in one): a pass after K changes costs at most 3 + 2K requests.
_JOURNAL_CHUNKS = 2
_SMALL_DATASET = 4 * 2**20  # compressed bytes: fetched whole rather than by many chunks

# Stored and served byte for byte; anything else travels as the server's compressed
# frame and arrives decompressed (caterva2-rest.md §2).
_STORED_AS_IS = frozenset({".b2nd", ".b2frame", ".b2", ".b2z", ".h5", ".hdf5"})


@dataclass(slots=True)
class PassResult:
    listed: int = 0
    downloaded: int = 0
    extended: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    conflicts: int = 0
    failed: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    changed_remotes: list[str] = field(default_factory=list)
    failed_names: list[str] = field(default_factory=list)
    journaled: bool = False  # the journals said what changed (no listing)


@dataclass(frozen=True, slots=True)
class _Remote:
    name: str  # relative to the rule's remote folder, as listed
    target: Path
    info: dict[str, Any]
    etag: str | None


_Tally = Literal["downloaded", "extended", "unchanged", "skipped", "conflicts", "failed"]


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What happened to one entry; tallied by the pass thread, not by the workers."""

    tally: _Tally | None  # the PassResult counter to bump
    event: Event | None = None
    changed: str | None = None  # the remote path whose local copy was (re)written


def _local_layout(path: Path) -> tuple[tuple[int, ...] | None, int | None]:
    """``(shape, nchunks)`` of a mirrored dataset, read from the local copy."""
    try:
        obj = blosc2.open(str(path), mode="r")
    except Exception:  # blosc2 raises plain RuntimeError/ValueError on damage
        return None, None
    if isinstance(obj, blosc2.NDArray):
        return tuple(obj.shape), obj.schunk.nchunks
    return None, getattr(obj, "nchunks", None)


def _existing(targets: Mapping[str, tuple[str, Path] | str]) -> set[str]:
    """The names whose local path already holds something (a file not written by this
    pass: a first fetch must not land on it)."""
    return {name for name, t in targets.items() if not isinstance(t, str) and t[1].exists()}


def _local_copy(target: Path) -> LocalCopy | None:
    """The mirror file as it is now; None when it is missing."""
    try:
        st = target.stat()
    except FileNotFoundError:
        return None
    return LocalCopy(st.st_size, st.st_mtime_ns)


class MirrorEngine:
    """Runs one ``[[subscribe]]`` rule."""

    def __init__(
        self,
        rule: SubscribeRule,
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
        self.chain = Chain.build(rule.transforms, plugins.transforms, rule.name, "download")
        self._swept = False  # temporaries a killed run left are removed at the first pass

    def remote_for(self, name: str) -> str:
        return f"{self.rule.remote}/{name}"

    # -- a pass ----------------------------------------------------------------

    def run_pass(self, *, full: bool = False) -> PassResult:
        """A pass, recorded in the state store (``status`` shows it) and summed up in
        the log; a failure of the whole pass (the server away, the mirror folder not
        writable) counts as one failed entry, and the next pass tries again.

        :param full: list the whole folder even when its journals could say what
            changed (``cat2sync once --full``).
        """
        started = time.time()
        try:
            result = self._pass(full)
        except (Cat2Error, OSError) as exc:
            log.warning("%s: pass failed: %s", self.rule.name, exc)
            self.state.record_pass(self.rule.name, started=started, error=str(exc))
            return PassResult(failed=1, errors=[str(exc)])
        self.state.record_pass(
            self.rule.name,
            started=started,
            error=result.errors[-1] if result.errors else None,
            files=result.downloaded + result.extended,
            nbytes=result.bytes,
        )
        log.info(
            "%s: pass done: %d %s, %d downloaded, %d extended, %d unchanged, "
            "%d deleted, %d skipped, %d conflicts, %d failed",
            self.rule.name,
            result.listed,
            "from the journal" if result.journaled else "listed",
            result.downloaded,
            result.extended,
            result.unchanged,
            result.deleted,
            result.skipped,
            result.conflicts,
            result.failed,
        )
        return result

    def _pass(self, full: bool) -> PassResult:
        """Read the journals, or list the folder; plan, bring what changed, delete."""
        self.rule.local.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            self._sweep_temporaries()
            self._swept = True
        saved, verified = self.state.journal_positions(self.rule.name)
        journals: Incremental | FullPass | NoJournal = NoJournal()
        if saved is not None:  # the folder had journals: they may say what changed
            journals = JournalReader(self.client, self.rule.remote).read(load_positions(saved))
            if isinstance(journals, Incremental) and not full and not self._verify_due(verified):
                return self._follow(journals)
            if isinstance(journals, FullPass):
                log.info("%s: a full pass: %s", self.rule.name, journals.reason)
        listing = self.client.get_list(self.rule.remote)
        if saved is None and any(map(is_journal_name, listing)):
            journals = JournalReader(self.client, self.rule.remote).read({})
        result = self._list_pass([n for n in listing if not is_journal_name(n)])
        if not isinstance(journals, NoJournal):
            # Taken before the listing: what was journaled meanwhile is read next time.
            text = dump_positions(journals.positions)
            self.state.put_journal_positions(self.rule.name, text, verified=time.time())
        return result

    def _verify_due(self, verified: float | None) -> bool:
        """Whether a full pass is due anyway (``verify_every``): it catches writers that
        keep no journal (the web UI, other tools)."""
        return verified is None or time.time() - verified >= self.rule.verify_every

    def _follow(self, journals: Incremental) -> PassResult:
        """A pass over what the journals name: no listing, no ``info`` when an entry
        carries it."""
        records = {r.remote_rel: r for r in self.state.mirrored_for_rule(self.rule.name)}
        names = [n for c in journals.changes for n in (c.name, c.src) if n is not None]
        plan = plan_changes(
            changes=journals.changes,
            targets=self._targets(names),
            records=records,
            delete=self.rule.delete,
            max_delete=self.rule.max_delete,
        )
        result = self._execute(plan, records)
        result.journaled = True
        text = dump_positions(journals.positions_keeping(result.failed_names))
        self.state.put_journal_positions(self.rule.name, text, verified=None)
        return result

    def _list_pass(self, listing: list[str]) -> PassResult:
        records = {r.remote_rel: r for r in self.state.mirrored_for_rule(self.rule.name)}
        targets = self._targets(listing)
        plan = plan_listing(
            listing=listing,
            targets=targets,
            records=records,
            existing=_existing(targets),
            delete=self.rule.delete,
            max_delete=self.rule.max_delete,
            fetch_whole=self.chain is None,
        )
        return self._execute(plan, records)

    def _targets(self, listing: list[str]) -> dict[str, tuple[str, Path] | str]:
        """The march of the local side: each name this rule wants, mapped to a local
        path inside the mirror (or why it cannot be written there)."""
        targets: dict[str, tuple[str, Path] | str] = {}
        for name in listing:
            if (
                is_journal_name(name)  # never data, never shown to plugins
                or not self.matcher(name)
                or is_own_temporary(name)
                or self.plugins.ignore(self.rule, name)
            ):
                continue
            try:
                targets[name] = local_target(self.rule.local, name)
            except UnsafeName as exc:
                targets[name] = str(exc)
        return targets

    def _execute(self, plan: MirrorPlan, records: dict[str, Mirrored]) -> PassResult:
        result = PassResult(listed=len(plan.entries) + len(plan.moves))
        for name, why in plan.skipped:
            self._skip(name, why, result)
        entries = list(plan.entries)
        renamed: set[str] = set()  # moved away locally: nothing left to delete there
        for move in plan.moves:  # before anything is fetched: a name may be moved onto
            moved = self._move_local(move)
            if moved is None:
                entries.append(Entry(move.name, move.target, False, move.info, move.etag, False))
            else:
                renamed.add(move.record.remote_rel)
                self._tally(moved, result)
        with ThreadPoolExecutor(
            max_workers=self.rule.concurrency, thread_name_prefix="cat2sync-mirror"
        ) as pool:
            for outcome in pool.map(lambda e: self._sync_one(e, records.get(e.name)), entries):
                self._tally(outcome, result)
        if plan.refusal:
            result.errors.append(plan.refusal)
            self.emit(
                Event(
                    kind=EventKind.SKIPPED,
                    rule=self.rule.name,
                    path=".",
                    remote=self.rule.remote,
                    message=plan.refusal,
                )
            )
        for rec in plan.removals:
            if rec.remote_rel not in renamed:
                self._delete_local(rec, result)
        return result

    def _sweep_temporaries(self) -> None:
        """Remove the partial downloads a killed daemon left in the mirror folder; no
        download of this rule runs yet, so every temporary found is a leftover."""
        for folder, dirs, files in os.walk(self.rule.local):  # does not follow symlinks
            for name in [d for d in dirs if d.startswith(TEMP_PREFIX)]:
                shutil.rmtree(Path(folder, name), ignore_errors=True)
                dirs.remove(name)
            for name in files:
                if name.startswith(TEMP_PREFIX) or is_partial(name):
                    with contextlib.suppress(OSError):
                        Path(folder, name).unlink()
                    log.info(
                        "%s: removed %s, left by an interrupted download",
                        self.rule.name,
                        Path(folder, name),
                    )

    def _tally(self, outcome: _Outcome, result: PassResult) -> None:
        if outcome.tally is not None:
            setattr(result, outcome.tally, getattr(result, outcome.tally) + 1)
        event = outcome.event
        if event is not None:
            result.bytes += event.bytes
            if event.kind == EventKind.FAILED:
                result.errors.append(f"{event.remote}: {event.message}")
                result.failed_names.append(event.path)
            self.emit(event)
        if outcome.changed is not None:
            result.changed_remotes.append(outcome.changed)

    def _skip(self, name: str, reason: str, result: PassResult) -> None:
        result.skipped += 1
        self.emit(
            Event(
                kind=EventKind.SKIPPED,
                rule=self.rule.name,
                path=repr(name),
                remote=self.remote_for(name),
                message=f"unsafe remote name: {reason}",
            )
        )

    # -- one entry -------------------------------------------------------------

    def _sync_one(self, entry: Entry, rec: Mirrored | None) -> _Outcome:
        try:
            if entry.first:
                fetched = self._fetch_new(entry)
                if fetched is not None:
                    return fetched
            info, etag = (
                (entry.info, entry.etag)
                if entry.info is not None
                else self.client.stat(self.remote_for(entry.name))
            )
            decision = decide_entry(
                entry.name,
                rec,
                info=info,
                etag=etag,
                local=_local_copy(entry.target),
                transformed=self.chain is not None,
                on_conflict=self.rule.on_conflict,
            )
            if isinstance(decision, Extend) and not self._may_extend(entry, info, decision):
                decision = Download()
            return self._bring(_Remote(entry.name, entry.target, dict(info), etag), rec, decision)
        except NotFound:
            return _Outcome(None)  # removed between the listing and now
        except Exception as exc:
            return self._failed(entry.name, exc)

    @staticmethod
    def _may_extend(entry: Entry, info: Mapping[str, Any], grown: Extend) -> bool:
        """Whether to fetch only new chunks: never when a journal says the dataset was
        replaced. Following a journal (whose pass costs at most two requests a change),
        a small dataset whose growth spans more chunks is fetched whole, in one request;
        a large one is still extended, since its bytes matter more than its requests."""
        if not entry.may_extend:
            return False
        if entry.info is None or chunks_to_fetch(info, grown.old_rows) <= _JOURNAL_CHUNKS:
            return True
        cbytes = schunk_info(info).get("cbytes")
        return isinstance(cbytes, int) and cbytes > _SMALL_DATASET

    def _move_local(self, move: LocalMove) -> _Outcome | None:
        """Rename the local copy a journal says moved; None when it cannot be trusted
        (not cat2sync's as written, or the new name holds someone's file): fetch it."""
        try:
            _, source = local_target(self.rule.local, move.record.remote_rel)
        except UnsafeName:
            return None
        copy = _local_copy(source)
        if copy is None or not copy.is_intact(move.record) or move.target.exists():
            return None
        move.target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(move.target)
        self.state.delete_mirrored(self.rule.name, move.record.remote_rel)
        self.state.put_mirrored(replace(move.record, remote_rel=move.name))
        event = Event(
            kind=EventKind.MOVED,
            rule=self.rule.name,
            path=self._local_rel(move.target),
            remote=self.remote_for(move.name),
            message=f"renamed from {move.record.remote_rel}, as on the server",
        )
        return _Outcome("unchanged", event, self.remote_for(move.name))

    def _failed(self, name: str, exc: Exception) -> _Outcome:
        """A failed entry is reported and tried again at the next pass; only what its
        remedy calls fatal stops the pass."""
        if remedy_for(exc) is Remedy.FATAL:
            raise exc
        remote = self.remote_for(name)
        message = explain(exc)
        if not isinstance(exc, Cat2Error | OSError):  # not ours: keep the traceback
            log.debug("%s: %s", remote, message, exc_info=exc)
        event = Event(
            kind=EventKind.FAILED, rule=self.rule.name, path=name, remote=remote, message=message
        )
        return _Outcome("failed", event)

    def _fetch_new(self, entry: Entry) -> _Outcome | None:
        """A dataset seen for the first time, in one request (its ETag comes with it);
        None when the server cannot serve it that way (``stat`` then says why)."""
        remote = self.remote_for(entry.name)
        started = time.monotonic()
        try:
            written, etag = self.client.fetch_to(remote, entry.target, durable=True)
        except (ServerError, BadRequest):
            return None
        shape, nchunks = _local_layout(entry.target)
        self._record(entry.name, entry.target, etag=etag, mtime=None, shape=shape, nchunks=nchunks)
        event = Event(
            kind=EventKind.DOWNLOADED,
            rule=self.rule.name,
            path=self._local_rel(entry.target),
            remote=remote,
            bytes=written,
            seconds=time.monotonic() - started,
        )
        return _Outcome("downloaded", event, remote)

    def _bring(
        self,
        entry: _Remote,
        rec: Mirrored | None,
        decision: Unchanged | Unreadable | Extend | Download | Clash,
    ) -> _Outcome:
        remote = self.remote_for(entry.name)
        if isinstance(decision, Unchanged):
            return _Outcome("unchanged")
        if isinstance(decision, Clash):
            return self._keep_local(entry, decision)
        if isinstance(decision, Unreadable):
            return _Outcome(
                "skipped",
                Event(
                    kind=EventKind.SKIPPED,
                    rule=self.rule.name,
                    path=self._local_rel(entry.target),
                    remote=remote,
                    message=decision.reason,
                ),
            )
        started = time.monotonic()
        rows, nbytes = self._extend(entry, decision) if isinstance(decision, Extend) else (None, 0)
        if rows is None:
            nbytes += self._download(entry)
        self._record_entry(entry, ours=True)
        # HDF5 files and .b2z ("kind": "group") are files too, downloaded whole.
        event = Event(
            kind=EventKind.DOWNLOADED,
            rule=self.rule.name,
            path=self._local_rel(entry.target),
            remote=remote,
            rows=rows,
            bytes=nbytes,
            seconds=time.monotonic() - started,
            message="new rows only" if rows is not None else None,
        )
        return _Outcome("downloaded" if rows is None else "extended", event, remote)

    def _local_rel(self, target: Path) -> str:
        return target.relative_to(self.rule.local).as_posix()  # the name, in NFC

    def _download(self, entry: _Remote, dest: Path | None = None) -> int:
        """Download ``entry`` whole (atomically) to its target, or to ``dest``; returns
        the bytes it cost."""
        dest = entry.target if dest is None else dest
        if self.chain is not None and entry.name.endswith(".b2nd") and entry.info.get("shape"):
            return self._download_transformed(entry, dest)
        written = self.client.download_to(self.remote_for(entry.name), dest, durable=True)
        if PurePosixPath(entry.name).suffix.lower() in _STORED_AS_IS:
            return written
        # A regular file crossed the network as its compressed frame, of about cbytes.
        cbytes = schunk_info(entry.info).get("cbytes")
        return int(cbytes) if isinstance(cbytes, int) and cbytes >= 0 else written

    def _download_transformed(self, entry: _Remote, dest: Path) -> int:
        """Download beside ``dest``, write its transform, rename that into place."""
        assert self.chain is not None
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=TEMP_PREFIX) as tmp:
            raw, out = Path(tmp) / "raw.b2nd", Path(tmp) / "out.b2nd"
            written = self.client.download_to(self.remote_for(entry.name), raw)
            self.chain.rewrite(blosc2.open(str(raw), mode="r"), out, path=entry.name)
            out.replace(dest)
        return written

    # -- conflicts -------------------------------------------------------------

    def _keep_local(self, entry: _Remote, clash: Clash) -> _Outcome:
        """The local file is not cat2sync's and the remote changed: keep the local bytes
        at their name; with keep-both, write the remote version beside them (unless it
        is the very same content, which is then adopted)."""
        remote, path = self.remote_for(entry.name), self._local_rel(entry.target)
        copy: Path | None = None
        if clash.action == "keep-both":
            with tempfile.TemporaryDirectory(dir=entry.target.parent, prefix=TEMP_PREFIX) as tmp:
                incoming = Path(tmp) / entry.target.name
                self._download(entry, incoming)
                if same_bytes(incoming, entry.target):
                    self._record_entry(entry, ours=True)
                    adopted = Event(
                        kind=EventKind.ADOPTED,
                        rule=self.rule.name,
                        path=path,
                        remote=remote,
                        message="the local file is the remote version already",
                    )
                    return _Outcome("unchanged", adopted)
                copy = place_beside(incoming, entry.target, time.time())
        self._record_entry(entry, ours=False)
        where = (
            f"kept the local file; the remote version is at {self._local_rel(copy)}"
            if copy
            else ("kept the local file; nothing written (on_conflict = skip)")
        )
        event = conflicts.record(
            self.state,
            clash,
            rule=self.rule.name,
            side="mirror",
            path=path,
            remote=remote,
            copy=self._local_rel(copy) if copy else None,
            outcome=where,
        )
        return _Outcome("conflicts", event)

    def _record_entry(self, entry: _Remote, *, ours: bool) -> None:
        """Record the remote version as seen (so that an unchanged remote raises no new
        conflict) and whether the local file is cat2sync's."""
        shape = entry.info.get("shape")
        self._record(
            entry.name,
            entry.target,
            etag=entry.etag,
            mtime=entry.info.get("mtime"),
            shape=tuple(shape) if shape else None,
            nchunks=schunk_info(entry.info).get("nchunks"),
            ours=ours,
        )

    def _record(
        self,
        name: str,
        target: Path,
        *,
        etag: str | None,
        mtime: str | None,
        shape: tuple[int, ...] | None,
        nchunks: int | None,
        ours: bool = True,
    ) -> None:
        st = target.stat()
        self.state.put_mirrored(
            Mirrored(
                rule=self.rule.name,
                remote_rel=name,
                etag=etag,
                mtime=mtime,
                shape=shape,
                nchunks=nchunks,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                ours=ours,
            )
        )

    # -- incremental growth ----------------------------------------------------

    def _extend(self, entry: _Remote, grown: Extend) -> tuple[int | None, int]:
        """Fetch only the chunks a grown dataset added.

        Returns ``(new rows, bytes fetched)``; rows is None when the extended copy could
        not be proved right (then it is downloaded whole).
        """
        fetched: list[int] = []

        def fetch(nchunk: int) -> bytes:
            chunk = self.client.get_chunk(self.remote_for(entry.name), nchunk)
            fetched.append(len(chunk))
            return chunk

        try:
            extend_copy(entry.target, entry.info, grown.old_rows, fetch)
        except (Cat2Error, RuntimeError, ValueError, KeyError, OSError) as exc:
            log.info(
                "%s: incremental update of %s not possible (%s); downloading it whole",
                self.rule.name,
                entry.name,
                exc,
            )
            return None, sum(fetched)
        return grown.new_rows - grown.old_rows, sum(fetched)

    # -- deletions -------------------------------------------------------------

    def _delete_local(self, rec: Mirrored, result: PassResult) -> None:
        remote = self.remote_for(rec.remote_rel)
        try:
            _, target = local_target(self.rule.local, rec.remote_rel)
        except UnsafeName:
            self.state.delete_mirrored(self.rule.name, rec.remote_rel)
            return
        if isinstance(decide_deletion(rec, _local_copy(target)), KeepChanged):
            self.emit(
                Event(
                    kind=EventKind.SKIPPED,
                    rule=self.rule.name,
                    path=rec.remote_rel,
                    remote=remote,
                    message="not cat2sync's, or changed locally since it was mirrored: kept",
                )
            )
        else:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            result.deleted += 1
            self.emit(
                Event(
                    kind=EventKind.DELETED, rule=self.rule.name, path=rec.remote_rel, remote=remote
                )
            )
        self.state.delete_mirrored(self.rule.name, rec.remote_rel)
