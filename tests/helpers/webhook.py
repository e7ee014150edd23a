"""A loopback webhook receiver (127.0.0.1 only) for the notify plugin's tests."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Collects the JSON bodies POSTed to it, and the paths they were POSTed to.

    :param status: what it answers.
    :param hold: answer nothing until :meth:`release` (or the end): a client with a
        timeout gives up on every request meanwhile.
    """

    def __init__(self, *, status: int = 204, hold: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.status = status
        self.got = threading.Condition()
        self._released = threading.Event()
        if not hold:
            self._released.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.got:
                    receiver.bodies.append(json.loads(body))
                    receiver.paths.append(self.path)
                    receiver.got.notify_all()
                receiver._released.wait()
                with contextlib.suppress(OSError):  # a client that gave up has gone
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        """Answer the held requests, and every one after them at once."""
        self._released.set()

    def wait_for(
        self, cond: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The bodies, once ``cond(bodies)`` holds (or after ``timeout`` s, as they are)."""
        with self.got:
            self.got.wait_for(lambda: cond(self.bodies), timeout)
            return list(self.bodies)
