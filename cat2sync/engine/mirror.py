"""The mirror side of a rule: a remote folder → a local folder, one pass at a time.

A pass lists the remote folder, asks ``info`` for every entry (the listing has names
only), and compares each with what was last written (ETag, shape, chunk count). New or
replaced entries are downloaded to a temporary file and renamed into place; a dataset
that only grew along its first axis is extended with just the new compressed chunks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import blosc2
import numpy as np

from ..client import Client, is_partial
from ..errors import BadRequest, Cat2Error, NotFound, ServerError, UnsafeName
from ..events import Event, EventKind, EventSink
from ..manifest import SubscribeRule
from ..plugins.manager import Plugins
from ..state import Mirrored, StateStore
from .localtree import TEMP_PREFIX, Matcher
from .names import collision_key, local_target
from .transforms import Chain

__all__ = ["MirrorEngine", "PassResult"]

log = logging.getLogger(__name__)

# Stored and served byte for byte; anything else travels as the server's compressed
# frame and arrives decompressed (caterva2-rest.md §2).
_STORED_AS_IS = frozenset({".b2nd", ".b2frame", ".b2", ".b2z", ".h5", ".hdf5"})
# A whole fetch of these sends the stored file with its ETag (caterva2-rest.md §6.3).
_FETCHED_WHOLE = frozenset({".b2nd", ".b2frame"})


@dataclass(slots=True)
class PassResult:
    listed: int = 0
    downloaded: int = 0
    extended: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
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


_Tally = Literal["downloaded", "extended", "unchanged", "skipped", "failed"]


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


def _is_nfc(name: str) -> bool:
    return unicodedata.is_normalized("NFC", name)


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
        """List, compare, download what changed, then apply deletions."""
        result = PassResult()
        self.rule.local.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            self._sweep_temporaries()
            self._swept = True
        listing = self.client.get_list(self.rule.remote)
        names = self._safe_names(listing, result)
        result.listed = len(names)
        with ThreadPoolExecutor(
            max_workers=self.rule.concurrency, thread_name_prefix="cat2sync-mirror"
        ) as pool:
            for outcome in pool.map(lambda item: self._sync_one(*item), names.items()):
                self._tally(outcome, result)
        # Everything listed still exists remotely, even what was skipped this time.
        self._delete_vanished(set(listing), result)
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

    def _safe_names(self, listing: list[str], result: PassResult) -> dict[str, Path]:
        """Listing entries this rule mirrors, mapped to safe local paths."""
        known = {r.remote_rel for r in self.state.mirrored_for_rule(self.rule.name)}
        safe: dict[str, Path] = {}
        keys: dict[str, str] = {}  # collision key -> the name that took it
        # Of colliding names, one already mirrored wins (a newcomer never evicts it),
        # then one already in NFC (the server cannot even serve some other forms).
        for name in sorted(listing, key=lambda n: (n not in known, not _is_nfc(n))):
            if (
                not self.matcher(name)
                or name.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)
                or self.plugins.ignore(self.rule, name)
            ):
                continue
            try:
                clean, target = local_target(self.rule.local, name)
            except UnsafeName as exc:
                self._skip(name, str(exc), result)
                continue
            key = collision_key(clean)
            if key in keys:
                self._skip(name, f"collides with {keys[key]!r} once normalised", result)
                continue
            keys[key] = name
            safe[name] = target
        for key in _folder_clashes(keys):  # a file named like another entry's folder
            self._skip(keys[key], "is also the name of a remote folder", result)
            del safe[keys[key]]
        return safe

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

    def _sync_one(self, name: str, target: Path) -> _Outcome:
        remote = self.remote_for(name)
        try:
            rec = self.state.get_mirrored(self.rule.name, name)
            if rec is None and self._fetched_whole(name):
                fetched = self._fetch_new(name, target)
                if fetched is not None:
                    return fetched
            info, etag = self.client.stat(remote)
            return self._bring(_Remote(name, target, info, etag), rec)
        except NotFound:
            return _Outcome(None)  # removed between the listing and now
        except Exception as exc:  # server, network, local I/O, damaged data: next pass
            message = str(exc) or exc.__class__.__name__
            if not isinstance(exc, Cat2Error | OSError):
                log.debug("%s: %s", remote, message, exc_info=exc)
                message = f"{exc.__class__.__name__}: {message}"
            return _Outcome(
                "failed",
                Event(
                    kind=EventKind.FAILED,
                    rule=self.rule.name,
                    path=name,
                    remote=remote,
                    message=message,
                ),
            )

    def _fetched_whole(self, name: str) -> bool:
        """Whether a first copy of ``name`` can be the server's stored file as fetched."""
        return self.chain is None and PurePosixPath(name).suffix.lower() in _FETCHED_WHOLE

    def _fetch_new(self, name: str, target: Path) -> _Outcome | None:
        """A dataset seen for the first time, in one request (its ETag comes with it);
        None when the server cannot serve it that way (``stat`` then says why)."""
        remote = self.remote_for(name)
        started = time.monotonic()
        try:
            written, etag = self.client.fetch_to(remote, target, durable=True)
        except (ServerError, BadRequest):
            return None
        shape, nchunks = _local_layout(target)
        self._record(name, target, etag=etag, mtime=None, shape=shape, nchunks=nchunks)
        event = Event(
            kind=EventKind.DOWNLOADED,
            rule=self.rule.name,
            path=self._local_rel(target),
            remote=remote,
            bytes=written,
            seconds=time.monotonic() - started,
        )
        return _Outcome("downloaded", event, remote)

    def _bring(self, entry: _Remote, rec: Mirrored | None) -> _Outcome:
        remote = self.remote_for(entry.name)
        if (
            rec is not None
            and entry.etag is not None
            and rec.etag == entry.etag
            and self._local_intact(entry.target, rec)
        ):
            return _Outcome("unchanged")
        if "error" in entry.info:  # the server cannot read it, nor serve it (500)
            return _Outcome(
                "skipped",
                Event(
                    kind=EventKind.SKIPPED,
                    rule=self.rule.name,
                    path=self._local_rel(entry.target),
                    remote=remote,
                    message=f"the server cannot read it ({entry.info['error']}): not mirrored",
                ),
            )
        started = time.monotonic()
        # A transformed copy is not the server's file: it cannot grow by its chunks.
        rows, nbytes = self._extend(entry, rec) if self.chain is None else (None, 0)
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

    def _download(self, entry: _Remote) -> int:
        """Download ``entry`` whole (atomically); returns the bytes it cost."""
        if self.chain is not None and entry.name.endswith(".b2nd") and entry.info.get("shape"):
            return self._download_transformed(entry)
        written = self.client.download_to(self.remote_for(entry.name), entry.target, durable=True)
        if PurePosixPath(entry.name).suffix.lower() in _STORED_AS_IS:
            return written
        # A regular file crossed the network as its compressed frame, of about cbytes.
        cbytes = _schunk_info(entry.info).get("cbytes")
        return int(cbytes) if isinstance(cbytes, int) and cbytes >= 0 else written

    def _download_transformed(self, entry: _Remote) -> int:
        """Download beside the target, write its transform, rename that into place."""
        assert self.chain is not None
        entry.target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=entry.target.parent, prefix=TEMP_PREFIX) as tmp:
            raw, out = Path(tmp) / "raw.b2nd", Path(tmp) / "out.b2nd"
            written = self.client.download_to(self.remote_for(entry.name), raw)
            self.chain.rewrite(blosc2.open(str(raw), mode="r"), out, path=entry.name)
            out.replace(entry.target)
        return written

    @staticmethod
    def _local_intact(target: Path, rec: Mirrored) -> bool:
        try:
            st = target.stat()
        except FileNotFoundError:
            return False
        return st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns

    def _record(
        self,
        name: str,
        target: Path,
        *,
        etag: str | None,
        mtime: str | None,
        shape: tuple[int, ...] | None,
        nchunks: int | None,
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
            )
        )

    # -- incremental growth ----------------------------------------------------

    def _extend(self, entry: _Remote, rec: Mirrored | None) -> tuple[int | None, int]:
        """Fetch only the chunks a grown dataset added.

        Returns ``(new rows, bytes fetched)``; rows is None when the entry did not just
        grow, or when the extended copy could not be proved right (download it whole).
        """
        shape = entry.info.get("shape")
        if (
            rec is None
            or rec.shape is None
            or not shape
            or not entry.name.endswith(".b2nd")
            or not self._local_intact(entry.target, rec)
        ):
            return None, 0
        old_rows, new_rows = rec.shape[0], shape[0]
        if tuple(shape[1:]) != rec.shape[1:] or new_rows <= old_rows:
            return None, 0
        fetched: list[int] = []

        def fetch(nchunk: int) -> bytes:
            chunk = self.client.get_chunk(self.remote_for(entry.name), nchunk)
            fetched.append(len(chunk))
            return chunk

        try:
            self._extend_file(entry, old_rows, fetch)
        except (Cat2Error, RuntimeError, ValueError, KeyError, OSError) as exc:
            log.info(
                "%s: incremental update of %s not possible (%s); downloading it whole",
                self.rule.name,
                entry.name,
                exc,
            )
            return None, sum(fetched)
        return int(new_rows - old_rows), sum(fetched)

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

    def _delete_vanished(self, present: set[str], result: PassResult) -> None:
        records = self.state.mirrored_for_rule(self.rule.name)
        gone = [r for r in records if r.remote_rel not in present]
        if not gone or not self.rule.delete:
            return
        cap = max(1, int(self.rule.max_delete * len(records)))
        if not present or len(gone) > cap:
            reason = (
                (
                    f"{len(gone)} of {len(records)} mirrored files vanished remotely, more "
                    f"than max_delete allows ({cap}): no local file removed"
                )
                if present
                else "the remote folder lists nothing: no local file removed"
            )
            result.errors.append(reason)
            self.emit(
                Event(
                    kind=EventKind.SKIPPED,
                    rule=self.rule.name,
                    path=".",
                    remote=self.rule.remote,
                    message=reason,
                )
            )
            return
        for rec in gone:
            self._delete_local(rec, result)

    def _delete_local(self, rec: Mirrored, result: PassResult) -> None:
        remote = self.remote_for(rec.remote_rel)
        try:
            _, target = local_target(self.rule.local, rec.remote_rel)
        except UnsafeName:
            self.state.delete_mirrored(self.rule.name, rec.remote_rel)
            return
        if target.exists() and not self._local_intact(target, rec):
            self.emit(
                Event(
                    kind=EventKind.SKIPPED,
                    rule=self.rule.name,
                    path=rec.remote_rel,
                    remote=remote,
                    message="changed locally since it was mirrored: kept",
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


def _folder_clashes(keys: Iterable[str]) -> list[str]:
    """Collision keys of files that are also a folder on another entry's path."""
    files = list(keys)
    folders = {
        "/".join(parts[:i]) for parts in (k.split("/") for k in files) for i in range(1, len(parts))
    }
    return [k for k in files if k in folders]
