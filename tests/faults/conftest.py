"""Machinery of the fault-injection suite: a fault-injecting loopback proxy, the daemon as a
subprocess, exact comparisons of local, remote and mirrored data, and the session's tally.

Everything talks to a real Caterva2 server on 127.0.0.1. The proxy is used only for
faults a real server cannot be made to produce on cue (a 503, a dropped connection, a
response lost after the server applied the request, a stall); every test that uses it
says so in its docstring.

Knobs (environment):

* ``CAT2SYNC_FAULT_TRIALS`` -- random SIGKILL trials (default 4; the full run uses 50);
* ``CAT2SYNC_FAULT_SEED``   -- base seed of the trials (default below), for replaying.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
import tomli_w

# The daemon tests' helpers (tests/ is on sys.path: tests/daemon is the package "daemon").
from daemon.conftest import (  # noqa: F401  (re-exported for the test modules)
    grow_b2nd,
    local_array,
    remote_bytes,
    remote_files,
    remote_shape,
    running,
    wait_until,
    write_b2nd,
)

from cat2sync import Client
from cat2sync.cli import main as cli_main
from cat2sync.errors import NotFound, ServerError
from cat2sync.server import LocalServer

REPO = Path(__file__).resolve().parents[2]
TRIALS = int(os.environ.get("CAT2SYNC_FAULT_TRIALS", "4"))
SEED = int(os.environ.get("CAT2SYNC_FAULT_SEED", "20251127"))
TEMP_PREFIX = ".cat2sync-"
#: Generous: other test sessions share this 2-core machine.
CONVERGE = 120.0


# -- the session's tally ------------------------------------------------------------


@dataclass
class FaultStats:
    """What the suite did and found; printed as a table at the end of the session."""

    trials: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    files_compared: int = 0
    rows_compared: int = 0
    versions_watched: int = 0  # file versions the SIGKILL watchdog read at final names
    lost: int = 0
    duplicated: int = 0
    leaked: Counter[str] = field(default_factory=Counter)

    def fault(self, kind: str, count: int = 1) -> None:
        self.faults[kind] += count

    def add(self, tally: Tally) -> None:
        self.files_compared += tally.files
        self.rows_compared += tally.rows
        self.lost += tally.lost
        self.duplicated += tally.duplicated
        self.leak("temporary left on the server after convergence", tally.server_temporaries)

    def leak(self, kind: str, count: int = 1) -> None:
        """Count what leaked; a zero count still lists the kind (it was looked for)."""
        self.leaked[kind] += count

    @property
    def empty(self) -> bool:
        return not (self.trials or self.faults or self.files_compared)

    def table(self) -> list[str]:
        rows = [("SIGKILL trials run", str(self.trials))]
        rows += [(f"fault injected: {kind}", str(n)) for kind, n in sorted(self.faults.items())]
        rows += [
            ("files compared", str(self.files_compared)),
            ("rows compared", str(self.rows_compared)),
            ("file versions read at a final name during the trials", str(self.versions_watched)),
            ("rows lost", str(self.lost)),
            ("rows duplicated", str(self.duplicated)),
            ("leaked (total)", str(sum(self.leaked.values()))),
        ]
        rows += [(f"leaked: {kind}", str(n)) for kind, n in sorted(self.leaked.items())]
        width = max(len(name) for name, _ in rows)
        lines = [f"| {'figure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {name:<{width}} | {value:>5} |" for name, value in rows]
        return lines


STATS = FaultStats()


@pytest.fixture(scope="session")
def fault_stats() -> FaultStats:
    """The session's tally (printed by :func:`pytest_terminal_summary`)."""
    return STATS


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if STATS.empty:
        return
    terminalreporter.section("fault-injection summary")
    terminalreporter.write_line(f"seed {SEED}, CAT2SYNC_FAULT_TRIALS={TRIALS}")
    for line in STATS.table():
        terminalreporter.write_line(line)


# -- manifests ------------------------------------------------------------------------


def write_manifest(
    path: Path,
    *,
    url: str | None,
    username: str | None = None,
    password: str | None = None,
    uploads: Sequence[Mapping[str, Any]] = (),
    subscribe: Sequence[Mapping[str, Any]] = (),
    daemon: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
) -> Path:
    """A manifest with state in ``<path's folder>/state``; ``url=None``: embedded server."""
    srv: dict[str, Any] = {}
    if url is not None:
        srv["url"] = url
    if username is not None:
        srv["username"] = username
    if password is not None:
        srv["password"] = password
    srv.update(server or {})
    doc: dict[str, Any] = {"daemon": {"state_dir": str(path.parent / "state"), **(daemon or {})}}
    if srv:
        doc["server"] = srv
    if uploads:
        doc["upload"] = [dict(u) for u in uploads]
    if subscribe:
        doc["subscribe"] = [dict(s) for s in subscribe]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(tomli_w.dumps(doc))
    tmp.replace(path)
    return path


# -- the CLI in-process (validate, status) ---------------------------------------------------


def cli(*args: str) -> tuple[int, str, str]:
    """``cat2sync ARGS`` in this process: ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(args))
    return code, out.getvalue(), err.getvalue()


def status_json(manifest: Path) -> dict[str, Any]:
    """``cat2sync status --json MANIFEST`` (it reads the state while the daemon runs)."""
    code, out, err = cli("status", "--json", str(manifest))
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


# -- the daemon as a subprocess ---------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    env.pop("NOTIFY_SOCKET", None)
    return env


class DaemonProcess:
    """``python -m cat2sync run MANIFEST`` in a subprocess, its output appended to ``log``.

    :param wrapper: a command to run it under (``unshare ...``), or nothing.
    """

    def __init__(
        self,
        manifest: Path,
        log: Path,
        *,
        wrapper: Sequence[str] = (),
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.manifest = manifest
        self.log = log
        self.wrapper = list(wrapper)
        self.args = list(args)
        self.env = dict(env) if env is not None else cli_env()
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self.starts = 0

    @property
    def command(self) -> list[str]:
        return [
            *self.wrapper,
            sys.executable,
            "-m",
            "cat2sync",
            *self.args,
            "run",
            str(self.manifest),
        ]

    def start(self) -> DaemonProcess:
        assert self.proc is None or self.proc.poll() is not None
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.starts += 1
        return self

    def text(self, *, since_start: bool = False) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as fh:
            if since_start:
                fh.seek(self._offset)
            return fh.read().decode(errors="replace")

    def wait_ready(self, timeout: float = CONVERGE) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"the daemon exited ({self.proc.returncode}):\n"
                    f"{self.text(since_start=True)[-3000:]}"
                )
            return "ready: watching" in self.text(since_start=True)

        wait_until(ready, timeout=timeout, interval=0.05, message="the daemon's ready line")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@contextlib.contextmanager
def daemon_process(manifest: Path, log: Path, **kwargs: Any) -> Iterator[DaemonProcess]:
    """A started :class:`DaemonProcess`, always stopped (its log printed on failure)."""
    proc = DaemonProcess(manifest, log, **kwargs).start()
    try:
        yield proc
    except BaseException:
        print(f"--- daemon log (tail) ---\n{proc.text()[-6000:]}")
        raise
    finally:
        proc.stop()


# -- a fault-injecting loopback proxy -------------------------------------------------------

_HEAD_END = b"\r\n\r\n"
ACTIONS = ("pass", "503", "drop", "lose-response", "stall")


@dataclass
class _Rule:
    action: str
    method: str | None
    path: str | None
    times: int


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (what a crashed peer or a broken middlebox looks like)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of a loopback server, injecting faults.

    Each request is forwarded on a connection of its own (``Connection: close``), so
    that the proxy can act per request:

    * ``pass``          forward, stream the answer back;
    * ``503``           answer ``503 Service Unavailable`` without forwarding;
    * ``drop``          read the request, forward nothing, reset the connection;
    * ``lose-response`` forward, let the server apply it, read its whole answer, then
      reset the client's connection (the client cannot know the request succeeded);
    * ``stall``         forward, hold the answer ``stall_seconds`` (or until
      :meth:`release`), then send it if the client is still there.

    ``mode`` applies to every request; :meth:`inject` queues one-off rules, matched first.
    With ``ssl_context`` it terminates TLS (for the certificate tests).
    """

    def __init__(self, upstream_port: int, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._ssl = ssl_context
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self.mode = "pass"
        self.stall_seconds = 5.0
        self._released = threading.Event()
        self.injected: Counter[str] = Counter()
        self.seen: list[tuple[str, str, str]] = []  # (method, path, action)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._released.set()
        self._thread.join(5)
        self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_mode(self, action: str) -> None:
        assert action in ACTIONS, action
        with self._lock:
            self.mode = action
            if action == "stall":
                self._released.clear()
            else:
                self._released.set()

    def release(self) -> None:
        """Let held answers go and stop stalling."""
        self.set_mode("pass")

    def inject(
        self, action: str, *, method: str | None = None, path: str | None = None, times: int = 1
    ) -> None:
        """Apply ``action`` to the next ``times`` requests matching method and path part."""
        assert action in ACTIONS, action
        with self._lock:
            if action == "stall":
                self._released.clear()
            self._rules.append(_Rule(action, method, path, times))

    def pending_rules(self) -> int:
        with self._lock:
            return sum(r.times for r in self._rules)

    def count(
        self, method: str | None = None, path: str | None = None, action: str | None = None
    ) -> int:
        with self._lock:
            return sum(
                1
                for m, p, a in self.seen
                if (method is None or m == method)
                and (path is None or path in p)
                and (action is None or a == action)
            )

    def _choose(self, method: str, path: str) -> str:
        with self._lock:
            for rule in self._rules:
                if (rule.method is None or rule.method == method) and (
                    rule.path is None or rule.path in path
                ):
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                    action = rule.action
                    break
            else:
                action = self.mode
            self.seen.append((method, path, action))
            if action != "pass":
                self.injected[action] += 1
            return action

    # -- plumbing ----------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(conn,), name="fault-proxy-conn", daemon=True
            ).start()

    def _serve(self, raw: socket.socket) -> None:
        conn: socket.socket = raw
        upstream: socket.socket | None = None
        try:
            if self._ssl is not None:
                raw.settimeout(30)
                conn = self._ssl.wrap_socket(raw, server_side=True)
            conn.settimeout(120)
            request = self._read_request(conn)
            if request is None:
                return
            method, path, head, body = request
            action = self._choose(method, path)
            if action == "503":
                payload = b'{"detail":"injected by the fault proxy"}'
                conn.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\n"
                    b"content-type: application/json\r\n"
                    b"content-length: " + str(len(payload)).encode() + b"\r\n"
                    b"connection: close\r\n\r\n" + payload
                )
                return
            if action == "drop":
                _reset(conn)
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=120)
            except OSError:
                _reset(conn)  # the server is down: so is the proxy's answer
                return
            upstream.sendall(head + body)
            if action == "pass":
                while chunk := upstream.recv(1 << 16):
                    conn.sendall(chunk)
                return
            answer = bytearray()
            while chunk := upstream.recv(1 << 16):
                answer += chunk
            if action == "lose-response":
                _reset(conn)
                return
            self._released.wait(self.stall_seconds)  # "stall"
            conn.sendall(bytes(answer))
        except (OSError, ValueError):
            pass  # the client gave up (timeout) or a malformed request: nothing to do
        finally:
            if upstream is not None:
                upstream.close()
            with contextlib.suppress(OSError):
                conn.close()

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[str, str, bytes, bytes] | None:
        buf = bytearray()
        while _HEAD_END not in buf:
            chunk = conn.recv(1 << 16)
            if not chunk:
                return None
            buf += chunk
        end = buf.index(_HEAD_END)
        head_text = bytes(buf[:end]).decode("latin-1")
        rest = bytes(buf[end + 4 :])
        request_line, *header_lines = head_text.split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = [
            line
            for line in header_lines
            if line.split(":", 1)[0].strip().lower() not in ("connection", "keep-alive")
        ]
        fields = {
            line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip()
            for line in headers
            if ":" in line
        }
        if "content-length" in fields:
            need = int(fields["content-length"])
            body = bytearray(rest)
            while len(body) < need:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    return None
                body += chunk
            body_bytes = bytes(body[:need])
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body_bytes = FaultProxy._read_chunked(conn, bytearray(rest))
        else:
            body_bytes = b""
        head = "\r\n".join([request_line, *headers, "Connection: close"]) + "\r\n\r\n"
        return method, target.split("?", 1)[0], head.encode("latin-1"), body_bytes

    @staticmethod
    def _read_chunked(conn: socket.socket, buf: bytearray) -> bytes:
        """The raw chunked body (framing included), read up to its final empty chunk."""
        pos = 0

        def need(n: int) -> None:
            while len(buf) < n:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    raise ValueError("connection closed inside a chunked body")
                buf.extend(chunk)

        while True:
            while b"\r\n" not in buf[pos:]:
                need(len(buf) + 1)
            line_end = buf.index(b"\r\n", pos)
            size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
            pos = line_end + 2
            if size == 0:
                while True:  # trailers, up to an empty line
                    while b"\r\n" not in buf[pos:]:
                        need(len(buf) + 1)
                    line_end = buf.index(b"\r\n", pos)
                    empty = line_end == pos
                    pos = line_end + 2
                    if empty:
                        return bytes(buf[:pos])
            need(pos + size + 2)
            pos += size + 2


# -- where the real server keeps a file (for fast, read-only observation) ------------------


def server_storage(server: LocalServer, remote: str) -> Path | None:
    """The folder or file the server stores ``remote`` in, when it already exists.

    Only ever read, to notice cheaply that the server holds a temporary (a test
    trigger); what a client sees is always checked through the API.
    """
    root, _, rest = remote.partition("/")
    state = server.state_dir / "state"
    if root == "@personal":
        first = rest.split("/", 1)[0]
        for home in sorted((state / "personal").glob("*")):
            if (home / first).exists():
                return home / rest
        return None
    base = state / root.lstrip("@")
    return base / rest if (base / rest).exists() else None


# -- exact comparisons ------------------------------------------------------------------------


ARRAYS = (".b2nd",)


@dataclass
class Tally:
    """One comparison: what was compared and what was wrong."""

    files: int = 0
    rows: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    server_temporaries: int = 0

    def merge(self, other: Tally) -> Tally:
        return Tally(
            self.files + other.files,
            self.rows + other.rows,
            self.lost + other.lost,
            self.duplicated + other.duplicated,
            self.problems + other.problems,
            self.server_temporaries + other.server_temporaries,
        )

    @property
    def ok(self) -> bool:
        return not self.problems


def is_temporary(relpath: str) -> bool:
    """cat2sync's own temporaries: remote ``.cat2sync-*``, local ``*.part`` and ``.cat2sync-*``."""
    parts = relpath.split("/")
    return any(p.startswith(TEMP_PREFIX) for p in parts) or (
        parts[-1].startswith(".") and parts[-1].endswith(".part")
    )


def local_files(folder: Path) -> dict[str, Path]:
    """Regular files below ``folder`` by relative POSIX path (temporaries included)."""
    found: dict[str, Path] = {}
    # os.walk, not rglob: a temporary folder removed while it is listed is skipped.
    for parent, _, names in os.walk(folder):
        for name in names:
            path = Path(parent, name)
            if path.is_file():
                found[path.relative_to(folder).as_posix()] = path
    return found


def _rows_tally(name: str, ours: np.ndarray, theirs: np.ndarray) -> Tally:
    tally = Tally(files=1, rows=int(ours.shape[0]) if ours.ndim else 1)
    if ours.ndim and theirs.ndim and ours.shape[1:] == theirs.shape[1:]:
        tally.lost = max(0, ours.shape[0] - theirs.shape[0])
        tally.duplicated = max(0, theirs.shape[0] - ours.shape[0])
    if (
        ours.dtype != theirs.dtype
        or ours.shape != theirs.shape
        or not np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f")
    ):
        tally.problems.append(
            f"{name}: {theirs.dtype}{theirs.shape} differs from {ours.dtype}{ours.shape}"
        )
    return tally


def read_remote_file(client: Client, remote: str) -> bytes:
    """The original bytes of a remote regular file.

    The server answers 500 to a download whose file name is not Latin-1 (it cannot put
    it in its headers); such a file is read chunk by chunk instead (``/api/chunk``
    serves the compressed chunks of the frame it is stored as).
    """
    try:
        return remote_bytes(client, remote)
    except ServerError:
        if remote.isascii():
            raise
    info = client.get_info(remote)
    nchunks = int(info.get("schunk", info)["nchunks"])
    return b"".join(blosc2.decompress(client.get_chunk(remote, i)) for i in range(nchunks))


def compare_remote(
    client: Client,
    remote: str,
    source: Mapping[str, Path | bytes | np.ndarray],
) -> Tally:
    """The remote folder holds exactly ``source`` (relpath -> local file, bytes or array),
    content compared, and no temporary."""
    tally = Tally()
    try:
        listed = set(client.get_list(remote))
    except NotFound:
        listed = set()
    temporaries = sorted(n for n in listed if is_temporary(n))
    tally.server_temporaries = len(temporaries)
    if temporaries:
        tally.problems.append(f"temporaries left on the server: {temporaries}")
    missing, extra = set(source) - listed, listed - set(source) - set(temporaries)
    if missing or extra:
        tally.problems.append(f"remote listing: missing {sorted(missing)}, extra {sorted(extra)}")
    for name in sorted(set(source) & listed):
        want = _expected(source[name])
        if isinstance(want, np.ndarray):
            tally = tally.merge(_rows_tally(name, want, client.fetch(f"{remote}/{name}")))
        else:
            got = read_remote_file(client, f"{remote}/{name}")
            tally.files += 1
            if got != want:
                tally.problems.append(f"{name}: remote bytes differ ({len(got)} vs {len(want)})")
    return tally


def _expected(want: Path | bytes | np.ndarray) -> bytes | np.ndarray:
    """A source entry as content: a source file is read (arrays as their rows)."""
    if isinstance(want, Path):
        return local_array(want) if want.suffix in ARRAYS else want.read_bytes()
    return want


def compare_local(
    folder: Path,
    source: Mapping[str, Path | bytes | np.ndarray],
    *,
    ignore_temporaries: bool = False,
) -> Tally:
    """The local folder holds exactly ``source``, content compared, and no temporary."""
    tally = Tally()
    found = local_files(folder)
    temporaries = sorted(n for n in found if is_temporary(n))
    if temporaries and not ignore_temporaries:
        tally.problems.append(f"temporaries left in {folder.name}: {temporaries}")
    names = set(found) - set(temporaries)
    missing, extra = set(source) - names, names - set(source)
    if missing or extra:
        tally.problems.append(f"{folder.name}: missing {sorted(missing)}, extra {sorted(extra)}")
    for name in sorted(set(source) & names):
        want = _expected(source[name])
        if isinstance(want, np.ndarray):
            try:
                got = local_array(found[name])
            except Exception as exc:  # a partial array does not even open
                tally.files += 1
                tally.problems.append(f"{name}: does not open ({exc})")
                continue
            tally = tally.merge(_rows_tally(name, want, got))
        else:
            tally.files += 1
            if found[name].read_bytes() != want:
                tally.problems.append(f"{name}: local bytes differ")
    return tally


def mirror_temporaries(*folders: Path) -> list[str]:
    return sorted(
        f"{folder.name}/{n}" for folder in folders for n in local_files(folder) if is_temporary(n)
    )


def array_file(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> Path:
    """Write ``data`` as a ``.b2nd`` (atomically, as a careful instrument would)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"~{path.name}")
    blosc2.asarray(data, urlpath=str(tmp), mode="w", chunks=chunks)
    tmp.replace(path)
    return path


def write_atomic(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"~{path.name}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


# -- small utilities ----------------------------------------------------------------------------


def can_mount_tmpfs(where: Path) -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, mount(8) there)."""
    if os.geteuid() != 0 or shutil.which("mount") is None or shutil.which("umount") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        return False
    subprocess.run(["umount", str(where)], capture_output=True, check=False)
    return True


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (unmounted afterwards, lazily if busy)."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        check=True,
        capture_output=True,
    )
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def remount(where: Path, options: str) -> None:
    subprocess.run(
        ["mount", "-o", f"remount,{options}", str(where)], check=True, capture_output=True
    )


JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")


def poll(cond: Callable[[], Any], timeout: float, interval: float = 0.002) -> Any:
    """Poll ``cond`` fast until truthy or ``timeout``; returns its last value (no failure)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
