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
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import blosc2
import numpy as np

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
from ..manifest import SubscribeRule
from ..plugins.manager import Plugins
from ..records import Mirrored
from ..state import StateStore
from . import conflicts
from .conflicts import place_beside, same_bytes
from .localtree import TEMP_PREFIX, Matcher
from .names import local_target
from .plan import (
    Clash,
    Download,
    Entry,
    Extend,
    KeepChanged,
    LocalCopy,
    MirrorPlan,
    Unchanged,
    Unreadable,
    decide_deletion,
    decide_entry,
    is_own_temporary,
    plan_listing,
)
from .transforms import Chain

__all__ = ["MirrorEngine", "PassResult"]

log = logging.getLogger(__name__)

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


def _schunk_info(info: dict[str, Any]) -> dict[str, Any]:
    schunk: dict[str, Any] = info.get("schunk", info)
    return schunk


def _chunks_per_row(shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    """Chunks in one row of chunks along the first axis (Blosc2 numbers them in C order)."""
    return math.prod(-(-size // chunk) for size, chunk in zip(shape[1:], chunks[1:], strict=True))


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


def _raw(data: Any) -> bytes:
    return np.ascontiguousarray(data).tobytes()  # bytes, so that NaN equals NaN


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

    def run_pass(self) -> PassResult:
        """A pass, recorded in the state store (``status`` shows it) and summed up in
        the log; a failure of the whole pass (the server away, the mirror folder not
        writable) counts as one failed entry, and the next pass tries again."""
        started = time.time()
        try:
            result = self._pass()
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
            "%s: pass done: %d listed, %d downloaded, %d extended, %d unchanged, "
            "%d deleted, %d skipped, %d conflicts, %d failed",
            self.rule.name,
            result.listed,
            result.downloaded,
            result.extended,
            result.unchanged,
            result.deleted,
            result.skipped,
            result.conflicts,
            result.failed,
        )
        return result

    def _pass(self) -> PassResult:
        """List, plan, bring what changed, then apply deletions."""
        self.rule.local.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            self._sweep_temporaries()
            self._swept = True
        listing = self.client.get_list(self.rule.remote)
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
                not self.matcher(name)
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
        result = PassResult(listed=len(plan.entries))
        for name, why in plan.skipped:
            self._skip(name, why, result)
        with ThreadPoolExecutor(
            max_workers=self.rule.concurrency, thread_name_prefix="cat2sync-mirror"
        ) as pool:
            for outcome in pool.map(lambda e: self._sync_one(e, records.get(e.name)), plan.entries):
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
            info, etag = self.client.stat(self.remote_for(entry.name))
            decision = decide_entry(
                entry.name,
                rec,
                info=info,
                etag=etag,
                local=_local_copy(entry.target),
                transformed=self.chain is not None,
                on_conflict=self.rule.on_conflict,
            )
            return self._bring(_Remote(entry.name, entry.target, info, etag), rec, decision)
        except NotFound:
            return _Outcome(None)  # removed between the listing and now
        except Exception as exc:
            return self._failed(entry.name, exc)

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
        shape = entry.info.get("shape")
        self._record(
            entry.name,
            entry.target,
            etag=entry.etag,
            mtime=entry.info.get("mtime"),
            shape=tuple(shape) if shape else None,
            nchunks=_schunk_info(entry.info).get("nchunks"),
        )
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
        cbytes = _schunk_info(entry.info).get("cbytes")
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
            nchunks=_schunk_info(entry.info).get("nchunks"),
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
            self._extend_file(entry, grown.old_rows, fetch)
        except (Cat2Error, RuntimeError, ValueError, KeyError, OSError) as exc:
            log.info(
                "%s: incremental update of %s not possible (%s); downloading it whole",
                self.rule.name,
                entry.name,
                exc,
            )
            return None, sum(fetched)
        return grown.new_rows - grown.old_rows, sum(fetched)

    def _extend_file(self, entry: _Remote, old_rows: int, fetch: Callable[[int], bytes]) -> None:
        with tempfile.NamedTemporaryFile(
            dir=entry.target.parent, prefix=TEMP_PREFIX, suffix=".b2nd", delete=False
        ) as tmp:
            tmp_path = Path(tmp.name)
        try:
            shutil.copyfile(entry.target, tmp_path)
            arr = blosc2.open(str(tmp_path), mode="a")
            self._check_layout(arr, entry.info)
            chunk_rows = arr.chunks[0]
            kept = old_rows // chunk_rows  # rows of chunks an append leaves untouched
            first = kept * _chunks_per_row(arr.shape, arr.chunks)
            if old_rows % chunk_rows == 0 and first:
                self._check_kept_chunk(arr, first - 1, fetch)
            arr.resize(tuple(entry.info["shape"]))
            for nchunk in range(first, arr.schunk.nchunks):
                arr.schunk.update_chunk(nchunk, fetch(nchunk))
            if old_rows % chunk_rows:
                self._check_old_rows(arr, entry.target, kept * chunk_rows, old_rows)
            self._verify(arr, entry.info)
            del arr
            tmp_path.replace(entry.target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()

    @staticmethod
    def _check_layout(arr: Any, info: dict[str, Any]) -> None:
        if (tuple(arr.chunks), tuple(arr.blocks), str(arr.dtype)) != (
            tuple(info["chunks"]),
            tuple(info["blocks"]),
            info["dtype"],
        ):
            raise ValueError("the dtype or the chunk layout changed")

    # The server keeps no content digest, so a dataset replaced by a longer one with the
    # same layout (not appended to) looks like growth; random data even keeps its sizes.
    # A sample of the rows mirrored before catches that: the last old chunk when the
    # growth starts a new row of chunks (one extra chunk), else the old rows of the
    # partial row of chunks that is fetched anyway.

    @staticmethod
    def _check_kept_chunk(arr: Any, nchunk: int, fetch: Callable[[int], bytes]) -> None:
        if fetch(nchunk) != arr.schunk.get_chunk(nchunk):
            raise ValueError("rows mirrored before differ remotely (replaced, not appended)")

    @staticmethod
    def _check_old_rows(arr: Any, original: Path, start: int, stop: int) -> None:
        old = blosc2.open(str(original), mode="r")
        if _raw(old[start:stop]) != _raw(arr[start:stop]):
            raise ValueError("rows mirrored before differ remotely (replaced, not appended)")

    @staticmethod
    def _verify(arr: Any, info: dict[str, Any]) -> None:
        """The extended copy must match the server's sizes exactly, or it is not used."""
        schunk = _schunk_info(info)
        if (arr.schunk.nbytes, arr.schunk.cbytes) != (schunk.get("nbytes"), schunk.get("cbytes")):
            raise ValueError("the extended copy differs from the server's (replaced remotely?)")

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
