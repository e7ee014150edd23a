"""Daemon cases: the sync daemon against the upstream agent, a script, or the raw limit.

The seven situations of issue 7, each measured for cat2sync's daemon and for what a
user would do without it:

* ``grow-append``: a ``(N, 1000)`` float64 ``.b2nd`` grows by 100 rows 40 times in a
  watched folder. cat2sync: ``Daemon.start()``; reference: the ``cat2-agent`` process.
* ``mirror-small-cold`` / ``mirror-small-resync``: a ``[[subscribe]]`` pass over 1,000
  small datasets in nested folders, first into an empty folder, then with nothing
  changed. Reference: a loop of ``get_list`` + ``download``.
* ``mirror-large-walk`` / ``mirror-large-random``: a subscribe pass over one dataset of
  a gigabyte, compressible or not, against a raw streaming httpx GET of the same URL.
* ``mirror-remote-growth``: a mirrored array grows remotely by 1 %; what the next pass
  downloads. Reference: the upstream client downloads it again.
* ``watch-latency``: a burst of 100 files in a watched folder, from settled to stored.
* ``watch-scale``: start-up, memory and idle CPU with 100,000 files already shipped.
* ``watch-latency-no-journal`` and ``watch-latency-unchecked``: the burst without the
  change journal, and without the conflict check either (``on_conflict = "overwrite"``):
  what each costs per file.
* ``watch-latency-http`` and ``watch-scale-http``: the same two with the status
  endpoint on (``[daemon] http``) and scraped every second; the second also times
  scrapes of ``/metrics``, ``/status.json`` and ``/`` once the daemon has seen 100,000
  files shipped.

Traffic is counted by cat2sync's own counters (``client.stats``), and for the reference
by a counting relay on 127.0.0.1 (``_proxy.py``). Passes whose time or memory is a
figure run in a fresh interpreter (:func:`_common.run_isolated`); the cases that react
to file events run the daemon in this process, in its own threads. Every case checks
the data that arrived against its source and raises :class:`VerificationError` if
anything differs. See docs/benchmarks.md for what the figures mean.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import blosc2
import numpy as np
import tomli_w
from _common import (
    MB,
    Context,
    Figure,
    Target,
    VerificationError,
    case,
    peak_rss_tracker,
    run_isolated,
)
from _proxy import CountingProxy, Tally

REMOTE = "@shared/bench-daemon"
#: Endpoints whose responses carry dataset bytes (the rest is metadata JSON).
DATA_ENDPOINTS = ("download", "fetch", "chunk")
GROW_SETTLE = 0.2  # seconds; the growing array is shipped once quiet this long
BURST_SETTLE = 0.5
SETTLE_WAIT = 3.0  # after start-up, before idle CPU is measured
SCRAPE_EVERY = 1.0  # seconds; Prometheus' default is 15 s, the page reads every 2 s
SCRAPES = 20  # timed scrapes of each endpoint path
ENDPOINT = "127.0.0.1:0"  # any free loopback port
_COMPARE_STEP = 8 << 20


@dataclass(frozen=True, slots=True)
class Sizes:
    grow_rows: int  # rows of the growing array when the watch starts
    grow_steps: int  # how often it grows
    grow_by: int  # rows per step
    cols: int  # columns of the 2-D float64 arrays
    chunk_rows: int  # their chunk shape is (chunk_rows, cols)
    small_files: int
    large_mb: float
    series_rows: int  # rows of the array that grows remotely (by 1 %)
    burst: int  # files in the latency burst
    scale_files: int
    idle_s: float  # how long idle CPU is measured


def _sizes(ctx: Context) -> Sizes:
    if ctx.tiny:
        return Sizes(
            grow_rows=100,
            grow_steps=5,
            grow_by=100,
            cols=1000,
            chunk_rows=100,
            small_files=ctx.small_files,
            large_mb=ctx.large_mb,
            series_rows=1000,
            burst=20,
            scale_files=ctx.scale_files,
            idle_s=2.0,
        )
    return Sizes(
        grow_rows=1000,
        grow_steps=40,
        grow_by=100,
        cols=1000,
        chunk_rows=100,
        small_files=ctx.small_files,
        large_mb=ctx.large_mb,
        series_rows=10_000,
        burst=100,
        scale_files=ctx.scale_files,
        idle_s=10.0,
    )


# -- small helpers -----------------------------------------------------------------


def _next_run(ctx: Context, key: str) -> int:
    """1, 2, ... per key: remote folders are never reused between runs."""
    counter: list[int] = ctx.cached(f"runs:{key}", lambda: [0])
    counter[0] += 1
    return counter[0]


def _client(ctx: Context) -> Any:
    """A cat2sync client of the benchmark's own (set-up, checks, the 'other' writer)."""
    from cat2sync import Client

    return Client(ctx.url, ctx.user)


def _write_manifest(
    path: Path,
    url: str,
    user: tuple[str, str],
    *,
    uploads: list[dict[str, Any]] | None = None,
    subscribe: list[dict[str, Any]] | None = None,
    http: bool = False,
) -> Path:
    """A manifest beside its state folder ``<path's folder>/state``; ``http`` turns the
    status endpoint on (any free loopback port)."""
    daemon: dict[str, Any] = {"state_dir": str(path.parent / "state"), "log_level": "warning"}
    if http:
        daemon["http"] = ENDPOINT
    doc: dict[str, Any] = {
        "daemon": daemon,
        "server": {"url": url, "username": user[0], "password": user[1]},
    }
    if uploads:
        doc["upload"] = uploads
    if subscribe:
        doc["subscribe"] = subscribe
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(doc))
    return path


def _same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (compared block by block)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            block = fa.read(_COMPARE_STEP)
            if block != fb.read(_COMPARE_STEP):
                return False
            if not block:
                return True


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _walk(rng: np.random.Generator, start: np.ndarray, rows: int) -> np.ndarray:
    """``rows`` more rows of one random walk per column, rounded to 0.01 like a sensor."""
    walk = start + np.cumsum(rng.standard_normal((rows, start.shape[0])), axis=0)
    return np.round(walk, 2)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _wait_for(
    what: str, check: Callable[[], bool], timeout: float, interval: float = 0.05
) -> float:
    """Poll ``check`` until it is true; return the seconds that took."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise VerificationError(f"{what}: not reached within {timeout:g} s")
        time.sleep(interval)
    return time.perf_counter() - start


def _remote_rows(client: Any, remote: str) -> int | None:
    """The remote dataset's first dimension, or None while it is missing or unreadable."""
    from cat2sync.errors import Cat2Error

    try:
        info, _ = client.stat(remote)
    except Cat2Error:
        return None  # not there yet, or caught while the agent rewrites it in place
    shape = info.get("shape")
    return int(shape[0]) if shape else None


def _status_mb(key: str) -> float:
    with Path("/proc/self/status").open() as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / MB
    return float("nan")


class _Scraper:
    """What a Prometheus server and an open status page do to the endpoint: read
    ``/metrics`` and ``/status.json`` every :data:`SCRAPE_EVERY` seconds, from a
    process of its own (so that its CPU is not counted as the daemon's)."""

    _LOOP = (
        "import sys, time, urllib.request\n"
        "url, every = sys.argv[1], float(sys.argv[2])\n"
        "while True:\n"
        "    time.sleep(every)\n"
        "    for path in ('metrics', 'status.json'):\n"
        "        urllib.request.urlopen(url + path, timeout=10).read()\n"
        "    print('scraped', flush=True)\n"
    )

    def __init__(self, url: str) -> None:
        self._args = [sys.executable, "-c", self._LOOP, url, str(SCRAPE_EVERY)]
        self._proc: subprocess.Popen[str] | None = None
        self.scrapes = 0

    def __enter__(self) -> _Scraper:
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=30)
        self.scrapes = out.count("scraped")


def _scrape_times(url: str) -> dict[str, float]:
    """Median and slowest of :data:`SCRAPES` timed GETs of each endpoint path, in ms."""
    import httpx

    times: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=30) as http:
        for path in ("/metrics", "/status.json", "/"):
            took = []
            for _ in range(SCRAPES):
                start = time.perf_counter()
                http.get(path).raise_for_status()
                took.append(time.perf_counter() - start)
            times[f"{path} p50"] = 1e3 * _percentile(took, 50)
            times[f"{path} max"] = 1e3 * max(took)
    return times


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by process ``pid``; NaN if unknown."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _not_auth(proxy: CountingProxy) -> Tally:
    """Everything the relay counted except logging in (cat2sync's figures start after)."""
    return proxy.totals(name for name in proxy.by_endpoint() if name != "auth")


# -- the watchers: cat2sync's daemon and the upstream agent --------------------------


class _Watching:
    """A watcher of a local folder that ships it to ``remote_dir``."""

    settle = 0.0

    def __enter__(self) -> _Watching:
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:
        raise NotImplementedError

    def bytes_sent(self) -> int:
        raise NotImplementedError

    def requests(self) -> int:
        raise NotImplementedError

    def arrival(self, name: str, after: float) -> float | None:
        """When ``name`` was first reported stored at or after ``after`` (time.time())."""
        raise NotImplementedError

    def quiesce(self) -> None:
        """Wait until nothing is in flight any more."""


class _DaemonWatch(_Watching):
    """cat2sync's daemon (``Daemon.start()``) in this process."""

    def __init__(
        self,
        ctx: Context,
        work: Path,
        folder: Path,
        remote_dir: str,
        settle: float,
        *,
        http: bool = False,
        rule: dict[str, Any] | None = None,
    ) -> None:
        from cat2sync.daemon import Daemon
        from cat2sync.manifest import load_manifest

        self.settle = settle
        self._http = http
        self._scraper: _Scraper | None = None
        manifest = _write_manifest(
            work / "cat2sync.toml",
            ctx.url,
            ctx.user,
            uploads=[
                {
                    "name": "watched",
                    "local": str(folder),
                    "remote": remote_dir,
                    "settle": settle,
                    "include": ["**/*.b2nd"],
                    **(rule or {}),
                }
            ],
            http=http,
        )
        self._lock = threading.Lock()
        self._arrivals: dict[str, list[float]] = {}
        self.daemon = Daemon(load_manifest(manifest), emit=self._emit)  # logs in
        self._stats = self.daemon.clients["default"].stats
        self._sent0, self._requests0 = self._stats.bytes_sent, self._stats.requests

    def _emit(self, event: Any) -> None:
        from cat2sync.events import EventKind

        now = time.time()
        if event.kind in (EventKind.UPLOADED, EventKind.APPENDED):
            with self._lock:
                self._arrivals.setdefault(event.path, []).append(now)
        elif event.kind in (EventKind.FAILED, EventKind.SKIPPED):
            print(f"      cat2sync: {event.describe()}", file=sys.stderr, flush=True)

    def __enter__(self) -> _DaemonWatch:
        self.daemon.start()
        if self._http:
            self._scraper = _Scraper(self.daemon.web.url).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._scraper is not None:
            self._scraper.__exit__()
            if not self._scraper.scrapes:
                raise VerificationError("the status endpoint was never scraped")
        self.daemon.close()

    def bytes_sent(self) -> int:
        return int(self._stats.bytes_sent - self._sent0)

    def requests(self) -> int:
        return int(self._stats.requests - self._requests0)

    def arrival(self, name: str, after: float) -> float | None:
        with self._lock:
            times = [t for t in self._arrivals.get(name, []) if t >= after]
        return times[0] if times else None

    def quiesce(self) -> None:
        time.sleep(0.5)  # a last file event may still be on its way from the watcher
        if not self.daemon.queue.wait_idle(timeout=60):
            raise VerificationError("cat2sync: files still queued a minute after the last change")


def _agent_script() -> str:
    beside = Path(sys.executable).parent / "cat2-agent"
    found = str(beside) if beside.exists() else shutil.which("cat2-agent")
    if not found:
        raise RuntimeError(
            "the upstream cat2-agent is not installed (pip install 'caterva2[clients]')"
        )
    return found


class _AgentWatch(_Watching):
    """The upstream ``cat2-agent`` process, talking to the server through the relay.

    It has no settle time: it uploads the whole file on every change notification. Its
    output lines (``✓ Uploaded <name>``) are timestamped as they arrive.
    """

    def __init__(self, ctx: Context, work: Path, folder: Path, remote_dir: str) -> None:
        script = _agent_script()
        self.proxy = CountingProxy(ctx.url)
        self._cmd = [
            script,
            "--url",
            self.proxy.url,
            "--username",
            ctx.user[0],
            "--password",
            ctx.user[1],
            str(folder),
            remote_dir,
        ]
        self._work = work
        self._lock = threading.Lock()
        self.lines: list[tuple[float, str]] = []
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> _AgentWatch:
        self.proxy.__enter__()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            self._cmd,
            cwd=self._work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read, daemon=True).start()
        try:
            _wait_for(
                "cat2-agent start-up",
                lambda: any(line.startswith("Watching directory") for _, line in self._snapshot()),
                timeout=60,
            )
        except VerificationError as exc:
            self.__exit__()
            tail = "\n".join(line for _, line in self._snapshot()[-10:])
            raise RuntimeError(f"cat2-agent did not start:\n{tail}") from exc
        time.sleep(1.0)  # it arms its watch only after printing that line
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._lock:
                self.lines.append((time.time(), line.rstrip("\n")))

    def _snapshot(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.lines)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self.proxy.close()
        errors = [line for _, line in self._snapshot() if line.startswith("!")]
        if errors:
            print(
                f"      cat2-agent reported {len(errors)} error(s), e.g. {errors[0]}",
                file=sys.stderr,
                flush=True,
            )

    def bytes_sent(self) -> int:
        return _not_auth(self.proxy).sent

    def requests(self) -> int:
        return _not_auth(self.proxy).requests

    def arrival(self, name: str, after: float) -> float | None:
        said = (f"✓ Uploaded {name}", f"↑ Initial upload: {name}")
        for when, line in self._snapshot():
            if when >= after and line in said:
                return when
        return None

    def uploads(self) -> int:
        return self.proxy.totals(["upload"]).requests

    def quiesce(self) -> None:
        # The agent re-sends on every notification: wait until it stops sending.
        seen = -1
        while seen != self.uploads():
            seen = self.uploads()
            time.sleep(1.5)


def _watcher(
    ctx: Context,
    side: str,
    work: Path,
    folder: Path,
    remote_dir: str,
    settle: float,
    *,
    http: bool = False,
    rule: dict[str, Any] | None = None,
) -> _Watching:
    if side == "cat2sync":
        return _DaemonWatch(ctx, work, folder, remote_dir, settle, http=http, rule=rule)
    return _AgentWatch(ctx, work, folder, remote_dir)


# -- isolated passes (each in a fresh interpreter) -------------------------------------


def _stats_of(daemon: Any) -> tuple[int, int, int]:
    stats = [c.stats for c in daemon.clients.values()]
    return (
        sum(s.requests for s in stats),
        sum(s.bytes_received for s in stats),
        sum(s.bytes_sent for s in stats),
    )


def daemon_once_worker(manifest: str, server_pid: int | None = None) -> dict[str, Any]:
    """``cat2sync once`` on ``manifest`` in this process: time, traffic, peak memory,
    and the CPU time the server spent meanwhile.

    The daemon is built (and logs in) before the clock starts; the page cache is
    flushed (``sync``) first, so that earlier runs' writes do not land in this one.
    """
    from cat2sync.daemon import Daemon
    from cat2sync.manifest import load_manifest

    events: dict[str, int] = {}

    def count(event: Any) -> None:
        events[event.kind.value] = events.get(event.kind.value, 0) + 1

    daemon = Daemon(load_manifest(manifest), emit=count)
    try:
        before = _stats_of(daemon)
        os.sync()
        with peak_rss_tracker() as mem:
            server0, start = _process_cpu(server_pid), time.perf_counter()
            failures = daemon.once()
            seconds = time.perf_counter() - start
            server_cpu = _process_cpu(server_pid) - server0
        after = _stats_of(daemon)
    finally:
        daemon.close()
    return {
        "seconds": seconds,
        "failures": failures,
        "requests": after[0] - before[0],
        "received": after[1] - before[1],
        "sent": after[2] - before[2],
        "server_cpu": server_cpu,
        "events": events,
        **mem,
    }


def reference_mirror_worker(
    url: str, user: tuple[str, str], root: str, dest: str, server_pid: int | None = None
) -> dict[str, Any]:
    """The straightforward upstream loop: ``get_list(root)``, then ``download`` each."""
    import caterva2

    client = caterva2.Client(url, user)  # logs in
    try:
        os.sync()
        with peak_rss_tracker() as mem:
            server0, start = _process_cpu(server_pid), time.perf_counter()
            names = client.get_list(root)
            for name in names:
                client.download(f"{root}/{name}", Path(dest) / name)
            seconds = time.perf_counter() - start
            server_cpu = _process_cpu(server_pid) - server0
    finally:
        client.close()
    return {"seconds": seconds, "files": len(names), "server_cpu": server_cpu, **mem}


def raw_get_worker(
    url: str, user: tuple[str, str], remote: str, dest: str, endpoint: str = "download"
) -> dict[str, Any]:
    """The practical limit: one streaming httpx GET of the download (or the whole-dataset
    fetch) URL into a file."""
    import httpx

    with httpx.Client(base_url=url, timeout=httpx.Timeout(600.0)) as http:
        login = http.post("/auth/jwt/login", data={"username": user[0], "password": user[1]})
        login.raise_for_status()
        os.sync()
        with peak_rss_tracker() as mem:
            start = time.perf_counter()
            with http.stream("GET", f"/api/{endpoint}/" + quote(remote, safe="/@")) as resp:
                resp.raise_for_status()
                with Path(dest).open("wb") as out:
                    for part in resp.iter_raw(1 << 20):
                        out.write(part)
            seconds = time.perf_counter() - start
    return {"seconds": seconds, **mem}


def scale_worker(manifest: str, idle_s: float) -> dict[str, Any]:
    """Start the daemon on a large, already shipped tree; time, memory, idle CPU. With
    the status endpoint on, it is scraped every second meanwhile, and at the end
    scrapes are timed once the daemon has seen every file of the tree shipped."""
    from cat2sync.daemon import Daemon
    from cat2sync.manifest import load_manifest

    daemon = Daemon(load_manifest(manifest))  # logs in, opens the state
    scraper: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    try:
        requests0 = _stats_of(daemon)[0]
        rss0 = _status_mb("VmRSS")
        start = time.perf_counter()
        daemon.start()
        startup = time.perf_counter() - start
        if daemon.web is not None:
            scraper = _Scraper(daemon.web.url)
        rule = next(iter(daemon.uploads))
        with scraper:
            start = time.perf_counter()
            daemon.reconcile(rule)  # what the periodic rescan costs
            rescan = time.perf_counter() - start
            requests_at_rest = _stats_of(daemon)[0]
            time.sleep(SETTLE_WAIT)
            cpu0, wall0 = _cpu_seconds(), time.monotonic()
            time.sleep(idle_s)
            cpu1, wall1 = _cpu_seconds(), time.monotonic()
        out = {
            "startup": startup,
            "rescan": rescan,
            "rss_before_mb": rss0,
            "rss_mb": _status_mb("VmRSS"),
            "peak_mb": _status_mb("VmHWM"),
            "idle_cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0),
            # With the endpoint on, an idle daemon probes its server (GET /api/roots).
            "requests": requests_at_rest - requests0,
            "idle_requests": _stats_of(daemon)[0] - requests_at_rest,
            "queued": len(daemon.queue),
            "pending": len(daemon.state.pending()),
            "watch_failed": daemon.watcher.failed if daemon.watcher else None,
        }
        if daemon.web is not None:
            out["shipped_seen"] = _ship_the_tree(daemon, rule)
            out["scrape_ms"] = _scrape_times(daemon.web.url)
    finally:
        daemon.close()
    return out


def _ship_the_tree(daemon: Any, rule: str) -> int:
    """Tell the daemon's telemetry that every recorded file was uploaded (as the events
    of a first pass would), so that scrapes are timed on a daemon that shipped them."""
    from cat2sync.events import Event, EventKind

    shipped = daemon.state.shipped_for_rule(rule)
    for rec in shipped:
        daemon.telemetry.event(
            Event(kind=EventKind.UPLOADED, rule=rule, path=rec.relpath, bytes=rec.size)
        )
    return len(shipped)


def _check_pass(side: str, out: dict[str, Any]) -> None:
    if out.get("failures"):
        raise VerificationError(f"{side}: the pass reported {out['failures']} failure(s)")


# -- 1. a growing array --------------------------------------------------------------


class _GrowingArray:
    """A ``(rows, cols)`` float64 ``.b2nd`` that an instrument extends in place."""

    def __init__(self, path: Path, rows: int, cols: int, chunk_rows: int, seed: int) -> None:
        self.path = path
        self.rng = np.random.default_rng(seed)
        first = _walk(self.rng, np.zeros(cols), rows)
        blosc2.asarray(first, urlpath=str(path), mode="w", chunks=(chunk_rows, cols))
        self.rows, self.last = rows, first[-1]

    def grow(self, n: int) -> None:
        rows = _walk(self.rng, self.last, n)
        arr = blosc2.open(str(self.path), mode="a")
        arr.resize((self.rows + n, arr.shape[1]))
        arr[self.rows : self.rows + n] = rows
        del arr  # closes the file
        self.rows, self.last = self.rows + n, rows[-1]


@case(
    "grow-append",
    "a (N, 1000) float64 .b2nd grows by 100 rows 40 times in a watched folder "
    "(reference: cat2-agent)",
)
def grow_append(ctx: Context, side: str) -> list[Figure]:
    sz = _sizes(ctx)
    run = _next_run(ctx, f"grow-{side}")
    work = ctx.scratch(f"grow-{side}")
    folder = work / "watched"
    folder.mkdir()
    remote_dir = f"{REMOTE}/grow-{side}-{run}"
    remote = f"{remote_dir}/frames.b2nd"
    array = _GrowingArray(folder / "frames.b2nd", sz.grow_rows, sz.cols, sz.chunk_rows, seed=run)
    lags: list[float] = []
    with _client(ctx) as checker:
        with _watcher(ctx, side, work, folder, remote_dir, GROW_SETTLE) as watcher:
            _wait_for(
                f"{side}: first upload",
                lambda: _remote_rows(checker, remote) == array.rows,
                timeout=60,
            )
            for _ in range(sz.grow_steps):
                array.grow(sz.grow_by)
                lags.append(
                    _wait_for(
                        f"{side}: remote shape after growing to {array.rows} rows",
                        lambda: _remote_rows(checker, remote) == array.rows,
                        timeout=60,
                    )
                )
            watcher.quiesce()
            uploaded = watcher.bytes_sent()
        # The remote equals the local array: same dtype, shape and values.
        local = blosc2.open(str(array.path), mode="r")[:]
        theirs = checker.fetch(remote)
    if (
        theirs.dtype != local.dtype
        or theirs.shape != local.shape
        or not np.array_equal(theirs, local)
    ):
        raise VerificationError(
            f"{side}: the remote array differs from the local one "
            f"({theirs.shape} {theirs.dtype} vs {local.shape} {local.dtype})"
        )
    final = array.path.stat().st_size
    shutil.rmtree(work)
    return [
        Figure("uploaded / final file", uploaded / final, "x", False, Target("≤ 1.1x", 1.1)),
        Figure("uploaded", uploaded / MB, "MB", False),
        Figure("remote shape lag, median", _percentile(lags, 50), "s", False),
    ]


# -- 2 and 3. many small datasets --------------------------------------------------------


def _small_tree(ctx: Context) -> tuple[str, dict[str, str]]:
    """Upload ``small_files`` datasets of a few KB in nested folders (once per run).

    Returns the remote folder and the SHA-256 of every file, by relative path; the
    server stores ``.b2nd`` byte for byte, so a mirrored file must have that digest.
    """

    def make() -> tuple[str, dict[str, str]]:
        root = f"{REMOTE}/small"
        rng = np.random.default_rng(11)
        src = ctx.workdir / "data" / "small"
        files: dict[str, Path] = {}
        digests: dict[str, str] = {}
        for i in range(_sizes(ctx).small_files):
            rel = f"g{i % 10}/s{(i // 10) % 10}/d{i:05d}.b2nd"
            values = np.round(np.cumsum(rng.standard_normal(int(rng.integers(300, 900)))), 2)
            data = blosc2.asarray(values).to_cframe()
            path = src / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files[rel], digests[rel] = path, _sha256(data)
        with _client(ctx) as client, ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda rel: client.upload(files[rel], f"{root}/{rel}"), files))
            listed = set(client.get_list(root))
        if listed != set(digests):
            raise VerificationError(
                f"set-up: {len(listed)} small datasets listed, {len(digests)} uploaded"
            )
        shutil.rmtree(src)
        return root, digests

    made: tuple[str, dict[str, str]] = ctx.cached("small-tree", make)
    return made


def _check_mirror(side: str, dest: Path, digests: dict[str, str]) -> None:
    """Every dataset arrived with its exact bytes, and nothing else did."""
    found = {p.relative_to(dest).as_posix(): p for p in dest.rglob("*") if p.is_file()}
    missing, extra = set(digests) - set(found), set(found) - set(digests)
    if missing or extra:
        raise VerificationError(
            f"{side}: mirror has {len(missing)} missing and {len(extra)} "
            f"unexpected files (e.g. {sorted(missing | extra)[:3]})"
        )
    wrong = [rel for rel, path in found.items() if _sha256(path.read_bytes()) != digests[rel]]
    if wrong:
        raise VerificationError(f"{side}: {len(wrong)} mirrored files differ, e.g. {wrong[0]}")


def _subscribe(work: Path, name: str, url: str, ctx: Context, root: str, dest: Path) -> Path:
    return _write_manifest(
        work / name, url, ctx.user, subscribe=[{"name": "mirror", "root": root, "local": str(dest)}]
    )


@case(
    "mirror-small-cold",
    "mirror 1,000 datasets of a few KB in nested folders into an empty "
    "folder (reference: get_list + download loop)",
)
def mirror_small_cold(ctx: Context, side: str) -> list[Figure]:
    root, digests = _small_tree(ctx)
    work = ctx.scratch(f"small-cold-{side}")
    dest = work / "mirror"
    pid = ctx.server_pid
    if side == "cat2sync":
        out = run_isolated(
            daemon_once_worker,
            str(_subscribe(work, "cat2sync.toml", ctx.url, ctx, root, dest)),
            pid,
        )
        _check_pass(side, out)
    else:
        out = run_isolated(reference_mirror_worker, ctx.url, ctx.user, root, str(dest), pid)
    _check_mirror(side, dest, digests)
    shutil.rmtree(work)
    return [
        Figure(
            "wall time", out["seconds"], "s", False, Target("≤ 0.5x reference", 2.0, on_ratio=True)
        ),
        Figure("server CPU", out["server_cpu"], "s", False),
    ]


@case(
    "mirror-small-resync", "mirror those datasets again, nothing changed (reference: the same loop)"
)
def mirror_small_resync(ctx: Context, side: str) -> list[Figure]:
    root, digests = _small_tree(ctx)
    work = ctx.scratch(f"small-resync-{side}")
    dest = work / "mirror"
    pid = ctx.server_pid
    with CountingProxy(ctx.url) as proxy:
        if side == "cat2sync":
            direct = str(_subscribe(work, "direct.toml", ctx.url, ctx, root, dest))
            relayed = str(_subscribe(work, "relayed.toml", proxy.url, ctx, root, dest))
            cold = run_isolated(daemon_once_worker, direct, pid)
            _check_pass(side, cold)
            again = run_isolated(daemon_once_worker, direct, pid)  # the timed re-sync
            _check_pass(side, again)
            # The same pass once more through the relay, which tells data from metadata.
            proxy.reset()
            counted = run_isolated(daemon_once_worker, relayed)
            _check_pass(side, counted)
            tally = _not_auth(proxy)
            if (tally.requests, tally.received) != (counted["requests"], counted["received"]):
                raise VerificationError(
                    f"the relay counted {tally.requests} requests / {tally.received} B, "
                    f"cat2sync {counted['requests']} / {counted['received']} B"
                )
            requests, received = again["requests"], again["received"]
        else:  # it has no state: the same loop again, timed, then once more relayed
            cold = run_isolated(reference_mirror_worker, ctx.url, ctx.user, root, str(dest))
            again = run_isolated(reference_mirror_worker, ctx.url, ctx.user, root, str(dest), pid)
            proxy.reset()
            run_isolated(reference_mirror_worker, proxy.url, ctx.user, root, str(dest))
            tally = _not_auth(proxy)
            requests, received = tally.requests, tally.received
        data = proxy.totals(DATA_ENDPOINTS).received
    _check_mirror(side, dest, digests)
    shutil.rmtree(work)
    return [
        Figure("data bytes", data, "B", False, Target("0 B", 0.0)),
        Figure("requests", requests, "req", False),
        Figure("bytes received", received / 1e3, "kB", False),
        Figure("wall time", again["seconds"], "s", False),
        Figure("server CPU", again["server_cpu"], "s", False),
        Figure(
            "re-sync / cold mirror",
            again["seconds"] / cold["seconds"],
            "x",
            False,
            Target("≤ 0.2x", 0.2),
        ),
    ]


# -- 4. one large dataset --------------------------------------------------------------


def _large_dataset(ctx: Context, kind: str) -> tuple[Path, str]:
    """A ``.b2nd`` of about ``large_mb`` MB as stored, uploaded once per run.

    ``walk``: a float64 random walk rounded to 0.01, ``2 * large_mb`` MB raw, which
    Blosc2's defaults compress about 2:1. ``random``: ``large_mb`` MB of random 64-bit
    integers, which do not compress at all.
    """

    def make() -> tuple[Path, str]:
        path = ctx.workdir / "data" / f"large-{kind}.b2nd"
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(20261)
        raw = ctx.large_mb * MB * (2 if kind == "walk" else 1)
        n = int(raw / 8)
        dtype = np.float64 if kind == "walk" else np.uint64
        array = blosc2.empty((n,), dtype=dtype, urlpath=str(path), mode="w")
        step, carry = array.chunks[0], 0.0
        for start in range(0, n, step):
            count = min(step, n - start)
            if kind == "walk":
                walk = carry + np.cumsum(rng.standard_normal(count))
                carry = float(walk[-1])
                array[start : start + count] = np.round(walk, 2)
            else:
                array[start : start + count] = np.frombuffer(rng.bytes(count * 8), np.uint64)
        del array
        remote = f"{REMOTE}/large-{kind}/{path.name}"
        with _client(ctx) as client:
            client.upload(path, remote)
        if not _same_bytes(ctx.stored_file(remote), path):
            raise VerificationError(f"set-up upload of {path.name} stored different bytes")
        return path, remote

    made: tuple[Path, str] = ctx.cached(f"large:{kind}", make)
    return made


def _large_mirror(ctx: Context, side: str, kind: str) -> list[Figure]:
    local, remote = _large_dataset(ctx, kind)
    work = ctx.scratch(f"large-{kind}-{side}")
    if side == "cat2sync":
        dest = work / "mirror"
        manifest = _subscribe(work, "cat2sync.toml", ctx.url, ctx, remote.rsplit("/", 1)[0], dest)
        out = run_isolated(daemon_once_worker, str(manifest))
        _check_pass(side, out)
        got = dest / local.name
        fetch_seconds = out["seconds"]
    else:
        got = work / local.name
        # The server serves /api/fetch from the file and /api/download from memory; the
        # issue's reference is the download URL, the other is shown beside it.
        fetch_seconds = run_isolated(raw_get_worker, ctx.url, ctx.user, remote, str(got), "fetch")[
            "seconds"
        ]
        out = run_isolated(raw_get_worker, ctx.url, ctx.user, remote, str(got))
    if not got.is_file() or not _same_bytes(got, local):
        raise VerificationError(f"{side}: the mirrored {local.name} differs from the source")
    size = got.stat().st_size
    shutil.rmtree(work)
    return [
        Figure(
            "MB/s",
            size / out["seconds"] / MB,
            "MB/s",
            True,
            Target("≥ 0.9x raw GET", 0.9, on_ratio=True),
        ),
        Figure(
            "MB/s (reference: raw GET of the fetch URL)", size / fetch_seconds / MB, "MB/s", True
        ),
        Figure("peak RSS", out["rss_peak_mb"], "MB", False, Target("< 200 MB", 200.0)),
    ]


@case(
    "mirror-large-walk",
    "mirror one compressible dataset of --large-mb MB as stored "
    "(reference: raw streaming httpx GET to disk)",
)
def mirror_large_walk(ctx: Context, side: str) -> list[Figure]:
    return _large_mirror(ctx, side, "walk")


@case(
    "mirror-large-random",
    "mirror one incompressible dataset of --large-mb MB (reference: "
    "raw streaming httpx GET to disk)",
)
def mirror_large_random(ctx: Context, side: str) -> list[Figure]:
    return _large_mirror(ctx, side, "random")


# -- 5. remote growth ------------------------------------------------------------------


@case(
    "mirror-remote-growth",
    "a mirrored (N, 1000) array grows remotely by 1 %: bytes of the "
    "next pass (reference: download again)",
)
def mirror_remote_growth(ctx: Context, side: str) -> list[Figure]:
    sz = _sizes(ctx)
    run = _next_run(ctx, f"rgrow-{side}")
    remote_dir = f"{REMOTE}/rgrow-{side}-{run}"
    remote = f"{remote_dir}/series.b2nd"
    work = ctx.scratch(f"rgrow-{side}")
    dest = work / "mirror"
    rng = np.random.default_rng(run)
    base = _walk(rng, np.zeros(sz.cols), sz.series_rows)
    source = work / "series.b2nd"
    blosc2.asarray(base, urlpath=str(source), mode="w", chunks=(sz.chunk_rows, sz.cols))
    with _client(ctx) as other, CountingProxy(ctx.url) as proxy:
        other.upload(source, remote)
        if side == "cat2sync":
            manifest = str(_subscribe(work, "cat2sync.toml", ctx.url, ctx, remote_dir, dest))
            _check_pass(side, run_isolated(daemon_once_worker, manifest))
        else:
            run_isolated(reference_mirror_worker, ctx.url, ctx.user, remote_dir, str(dest))
        before = other.get_info(remote)["schunk"]
        growth = _walk(rng, base[-1], max(1, sz.series_rows // 100))
        other.append(remote, growth)  # another client appends 1 %
        after = other.get_info(remote)["schunk"]
        proxy.reset()
        if side == "cat2sync":
            second = run_isolated(daemon_once_worker, manifest)
            _check_pass(side, second)
            received = second["received"]
        else:
            run_isolated(reference_mirror_worker, proxy.url, ctx.user, remote_dir, str(dest))
            received = _not_auth(proxy).received
    mirrored = blosc2.open(str(dest / "series.b2nd"), mode="r")[:]
    if not np.array_equal(mirrored, np.concatenate([base, growth])):
        raise VerificationError(f"{side}: the mirror differs from the grown remote array")
    allowance = (after["cbytes"] - before["cbytes"]) + after["cbytes"] / after["nchunks"]
    shutil.rmtree(work)
    return [
        Figure("downloaded", received / MB, "MB", False),
        Figure("vs growth + 1 chunk", received / allowance, "x", False, Target("≤ 1.5x", 1.5)),
    ]


# -- 6. latency of a burst -------------------------------------------------------------


@case(
    "watch-latency",
    "a burst of 100 small .b2nd files in a watched folder: from settled "
    "(last write + settle) to stored (reference: cat2-agent, settle 0)",
)
def watch_latency(ctx: Context, side: str) -> list[Figure]:
    return _burst(ctx, side, http=False)


@case(
    "watch-latency-http",
    "the same burst with the status endpoint on and scraped every second "
    "(/metrics and /status.json)",
    sides=("cat2sync",),
)
def watch_latency_http(ctx: Context, side: str) -> list[Figure]:
    return _burst(ctx, side, http=True)


@case(
    "watch-latency-no-journal",
    "the same burst without the change journal (journal = false): beside watch-latency, "
    "what the journal costs a burst",
    sides=("cat2sync",),
)
def watch_latency_no_journal(ctx: Context, side: str) -> list[Figure]:
    return _burst(ctx, side, http=False, rule={"journal": False})


@case(
    "watch-latency-unchecked",
    "the same burst as before conflicts were detected (on_conflict = overwrite, no "
    "journal): beside watch-latency-no-journal, what checking another writer costs",
    sides=("cat2sync",),
)
def watch_latency_unchecked(ctx: Context, side: str) -> list[Figure]:
    return _burst(ctx, side, http=False, rule={"journal": False, "on_conflict": "overwrite"})


def _burst(
    ctx: Context, side: str, *, http: bool, rule: dict[str, Any] | None = None
) -> list[Figure]:
    sz = _sizes(ctx)
    run = _next_run(ctx, f"burst-{side}")
    remote_dir = f"{REMOTE}/burst-{side}-{run}"
    work = ctx.scratch(f"burst-{side}")
    folder = work / "watched"
    folder.mkdir()
    rng = np.random.default_rng(run)
    payloads = {
        f"f{i:03d}.b2nd": blosc2.asarray(
            np.round(np.cumsum(rng.standard_normal(1000)), 2)
        ).to_cframe()
        for i in range(sz.burst)
    }
    written: dict[str, float] = {}
    pid = ctx.server_pid
    with _watcher(
        ctx, side, work, folder, remote_dir, BURST_SETTLE, http=http, rule=rule
    ) as watcher:
        cpu0 = _process_cpu(pid)
        for name, data in payloads.items():
            (folder / name).write_bytes(data)  # one write: the file is complete at once
            written[name] = time.time()
        _wait_for(
            f"{side}: all {len(payloads)} files stored",
            lambda: all(
                watcher.arrival(name, after) is not None for name, after in written.items()
            ),
            timeout=60 + len(payloads),
        )
        server_cpu = _process_cpu(pid) - cpu0
        watcher.quiesce()
        requests = watcher.requests()
    latencies, last_arrival = [], 0.0
    for name, after in written.items():
        arrived = watcher.arrival(name, after)
        assert arrived is not None
        latencies.append(arrived - after - watcher.settle)
        last_arrival = max(last_arrival, arrived)
        stored = ctx.stored_file(f"{remote_dir}/{name}")
        if not stored.is_file() or stored.read_bytes() != payloads[name]:
            raise VerificationError(f"{side}: {name} was not stored with its content")
    shutil.rmtree(work)
    return [
        Figure("p50 after settle", _percentile(latencies, 50), "s", False, Target("≤ 0.3 s", 0.3)),
        Figure("p99 after settle", _percentile(latencies, 99), "s", False, Target("≤ 1 s", 1.0)),
        Figure("requests per file", requests / len(payloads), "req", False),
        Figure("server CPU per file", 1e3 * server_cpu / len(payloads), "ms", False),
        # Near 100 %: the server, not the watcher, sets the pace of the burst.
        Figure(
            "server busy from the first file due to the last arrival",
            100 * server_cpu / (last_arrival - min(written.values()) - watcher.settle),
            "%",
            True,
        ),
    ]


# -- 7. a large watched tree -----------------------------------------------------------


def _scale_manifest(ctx: Context, *, http: bool = False) -> Path:
    """A tree of ``scale_files`` small files, and a manifest whose state says they
    were all shipped (once per run).

    Uploading 100,000 files through a single-process server would take a quarter of an
    hour, so the state is written directly, with cat2sync's own :class:`StateStore`,
    as a first pass leaves it: one ``shipped`` record per file with its size, mtime and
    inode. The case then checks that start-up sends nothing, which proves the records
    are what the daemon expects.
    """

    def make() -> Path:
        from cat2sync.engine.localtree import Matcher, scan
        from cat2sync.manifest import load_manifest
        from cat2sync.records import Shipped
        from cat2sync.state import StateStore

        tree = ctx.workdir / "data" / "scale"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        for i in range(_sizes(ctx).scale_files):
            folder = tree / f"d{i // 1000:03d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True)
            fd = os.open(folder / f"f{i:06d}.dat", flags, 0o644)
            os.write(fd, b"%08d\n" % i)
            os.close(fd)
        manifest = _write_manifest(
            ctx.workdir / "scale" / "cat2sync.toml",
            ctx.url,
            ctx.user,
            uploads=[_scale_rule(ctx)],
        )
        rule = load_manifest(manifest).uploads[0]
        with StateStore(manifest.parent / "state") as state:
            for rel, st in scan(tree, Matcher(rule.include, rule.exclude)):
                state.put_shipped(
                    Shipped(
                        rule=rule.name,
                        relpath=rel,
                        remote=f"{rule.remote}/{rel}",
                        kind="file",
                        size=st.st_size,
                        mtime_ns=st.st_mtime_ns,
                        dev=st.st_dev,
                        inode=st.st_ino,
                    )
                )
        return manifest

    manifest: Path = ctx.cached("scale-tree", make)
    if not http:
        return manifest
    # The same tree and state folder, with the endpoint on.
    return _write_manifest(
        manifest.parent / "cat2sync-http.toml",
        ctx.url,
        ctx.user,
        uploads=[_scale_rule(ctx)],
        http=True,
    )


def _scale_rule(ctx: Context) -> dict[str, Any]:
    return {
        "name": "scale",
        "local": str(ctx.workdir / "data" / "scale"),
        "remote": f"{REMOTE}/scale",
    }


@case(
    "watch-scale",
    "start the daemon on a watched tree of --scale-files files, all already "
    "shipped: start-up, memory, idle CPU",
    sides=("cat2sync",),
)
def watch_scale(ctx: Context, side: str) -> list[Figure]:
    out = _scale_run(ctx, http=False)
    if out["idle_requests"]:
        raise VerificationError(f"the idle daemon made {out['idle_requests']} requests")
    return _scale_figures(out)


@case(
    "watch-scale-http",
    "the same start-up with the status endpoint on and scraped every second; then "
    "scrape times once the daemon has seen every file of the tree shipped",
    sides=("cat2sync",),
)
def watch_scale_http(ctx: Context, side: str) -> list[Figure]:
    out = _scale_run(ctx, http=True)
    if out["shipped_seen"] != _sizes(ctx).scale_files:
        raise VerificationError(
            f"the daemon saw {out['shipped_seen']} files shipped, not {_sizes(ctx).scale_files}"
        )
    scrape = out["scrape_ms"]
    return [
        *_scale_figures(out),
        Figure(
            "scrape /metrics, median", scrape["/metrics p50"], "ms", False, Target("< 100 ms", 100)
        ),
        Figure("scrape /metrics, slowest", scrape["/metrics max"], "ms", False),
        Figure("GET /status.json, median", scrape["/status.json p50"], "ms", False),
        Figure("GET / (the page), median", scrape["/ p50"], "ms", False),
        Figure("probe requests while idle", out["idle_requests"], "req", False),
    ]


def _scale_run(ctx: Context, *, http: bool) -> dict[str, Any]:
    manifest = _scale_manifest(ctx, http=http)
    out: dict[str, Any] = run_isolated(scale_worker, str(manifest), _sizes(ctx).idle_s)
    if out["requests"] or out["queued"] or out["pending"]:
        raise VerificationError(
            f"start-up on a shipped tree made {out['requests']} requests and queued "
            f"{out['queued']} files ({out['pending']} pending): it should send nothing"
        )
    if out["watch_failed"]:
        raise VerificationError(f"the watch failed: {out['watch_failed']}")
    return out


def _scale_figures(out: dict[str, Any]) -> list[Figure]:
    return [
        Figure("start-up (reconcile + watch)", out["startup"], "s", False),
        Figure("rescan pass", out["rescan"], "s", False),
        Figure("RSS before start-up", out["rss_before_mb"], "MB", False),
        Figure("RSS once settled", out["rss_mb"], "MB", False),
        Figure("idle CPU", out["idle_cpu_pct"], "% core", False, Target("≈ 0 (≤ 1 %)", 1.0)),
    ]
