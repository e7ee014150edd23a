"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, for faults a real server cannot be made
to produce on cue (a 503, a dropped connection, a response lost after the server applied
the request, a stall). Every test that uses it says so in its docstring."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections import Counter
from dataclasses import dataclass

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
