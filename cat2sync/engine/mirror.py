"""The mirror side of a rule: a remote folder → a local folder, one pass at a time.

A pass lists the remote folder, asks ``info`` for every entry (the listing has names
only), and compares each with what was last written (ETag, shape, chunk count). New or
replaced entries are downloaded to a temporary file and renamed into place; a dataset
that only grew along its first axis is extended with just the new compressed chunks.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blosc2

from ..client import Client
from ..errors import Cat2Error, NotFound
from ..events import Event, EventKind, EventSink
from ..manifest import SubscribeRule
from ..state import Mirrored, StateStore
from .localtree import TEMP_PREFIX, Matcher
from .names import UnsafeName, local_target

__all__ = ["MirrorEngine", "PassResult"]

log = logging.getLogger(__name__)


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
    name: str  # relative to the rule's remote folder, normalised
    target: Path
    info: dict[str, Any]
    etag: str | None


def _schunk_info(info: dict[str, Any]) -> dict[str, Any]:
    schunk: dict[str, Any] = info.get("schunk", info)
    return schunk


class MirrorEngine:
    """Runs one ``[[subscribe]]`` rule."""

    def __init__(self, rule: SubscribeRule, client: Client, state: StateStore,
                 emit: EventSink) -> None:
        self.rule = rule
        self.client = client
        self.state = state
        self.emit = emit
        self.matcher = Matcher(rule.include, rule.exclude)

    def remote_for(self, name: str) -> str:
        return f"{self.rule.remote}/{name}"

    # -- a pass ----------------------------------------------------------------

    def run_pass(self) -> PassResult:
        """List, compare, download what changed, then apply deletions."""
        result = PassResult()
        self.rule.local.mkdir(parents=True, exist_ok=True)
        names = self._safe_names(self.client.get_list(self.rule.remote), result)
        result.listed = len(names)
        with ThreadPoolExecutor(max_workers=self.rule.concurrency,
                                thread_name_prefix="cat2sync-mirror") as pool:
            for outcome in pool.map(lambda item: self._sync_one(item[0], item[1], result),
                                    names.items()):
                if outcome is not None:
                    self.emit(outcome)
        self._delete_vanished(set(names), result)
        return result

    def _safe_names(self, listing: list[str], result: PassResult) -> dict[str, Path]:
        """Listing entries this rule mirrors, mapped to safe local paths."""
        safe: dict[str, Path] = {}
        seen: dict[str, str] = {}
        for name in listing:
            if not self.matcher(name) or name.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
                continue
            try:
                clean, target = local_target(self.rule.local, name)
            except UnsafeName as exc:
                self._skip(name, str(exc), result)
                continue
            key = clean.casefold()
            if key in seen:
                self._skip(name, f"collides with {seen[key]!r} once normalised", result)
                continue
            seen[key] = name
            safe[name] = target
        return safe

    def _skip(self, name: str, reason: str, result: PassResult) -> None:
        result.skipped += 1
        self.emit(Event(kind=EventKind.SKIPPED, rule=self.rule.name, path=repr(name),
                        remote=self.remote_for(name), message=f"unsafe remote name: {reason}"))

    def _sync_one(self, name: str, target: Path, result: PassResult) -> Event | None:
        remote = self.remote_for(name)
        try:
            info, etag = self.client.stat(remote)
            return self._bring(_Remote(name, target, info, etag), result)
        except NotFound:
            return None  # removed between the listing and now
        except (Cat2Error, OSError) as exc:
            result.failed += 1
            result.errors.append(f"{remote}: {exc}")
            return Event(kind=EventKind.FAILED, rule=self.rule.name, path=name, remote=remote,
                         message=str(exc))

    def _bring(self, entry: _Remote, result: PassResult) -> Event | None:
        rec = self.state.get_mirrored(self.rule.name, entry.name)
        if rec is not None and rec.etag == entry.etag and self._local_intact(entry.target, rec):
            result.unchanged += 1
            return None
        if entry.info.get("kind") == "group" or "error" in entry.info:
            return None  # an HDF5 member folder or a file the server cannot read
        started, before = time.monotonic(), self.client.stats.bytes_received
        rows = self._extend(entry, rec)
        kind_done = "extended" if rows is not None else "downloaded"
        if rows is None:
            self.client.download_to(self.remote_for(entry.name), entry.target)
        self._record(entry)
        nbytes = self.client.stats.bytes_received - before
        result.bytes += nbytes
        result.changed_remotes.append(self.remote_for(entry.name))
        if kind_done == "extended":
            result.extended += 1
        else:
            result.downloaded += 1
        return Event(kind=EventKind.DOWNLOADED, rule=self.rule.name, path=entry.name,
                     remote=self.remote_for(entry.name), rows=rows, bytes=nbytes,
                     seconds=time.monotonic() - started,
                     message="new rows only" if kind_done == "extended" else None)

    @staticmethod
    def _local_intact(target: Path, rec: Mirrored) -> bool:
        try:
            st = target.stat()
        except FileNotFoundError:
            return False
        return st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns

    def _record(self, entry: _Remote) -> None:
        st = entry.target.stat()
        shape = entry.info.get("shape")
        self.state.put_mirrored(Mirrored(
            rule=self.rule.name, remote_rel=entry.name, etag=entry.etag,
            mtime=entry.info.get("mtime"), shape=tuple(shape) if shape else None,
            nchunks=_schunk_info(entry.info).get("nchunks"), size=st.st_size,
            mtime_ns=st.st_mtime_ns))

    # -- incremental growth ----------------------------------------------------

    def _extend(self, entry: _Remote, rec: Mirrored | None) -> int | None:
        """Fetch only the chunks a grown dataset added; None when not applicable."""
        shape = entry.info.get("shape")
        if (rec is None or rec.shape is None or not shape or not entry.name.endswith(".b2nd")
                or not self._local_intact(entry.target, rec)):
            return None
        old_rows, new_rows = rec.shape[0], shape[0]
        if tuple(shape[1:]) != rec.shape[1:] or new_rows <= old_rows:
            return None
        try:
            self._extend_file(entry, old_rows)
        except (Cat2Error, RuntimeError, ValueError, OSError) as exc:
            log.info("%s: incremental update of %s not possible (%s); downloading it whole",
                     self.rule.name, entry.name, exc)
            return None
        return int(new_rows - old_rows)

    def _extend_file(self, entry: _Remote, old_rows: int) -> None:
        remote = self.remote_for(entry.name)
        chunks = tuple(entry.info["chunks"])
        with tempfile.NamedTemporaryFile(dir=entry.target.parent, prefix=TEMP_PREFIX,
                                         suffix=".b2nd", delete=False) as tmp:
            tmp_path = Path(tmp.name)
        try:
            shutil.copyfile(entry.target, tmp_path)
            arr = blosc2.open(str(tmp_path), mode="a")
            if tuple(arr.chunks) != chunks:
                raise ValueError("the chunk layout changed")
            per_row = max(1, arr.schunk.nchunks // max(1, -(-arr.shape[0] // chunks[0])))
            first = (old_rows // chunks[0]) * per_row
            arr.resize(tuple(entry.info["shape"]))
            for nchunk in range(first, arr.schunk.nchunks):
                arr.schunk.update_chunk(nchunk, self.client.get_chunk(remote, nchunk))
            self._verify(arr, entry.info)
            del arr
            tmp_path.replace(entry.target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()

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
        if not gone:
            return
        if not self.rule.delete:
            return
        cap = max(1, int(self.rule.max_delete * len(records)))
        if not present or len(gone) > cap:
            reason = (f"{len(gone)} of {len(records)} mirrored files vanished remotely, more "
                      f"than max_delete allows ({cap}): no local file removed") if present else \
                "the remote folder lists nothing: no local file removed"
            result.errors.append(reason)
            self.emit(Event(kind=EventKind.SKIPPED, rule=self.rule.name, path=".",
                            remote=self.rule.remote, message=reason))
            return
        for rec in gone:
            self._delete_local(rec, result)

    def _delete_local(self, rec: Mirrored, result: PassResult) -> None:
        try:
            _, target = local_target(self.rule.local, rec.remote_rel)
        except UnsafeName:
            self.state.delete_mirrored(self.rule.name, rec.remote_rel)
            return
        if target.exists() and not self._local_intact(target, rec):
            self.emit(Event(kind=EventKind.SKIPPED, rule=self.rule.name, path=rec.remote_rel,
                            message="changed locally since it was mirrored: kept"))
        else:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            result.deleted += 1
            self.emit(Event(kind=EventKind.DELETED, rule=self.rule.name, path=rec.remote_rel,
                            remote=self.remote_for(rec.remote_rel)))
        self.state.delete_mirrored(self.rule.name, rec.remote_rel)
