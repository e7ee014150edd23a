"""A counting HTTP/1.1 relay on 127.0.0.1, to count what a client sends and receives.

The benchmarks measure cat2sync's traffic with its own counters (``client.stats``). The
reference tools (the upstream ``caterva2.Client`` and the ``cat2-agent`` process) have
none, so they are pointed at this relay instead of the server. It forwards every
request and response unchanged and counts, per API endpoint (``download``, ``info``,
``upload``, ...), the requests and the **body** bytes in both directions, as they come
off the wire (chunked transfer framing removed, content encodings kept), which is what
cat2sync's counters count too. Headers are not counted.

It understands just enough HTTP/1.1 for this: one request at a time per connection
(no pipelining, which httpx never does), bodies framed by ``Content-Length``, by
chunked transfer encoding, or, for a response, by the end of the connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

__all__ = ["CountingProxy", "Tally"]

_PIECE = 256 * 1024
_MAX_HEAD = 256 * 1024

Count = Callable[[int], None]


@dataclass(slots=True)
class Tally:
    requests: int = 0
    sent: int = 0  # request body bytes (client -> server)
    received: int = 0  # response body bytes (server -> client)


class _Closed(Exception):
    """The peer closed the connection between two messages."""


def _endpoint(target: str) -> str:
    """``/api/download/@shared/x`` -> ``download``; ``/auth/jwt/login`` -> ``auth``."""
    parts = urlsplit(target).path.strip("/").split("/")
    if parts[0] == "api" and len(parts) > 1:
        return parts[1]
    return parts[0] or "/"


def _read_head(rfile: BinaryIO) -> tuple[bytes, list[tuple[str, str]]]:
    """The start line and headers of one message (raw bytes, parsed headers)."""
    raw = bytearray()
    while True:
        line = rfile.readline(_MAX_HEAD)
        if not line:
            if raw:
                raise ConnectionError("connection closed inside a message head")
            raise _Closed
        raw += line
        if len(raw) > _MAX_HEAD:
            raise ConnectionError("message head too large")
        if line in (b"\r\n", b"\n"):
            if len(raw) == len(line):
                raw.clear()  # a stray empty line between messages
                continue
            break
    lines = bytes(raw).decode("latin-1").split("\r\n")
    headers = []
    for text in lines[1:]:
        name, sep, value = text.partition(":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    return bytes(raw), headers


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


# Body bytes are counted *before* they are forwarded: once the client has a whole
# response, its bytes are in the counts.


def _relay_exact(rfile: BinaryIO, dst: socket.socket, n: int, count: Count) -> None:
    left = n
    while left > 0:
        piece = rfile.read(min(left, _PIECE))
        if not piece:
            raise ConnectionError("connection closed inside a body")
        count(len(piece))
        dst.sendall(piece)
        left -= len(piece)


def _relay_chunked(rfile: BinaryIO, dst: socket.socket, count: Count) -> None:
    """Forward a chunked body as is, counting its payload."""
    while True:
        size_line = rfile.readline(_MAX_HEAD)
        if not size_line:
            raise ConnectionError("connection closed inside a chunked body")
        dst.sendall(size_line)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:  # trailers, up to the empty line
                line = rfile.readline(_MAX_HEAD)
                dst.sendall(line)
                if line in (b"\r\n", b"\n", b""):
                    return
        _relay_exact(rfile, dst, size, count)
        dst.sendall(rfile.readline(_MAX_HEAD))  # the CRLF after the chunk


def _relay_to_eof(rfile: BinaryIO, dst: socket.socket, count: Count) -> None:
    while piece := rfile.read1(_PIECE):
        count(len(piece))
        dst.sendall(piece)


def _relay_body(
    rfile: BinaryIO,
    dst: socket.socket,
    headers: list[tuple[str, str]],
    count: Count,
    *,
    until_eof: bool,
) -> None:
    encoding = (_header(headers, "transfer-encoding") or "").lower()
    if "chunked" in encoding:
        _relay_chunked(rfile, dst, count)
        return
    length = _header(headers, "content-length")
    if length is not None:
        _relay_exact(rfile, dst, int(length), count)
    elif until_eof:
        _relay_to_eof(rfile, dst, count)


class CountingProxy:
    """Relays ``127.0.0.1:<port>`` to ``upstream`` and counts the traffic.

    Use as a context manager; ``url`` is what the client should talk to, and
    :meth:`totals` / :meth:`by_endpoint` give the counts since the last :meth:`reset`.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"the counting proxy relays plain http:// only, not {upstream}")
        self._upstream = (parts.hostname, parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._tallies: dict[str, Tally] = {}
        self._conns: set[socket.socket] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="counting-proxy", daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    # -- counts --------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._tallies.clear()

    def by_endpoint(self) -> dict[str, Tally]:
        with self._lock:
            return {k: Tally(v.requests, v.sent, v.received) for k, v in self._tallies.items()}

    def totals(self, endpoints: Iterable[str] | None = None) -> Tally:
        """The sum over ``endpoints`` (default: all of them)."""
        wanted = None if endpoints is None else set(endpoints)
        total = Tally()
        for name, tally in self.by_endpoint().items():
            if wanted is None or name in wanted:
                total.requests += tally.requests
                total.sent += tally.sent
                total.received += tally.received
        return total

    def _count(self, endpoint: str, *, requests: int = 0, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            tally = self._tallies.setdefault(endpoint, Tally())
            tally.requests += requests
            tally.sent += sent
            tally.received += received

    # -- relaying ------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(conn,), name="counting-proxy-conn", daemon=True
            ).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        with self._lock:
            self._conns.add(client)
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            crfile = client.makefile("rb", buffering=_PIECE)
            urfile: BinaryIO | None = None
            while True:
                try:
                    head, headers = _read_head(crfile)
                except _Closed:
                    return
                method, target = head.split(b" ", 2)[:2]
                endpoint = _endpoint(target.decode("latin-1"))
                if upstream is None:
                    upstream = socket.create_connection(self._upstream)
                    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    with self._lock:
                        self._conns.add(upstream)
                    urfile = upstream.makefile("rb", buffering=_PIECE)
                assert urfile is not None
                self._count(endpoint, requests=1)
                upstream.sendall(head)
                _relay_body(
                    crfile,
                    upstream,
                    headers,
                    lambda n, e=endpoint: self._count(e, sent=n),
                    until_eof=False,
                )
                while True:  # skip interim 1xx responses
                    rhead, rheaders = _read_head(urfile)
                    client.sendall(rhead)
                    status = int(rhead.split(b" ", 2)[1])
                    if status >= 200 or status == 101:
                        break
                if method != b"HEAD" and status not in (204, 304):
                    _relay_body(
                        urfile,
                        client,
                        rheaders,
                        lambda n, e=endpoint: self._count(e, received=n),
                        until_eof=True,
                    )
                close = "close" in (_header(rheaders, "connection") or "").lower() or (
                    _header(rheaders, "content-length") is None
                    and "chunked" not in (_header(rheaders, "transfer-encoding") or "").lower()
                    and method != b"HEAD"
                    and status not in (204, 304)
                )
                if close:
                    return
        except (OSError, ConnectionError, ValueError, IndexError, _Closed):
            return
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with self._lock:
                        self._conns.discard(sock)
                    with contextlib.suppress(OSError):
                        sock.close()
