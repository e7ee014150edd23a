"""The daemon's read-only HTTP endpoint (``[daemon] http``): ``/`` the status page,
``/metrics`` for Prometheus, ``/status.json`` the status document.

Standard library only: an ``http.server`` whose requests run on a small, bounded pool
of threads. A connection that finds every worker busy and the queue full is closed at
once, and a client silent for a few seconds is dropped, so a slow or hostile client can
hold up the page, never the daemon. GET and HEAD only; an unknown path is a 404. The
page (``cat2sync/page/``) is plain HTML, CSS and a little JavaScript, with nothing
loaded from elsewhere.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from typing import Any, cast
from urllib.parse import urlsplit

from .errors import ConfigError
from .manifest import HttpAddress

__all__ = ["Route", "StatusServer", "routes"]

log = logging.getLogger(__name__)

_WORKERS = 4  # requests answered at once
_WAITING = 8  # connections accepted and waiting for a worker; more are closed at once
_CLIENT_TIMEOUT = 5.0  # seconds a client may stay silent while sending or receiving
_PAGE_FILES = {"/": "index.html", "/page.css": "page.css", "/page.js": "page.js"}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # The page's own files only: no inline script, nothing from another host.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class Route:
    content_type: str
    body: Callable[[], bytes]


def routes(metrics: Route, status: Callable[[], Mapping[str, Any]]) -> dict[str, Route]:
    """The endpoint's paths: the page's files, ``/metrics`` and ``/status.json``."""
    found: dict[str, Route] = {"/metrics": metrics}
    found["/status.json"] = Route(
        "application/json", lambda: json.dumps(status(), indent=1).encode()
    )
    page = resources.files("cat2sync").joinpath("page")
    for path, name in _PAGE_FILES.items():
        content = page.joinpath(name).read_bytes()
        found[path] = Route(_TYPES[name[name.rindex(".") :]], partial(bytes, content))
    return found


class StatusServer:
    """Listening on ``address`` from construction; serving from :meth:`start`.

    :raises ConfigError: the address is busy, not this machine's, or not resolvable.
    """

    def __init__(self, address: HttpAddress, paths: Mapping[str, Route]) -> None:
        self.address = address
        try:
            self._httpd = _Server(address, paths)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(f"cannot serve the status page on {address}: {reason}") from None
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="cat2sync-http", daemon=True
        )

    @property
    def url(self) -> str:
        """The page's URL, with the port actually bound."""
        port = self._httpd.server_address[1]
        return f"http://{HttpAddress(self.address.host, port)}/"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()


class _Server(HTTPServer):
    """An HTTP server on a bounded pool instead of a thread per connection."""

    def __init__(self, address: HttpAddress, paths: Mapping[str, Route]) -> None:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM
        )[0]
        self.address_family = family
        self.paths = paths
        self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="cat2sync-http")
        self._slots = threading.BoundedSemaphore(_WORKERS + _WAITING)
        super().__init__(cast(Any, sockaddr), _Handler)  # an IPv4 or IPv6 address here

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's FQDN up, which can hang without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # every worker busy and the queue full
            return
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception as exc:  # a client that went away, say
            log.debug("status page: request from %s failed: %s", client_address, exc)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = _CLIENT_TIMEOUT
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alives

    def version_string(self) -> str:
        return "cat2sync"

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        route = self.server.paths.get(urlsplit(self.path).path)
        if route is None:
            self.send_error(404)
            return
        try:
            body = route.body()
        except Exception:
            log.exception("status page: %s failed", urlsplit(self.path).path)
            self.send_error(500)
            return
        self.send_response(200)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("status page: %s %s", self.address_string(), format % args)
