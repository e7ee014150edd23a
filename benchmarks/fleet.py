"""The fleet (issue 15): one uploader and many subscriber daemons on one server.

``fleet``: one ``cat2sync run`` uploader ships ``--small-files`` small datasets into one
remote folder, and ``--fleet-subscribers`` ``cat2sync run`` subscriber daemons (each a
process with its own state) mirror that folder every few seconds. Measured on the
server: its CPU per minute while nothing changes and while a few datasets change every
round, the requests per subscriber pass (counted in the server's own access log; the
uploader talks through a counting relay, so its requests are told apart), and the
freshness: from a dataset's upload (its mtime on the server) to the moment the last
subscriber's copy was written (that file's mtime). From the server CPU per pass comes
how many subscribers one server holds at that many datasets mirrored every minute.

``--fleet-journal off|on|both`` runs it without the change journal, with it, or both
(the uploader's ``journal`` key; the default).

``mirror-small-journal``: ``--small-files`` datasets shipped by a cat2sync upload rule
(so the folder has a journal), mirrored by ``cat2sync once``: the cold pass, a pass
with nothing changed and a pass after 10 changed, each in a fresh interpreter, beside
the 1,001 requests of ``mirror-small-resync`` (a folder without a journal).

``journal-floor``: what the journal itself costs the server, with bare
:mod:`cat2sync.journal` calls: an append of one entry and of a batch of 100, a
no-change read (the listing of ``.cat2sync/`` plus one fetch), and the first read of a
journal (its end located: an ``info`` plus one fetch).

Every figure is checked: at the end each subscriber's folder must hold exactly the
uploader's files, byte for byte, and no journal file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import blosc2
import numpy as np
import tomli_w
from _common import Context, Figure, Target, VerificationError, case, run_isolated
from _proxy import CountingProxy
from daemon_cases import (
    REMOTE,
    _check_pass,
    _client,
    _next_run,
    _process_cpu,
    _wait_for,
    _write_manifest,
    daemon_once_worker,
)

#: The modes of ``--fleet-journal``, in the order they run.
JOURNAL_MODES = {"off": ("without",), "on": ("with",), "both": ("without", "with")}
_REQUEST = re.compile(rb'"(GET|POST) /\S* HTTP/1\.1" ')
_PASS_DONE = ": pass done:"
_SETTLE = 0.3  # seconds the uploader waits for a file to be quiet


@dataclass(frozen=True, slots=True)
class FleetSizes:
    datasets: int
    subscribers: int
    every: float  # seconds between two passes of a subscriber
    idle: float  # seconds of the window in which nothing changes, at least
    passes_each: int  # passes each subscriber finishes in that window, at least
    rounds: int  # rounds of changes
    changes: int  # datasets changed per round


def _sizes(ctx: Context) -> FleetSizes:
    if ctx.tiny:
        return FleetSizes(ctx.small_files, ctx.fleet_subscribers, 1.0, 5.0, 2, 2, 3)
    return FleetSizes(ctx.small_files, ctx.fleet_subscribers, 5.0, 60.0, 3, 5, 10)


# -- the processes -------------------------------------------------------------------


def _manifest(
    path: Path, url: str, user: tuple[str, str], rule: tuple[str, dict[str, Any]]
) -> Path:
    """A manifest with one rule, its state folder beside it, logging every pass."""
    kind, table = rule
    doc = {
        "daemon": {"state_dir": str(path.parent / "state"), "log_level": "info"},
        "server": {"url": url, "username": user[0], "password": user[1]},
        kind: [table],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(doc))
    return path


class _Daemon:
    """``cat2sync run MANIFEST`` as a process of its own, its log in a file beside it."""

    def __init__(self, manifest: Path) -> None:
        self.log = manifest.with_suffix(".log")
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cat2sync", "run", str(manifest)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def passes(self) -> int:
        """Subscription passes finished so far (from the log)."""
        return self.log.read_bytes().count(_PASS_DONE.encode())

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.log.stem} exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@contextlib.contextmanager
def _daemons(manifests: Sequence[Path]) -> Iterator[list[_Daemon]]:
    started: list[_Daemon] = []
    try:
        for manifest in manifests:
            started.append(_Daemon(manifest))
        yield started
    finally:
        for daemon in started:
            daemon.stop()


# -- data ------------------------------------------------------------------------------


def _write_dataset(path: Path, rng: np.random.Generator) -> None:
    """A small ``.b2nd`` (300 to 900 float64 values), written beside its name and renamed
    into place, as an instrument would (the uploader never sees half a file)."""
    values = np.round(np.cumsum(rng.standard_normal(int(rng.integers(300, 900)))), 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blosc2.asarray(values).to_cframe())
    tmp.replace(path)


def _files(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in folder.rglob("*.b2nd")
        if p.is_file() and not p.name.startswith(".")
    }


def _same(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except FileNotFoundError:
        return False


# -- one fleet -------------------------------------------------------------------------


class _Window:
    """What the server did between :meth:`open` and :meth:`close`: its CPU, the
    requests of the subscribers (the server's access log, less the uploader's requests
    counted by its relay), and the subscriber passes that finished."""

    def __init__(self, ctx: Context, fleet: Sequence[_Daemon], relay: CountingProxy) -> None:
        self.ctx, self.fleet, self.relay = ctx, fleet, relay
        self.log = ctx.server_state.parent / "server.log"
        self.cpu = self.seconds = 0.0
        self.requests = self.passes = self.uploader = 0
        self._marks = (0.0, 0.0, 0, 0, 0)

    def open(self) -> _Window:
        self._marks = (
            _process_cpu(self.ctx.server_pid),
            time.perf_counter(),
            self.log.stat().st_size,
            self.relay.totals().requests,
            sum(d.passes() for d in self.fleet),
        )
        return self

    def wait(self, seconds: float, *, passes_each: int) -> None:
        """At least ``seconds``, and until every subscriber finished ``passes_each``
        passes in the window (a per-pass figure is then off by less than one pass in
        ``passes_each`` per subscriber), or ten times ``seconds`` at most."""
        start = [d.passes() for d in self.fleet]
        time.sleep(seconds)
        deadline = time.monotonic() + 9 * seconds
        while time.monotonic() < deadline and any(
            d.passes() - s < passes_each for d, s in zip(self.fleet, start, strict=True)
        ):
            time.sleep(0.5)

    def close(self, own_requests: int = 0) -> _Window:
        """``own_requests``: made by the benchmark itself meanwhile (left out)."""
        cpu0, wall0, log0, relayed0, passes0 = self._marks
        self.cpu = _process_cpu(self.ctx.server_pid) - cpu0
        self.seconds = time.perf_counter() - wall0
        with self.log.open("rb") as log:
            log.seek(log0)
            logged = len(_REQUEST.findall(log.read()))
        self.uploader = self.relay.totals().requests - relayed0
        self.requests = logged - self.uploader - own_requests
        self.passes = sum(d.passes() for d in self.fleet) - passes0
        if self.passes <= 0:
            raise VerificationError(f"no subscriber pass finished in {self.seconds:.0f} s")
        return self


def _wait_mirrored(
    fleet: Sequence[_Daemon],
    mirrors: Sequence[Path],
    source: dict[str, Path],
    names: Collection[str],
    timeout: float,
) -> None:
    def arrived() -> bool:
        for daemon in fleet:
            daemon.check_alive()
        return all(_same(source[n], m / n) for m in mirrors for n in names)

    _wait_for(f"{len(names)} datasets in {len(mirrors)} mirrors", arrived, timeout, interval=0.1)


def _fleet(ctx: Context, mode: str) -> list[Figure]:
    sz = _sizes(ctx)
    run = _next_run(ctx, f"fleet-{mode}")
    remote = f"{REMOTE}/fleet-{mode}-{run}"
    work = ctx.scratch(f"fleet-{mode}")
    source = work / "acquisition"
    rng = np.random.default_rng(run)
    names = [f"r{i // 100:02d}/d{i:05d}.b2nd" for i in range(sz.datasets)]
    for name in names:
        _write_dataset(source / name, rng)
    upload: dict[str, Any] = {
        "name": "acquisition",
        "local": str(source),
        "remote": remote,
        "settle": _SETTLE,
        "include": ["**/*.b2nd"],
    }
    upload["journal"] = mode == "with"
    mirrors = [work / f"sub{i:02d}" / "mirror" for i in range(sz.subscribers)]
    with CountingProxy(ctx.url) as relay, _client(ctx) as checker:
        up = _manifest(work / "uploader" / "cat2sync.toml", relay.url, ctx.user, ("upload", upload))
        with _daemons([up]) as (uploader,):

            def uploaded() -> bool:
                uploader.check_alive()
                return len(checker.get_list(remote)) >= sz.datasets

            _wait_for(f"{sz.datasets} datasets uploaded", uploaded, 60 + 0.05 * sz.datasets, 0.5)
            subs = [
                _manifest(
                    mirror.parent / "cat2sync.toml",
                    ctx.url,
                    ctx.user,
                    (
                        "subscribe",
                        {"name": "fleet", "root": remote, "local": str(mirror), "every": sz.every},
                    ),
                )
                for mirror in mirrors
            ]
            with _daemons(subs) as fleet:
                files = _files(source)
                _wait_mirrored(
                    fleet, mirrors, files, names, 120 + 0.02 * sz.datasets * sz.subscribers
                )
                time.sleep(2 * sz.every)  # every subscriber is past its first pass
                idle = _Window(ctx, fleet, relay).open()
                idle.wait(sz.idle, passes_each=sz.passes_each)
                idle.close()
                busy = _Window(ctx, fleet, relay).open()
                own0 = checker.stats.requests
                fresh = _rounds(ctx, sz, source, remote, mirrors, fleet, checker, rng)
                busy.close(own_requests=checker.stats.requests - own0)
            if mode == "with" and not checker.get_list(f"{remote}/.cat2sync"):
                raise VerificationError("the uploader kept no journal")
        _check_fleet(source, mirrors)
    shutil.rmtree(work)
    return _figures(mode, sz, idle, busy, fresh)


def _rounds(
    ctx: Context,
    sz: FleetSizes,
    source: Path,
    remote: str,
    mirrors: Sequence[Path],
    fleet: Sequence[_Daemon],
    checker: Any,
    rng: np.random.Generator,
) -> list[tuple[float, float]]:
    """Change a few datasets per round; for each, (upload -> last subscriber's copy,
    local write -> last subscriber's copy), in seconds."""
    names = sorted(_files(source))
    fresh: list[tuple[float, float]] = []
    for _ in range(sz.rounds):
        changed = [names[int(i)] for i in rng.choice(len(names), sz.changes, replace=False)]
        written = time.time()
        for name in changed:
            _write_dataset(source / name, rng)
        files = _files(source)
        timeout = 60 + 0.01 * sz.datasets * sz.subscribers
        _wait_mirrored(fleet, mirrors, files, changed, timeout)
        for name in changed:
            stored = checker.get_info(f"{remote}/{name}")["mtime"]  # when the server wrote it
            at = dt.datetime.fromisoformat(stored).timestamp()
            last = max((m / name).stat().st_mtime for m in mirrors)
            fresh.append((last - at, last - written))
        time.sleep(sz.every)
    return fresh


def _check_fleet(source: Path, mirrors: Sequence[Path]) -> None:
    """Every mirror holds exactly the uploader's files, and no journal file."""
    files = _files(source)
    for mirror in mirrors:
        found = {p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file()}
        if found != set(files):
            extra, missing = sorted(found - set(files))[:3], sorted(set(files) - found)[:3]
            raise VerificationError(f"{mirror}: extra {extra}, missing {missing}")
        wrong = [n for n, p in files.items() if not _same(p, mirror / n)]
        if wrong:
            raise VerificationError(f"{mirror}: {len(wrong)} files differ, e.g. {wrong[0]}")


def _figures(
    mode: str, sz: FleetSizes, idle: _Window, busy: _Window, fresh: list[tuple[float, float]]
) -> list[Figure]:
    cpu_per_pass = idle.cpu / idle.passes
    per_pass = idle.requests / idle.passes
    target = Target("≤ 3 req", 3.0) if mode == "with" else None
    changes = sz.rounds * sz.changes * sz.subscribers
    extra = max(0.0, busy.requests - per_pass * busy.passes) / changes
    label = f"{mode} journal"
    return [
        Figure(f"{label}: requests per pass, nothing changing", per_pass, "req", False, target),
        Figure(f"{label}: passes measured, nothing changing", idle.passes, "passes", True),
        Figure(f"{label}: server CPU per pass, nothing changing", 1e3 * cpu_per_pass, "ms", False),
        Figure(
            f"{label}: server CPU per minute, nothing changing",
            60 * idle.cpu / idle.seconds,
            "s",
            False,
        ),
        Figure(
            f"{label}: server CPU per minute, {sz.changes} datasets changed a round",
            60 * busy.cpu / busy.seconds,
            "s",
            False,
        ),
        Figure(f"{label}: requests per changed dataset and subscriber", extra, "req", False),
        Figure(
            f"{label}: uploader's requests per changed dataset",
            busy.uploader / (sz.rounds * sz.changes),
            "req",
            False,
        ),
        Figure(
            f"{label}: upload -> last subscriber's copy, median",
            median(f for f, _ in fresh),
            "s",
            False,
        ),
        Figure(
            f"{label}: upload -> last subscriber's copy, max", max(f for f, _ in fresh), "s", False
        ),
        Figure(
            f"{label}: local write -> last subscriber's copy, max",
            max(w for _, w in fresh),
            "s",
            False,
        ),
        Figure(
            f"{label}: subscribers one server holds, {sz.datasets} datasets every minute",
            60.0 / cpu_per_pass,
            "subscribers",
            True,
        ),
    ]


@case(
    "fleet",
    "one uploader and --fleet-subscribers subscriber daemons (processes) on one server: "
    "server CPU, requests per pass, freshness (--fleet-journal: without/with the journal)",
    sides=("cat2sync",),
)
def fleet(ctx: Context, side: str) -> list[Figure]:
    modes = JOURNAL_MODES[ctx.fleet_journal]
    figures: list[Figure] = []
    for mode in modes:
        figures += _fleet(ctx, mode)
    return figures


# -- one subscriber's passes over a journaled folder -----------------------------------

_CHANGED = 10  # datasets changed before the last pass


def _ship(manifest: Path) -> None:
    """``cat2sync once`` on the uploader: every changed file sent, its journal flushed."""
    _check_pass("uploader", run_isolated(daemon_once_worker, str(manifest)))


def _check_copy(source: Path, mirror: Path) -> None:
    files = _files(source)
    found = {p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file()}
    wrong = [rel for rel, path in files.items() if not _same(path, mirror / rel)]
    if found != set(files) or wrong:
        raise VerificationError(f"{mirror}: {len(wrong)} differ, {len(found ^ set(files))} extra")


def _journal_pass(name: str, out: dict[str, Any], cold: dict[str, Any]) -> list[Figure]:
    limit = 3 if name == "no change" else 3 + 2 * _CHANGED
    return [
        Figure(f"{name}: requests", out["requests"], "req", False, Target(f"≤ {limit} req", limit)),
        Figure(f"{name}: server CPU", 1e3 * out["server_cpu"], "ms", False),
        Figure(f"{name}: wall time", out["seconds"], "s", False),
        Figure(
            f"{name}: pass / cold mirror",
            out["seconds"] / cold["seconds"],
            "x",
            False,
            Target("≤ 0.2x", 0.2) if name == "no change" else None,
        ),
    ]


@case(
    "mirror-small-journal",
    "the small datasets shipped by a cat2sync upload rule (journal on), mirrored: a pass "
    "with nothing changed and one after 10 changed (beside mirror-small-resync)",
    sides=("cat2sync",),
)
def mirror_small_journal(ctx: Context, side: str) -> list[Figure]:
    run = _next_run(ctx, "small-journal")
    work = ctx.scratch("small-journal")
    source, mirror = work / "acquisition", work / "subscriber" / "mirror"
    rng = np.random.default_rng(run)
    names = [f"g{i % 10}/s{(i // 10) % 10}/d{i:05d}.b2nd" for i in range(ctx.small_files)]
    for name in names:
        _write_dataset(source / name, rng)
    remote = f"{REMOTE}/small-journal-{run}"
    rule = {"name": "acquisition", "local": str(source), "remote": remote, "settle": _SETTLE}
    uploader = _write_manifest(
        work / "uploader" / "cat2sync.toml", ctx.url, ctx.user, uploads=[rule]
    )
    subscriber = _write_manifest(
        mirror.parent / "cat2sync.toml",
        ctx.url,
        ctx.user,
        subscribe=[{"name": "mirror", "root": remote, "local": str(mirror)}],
    )
    time.sleep(_SETTLE)
    _ship(uploader)
    passes: dict[str, dict[str, Any]] = {}
    for name in ("cold", "no change"):
        passes[name] = run_isolated(daemon_once_worker, str(subscriber), ctx.server_pid)
        _check_pass(name, passes[name])
        _check_copy(source, mirror)
    for name in rng.choice(names, _CHANGED, replace=False):
        _write_dataset(source / name, rng)
    time.sleep(_SETTLE)
    _ship(uploader)
    changed = run_isolated(daemon_once_worker, str(subscriber), ctx.server_pid)
    _check_pass("after changes", changed)
    _check_copy(source, mirror)
    fetched = sum(changed["events"].get(kind, 0) for kind in ("downloaded", "extended"))
    if fetched != _CHANGED:
        raise VerificationError(f"{changed['events']}: expected {_CHANGED} datasets fetched")
    shutil.rmtree(work)
    cold = passes["cold"]
    return [
        Figure("cold pass: wall time", cold["seconds"], "s", False),
        *_journal_pass("no change", passes["no change"], cold),
        *_journal_pass(f"{_CHANGED} changed", changed, cold),
    ]


# -- the journal's own cost ------------------------------------------------------------


class _MemoryState:
    """A journal writer's state kept in memory: the benchmark's writer never restarts."""

    def __init__(self) -> None:
        self.cursor: str | None = None
        self.rows: dict[int, Any] = {}

    def journal_cursor(self, rule: str) -> str | None:
        return self.cursor

    def put_journal_cursor(self, rule: str, cursor: str, *, done: Collection[int] = ()) -> None:
        self.cursor = cursor
        self.drop_journal_pending(rule, done)

    def add_journal_pending(self, rule: str, names: Sequence[str], entry: str | None = None) -> int:
        from cat2sync.journal import PendingRow

        row = max(self.rows, default=0) + 1
        self.rows[row] = PendingRow(row, tuple(names), entry)
        return row

    def fill_journal_pending(self, rule: str, row: int, entry: str) -> None:
        self.rows[row] = self.rows[row]._replace(entry=entry)

    def drop_journal_pending(self, rule: str, rows: Collection[int]) -> None:
        for row in rows:
            self.rows.pop(row, None)

    def journal_pending(self, rule: str) -> list[Any]:
        return [self.rows[row] for row in sorted(self.rows)]


def _server_ms(ctx: Context, times: int, step: Any) -> float:
    """Server CPU (ms) per call of ``step()``, called ``times`` times in a row."""
    cpu0 = _process_cpu(ctx.server_pid)
    for _ in range(times):
        step()
    return 1e3 * (_process_cpu(ctx.server_pid) - cpu0) / times


@case(
    "journal-floor",
    "what the change journal costs the server: an append of 1 and of 100 entries, "
    "a read with nothing new, the first read of a journal",
    sides=("cat2sync",),
)
def journal_floor(ctx: Context, side: str) -> list[Figure]:
    from cat2sync.journal import Entry, FullPass, Incremental, JournalReader, JournalWriter

    times = 40 if ctx.tiny else 400
    folder = f"{REMOTE}/journal-floor-{_next_run(ctx, 'journal-floor')}"
    with _client(ctx) as client:
        writer = JournalWriter(
            client, _MemoryState(), rule="bench", folder=folder, identity="bench", quiet=3600
        )
        writer.record(Entry.sent("first.b2nd"))
        writer.flush()  # the journal exists from here on
        reader = JournalReader(client, folder)
        start = reader.read({})
        assert isinstance(start, FullPass)
        written = iter(range(10**9))

        def append(entries: int) -> None:
            for _ in range(entries):
                n = next(written)
                writer.record(Entry.sent(f"run/d{n:06d}.b2nd", etag=f'"u-{n:x}-18ed2e3bca399b69"'))
            writer.flush()

        one = _server_ms(ctx, times, lambda: append(1))
        hundred = _server_ms(ctx, max(1, times // 10), lambda: append(100))
        got = reader.read(start.positions)
        total = next(written)
        if not isinstance(got, Incremental) or len(got.changes) != total:
            raise VerificationError(f"{total} entries written, the reader found {got}")
        requests0 = client.stats.requests
        nothing = _server_ms(ctx, times, lambda: reader.read(got.positions))
        requests = (client.stats.requests - requests0) / times
        first = _server_ms(ctx, times, lambda: reader.read({}))
        writer.close()
        client.remove(folder)
    return [
        Figure("server CPU per append of 1 entry", one, "ms", False),
        Figure("server CPU per append of 100 entries", hundred, "ms", False),
        Figure("server CPU per read with nothing new (list + fetch)", nothing, "ms", False),
        Figure("requests per read with nothing new, one writer", requests, "req", False),
        Figure("server CPU per first read (list + info + fetch)", first, "ms", False),
    ]
