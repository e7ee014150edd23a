"""httpx wiring for the client: one pooled connection, login, retries, error mapping.

Everything that turns an httpx exception or an HTTP error status into a
:mod:`cat2sync.errors` type happens here, in one place.
"""

from __future__ import annotations

import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from ..errors import (
    AuthenticationError,
    BadRequest,
    NotFound,
    PermissionDenied,
    RemoteError,
    ServerError,
    Timeout,
    TransportError,
)

__all__ = ["Credentials", "RequestObserver", "TransferStats", "Transport", "api_path"]

_T = TypeVar("_T")

#: Read timeout for calls that make the server work (compute, compress, big bodies):
#: the server handles them on its event loop and may stay silent for a long time.
DEFAULT_WORK_TIMEOUT = 600.0
_RETRY_STATUSES = {502, 503, 504}
_KEEPALIVE_EXPIRY = 2.0  # seconds; uvicorn closes idle connections after 5
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 4.0


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never show the password
        return f"Credentials(username={self.username!r}, password='***')"


@dataclass(slots=True)
class TransferStats:
    """Body bytes moved through one client (request and response bodies, not headers).

    The totals count every thread; :meth:`this_thread` counts only the calling thread's
    requests, so that concurrent transfers can each report their own bytes.
    """

    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _local: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    def add(self, *, sent: int = 0, received: int = 0, requests: int = 0) -> None:
        with self._lock:
            self.bytes_sent += sent
            self.bytes_received += received
            self.requests += requests
        local = self._local
        local.sent = getattr(local, "sent", 0) + sent
        local.received = getattr(local, "received", 0) + received

    def this_thread(self) -> tuple[int, int]:
        """``(bytes_sent, bytes_received)`` by the calling thread so far."""
        return getattr(self._local, "sent", 0), getattr(self._local, "received", 0)


# Reads of @public need no login, and checking a login cookie costs the server about as
# much CPU as the read itself (a JWT and a user lookup per request): these go without it.
_PUBLIC_READS = tuple(
    f"/api/{endpoint}/@public" for endpoint in ("list", "info", "fetch", "chunk", "download")
)


def _is_public_read(method: str, url: str) -> bool:
    """Whether ``method url`` only reads ``@public`` (GET, or POST /api/fetch)."""
    if method != "GET" and not (method == "POST" and url.startswith("/api/fetch/")):
        return False
    return any(url == prefix or url.startswith(prefix + "/") for prefix in _PUBLIC_READS)


def api_path(path: str) -> str:
    """Percent-encode a remote path for a URL; refuse what the server would misread."""
    clean = str(path).strip("/")
    if not clean:
        raise BadRequest("empty remote path")
    if any(part in ("..", ".") for part in clean.split("/")) or "\\" in clean:
        raise BadRequest("'.', '..' and backslashes are not allowed in remote paths", path=clean)
    return quote(clean, safe="/@")


class _CountingStream(httpx.SyncByteStream):
    def __init__(self, inner: Any, count: Callable[[int], None]) -> None:
        self._inner = inner
        self._count = count

    def __iter__(self) -> Iterator[bytes]:
        for part in self._inner:
            self._count(len(part))
            yield part

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


#: Told of every HTTP exchange, retries and logins included: ``(endpoint, outcome)``,
#: the API verb (``info``, ``fetch``, ``upload``, ``login``...) and ``ok``,
#: ``client_error`` (4xx), ``server_error`` (5xx) or ``transport_error`` (no answer).
RequestObserver = Callable[[str, str], None]
_VERB = re.compile(r"[a-z_]+")


def endpoint_of(path: str) -> str:
    """The API verb of a request path (``/api/fetch/@public/x`` -> ``fetch``), never a
    remote name: what requests are counted by."""
    parts = path.split("/", 3)
    if len(parts) > 2 and parts[1] == "api":
        verb = parts[2]
    elif parts[1] == "auth":
        verb = parts[-1]  # /auth/jwt/login
    else:
        verb = ""
    return verb if _VERB.fullmatch(verb) else "other"


def _outcome(status: int) -> str:
    return "ok" if status < 400 else "client_error" if status < 500 else "server_error"


class _CountingTransport(httpx.BaseTransport):
    """Counts body bytes in both directions, and tells ``observer`` how each request
    ended; wraps the real (or an injected) transport."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        stats: TransferStats,
        observer: RequestObserver | None = None,
    ) -> None:
        self._inner = inner
        self._stats = stats
        self._observer = observer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._stats.add(requests=1)
        request.stream = _CountingStream(request.stream, self._add_sent)
        if self._observer is None:
            response = self._inner.handle_request(request)
        else:
            endpoint = endpoint_of(request.url.path)
            try:
                response = self._inner.handle_request(request)
            except httpx.TransportError:
                self._observer(endpoint, "transport_error")
                raise
            self._observer(endpoint, _outcome(response.status_code))
        response.stream = _CountingStream(response.stream, self._add_received)
        return response

    def _add_sent(self, n: int) -> None:
        self._stats.add(sent=n)

    def _add_received(self, n: int) -> None:
        self._stats.add(received=n)

    def close(self) -> None:
        self._inner.close()


def _detail(response: httpx.Response) -> str:
    """The server's own explanation, as one line."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text.splitlines()[0] if text else response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        return str(detail.get("reason") or detail.get("code") or detail)
    if isinstance(detail, list):  # FastAPI validation errors
        return "; ".join(
            f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}"
            if isinstance(d, dict)
            else str(d)
            for d in detail
        )
    return str(detail)


def _needs_superuser(response: httpx.Response) -> bool:
    # The server answers 401 (not 403) to a logged-in user who is not a superuser.
    return "superuser" in _detail(response).lower()


def error_for(response: httpx.Response, path: str | None) -> RemoteError:
    """Map an HTTP error response to the error tree."""
    status = response.status_code
    detail = _detail(response)
    if status == 401:
        if _needs_superuser(response):
            return PermissionDenied(detail, path=path, status=status)
        return AuthenticationError(
            "not logged in, or not allowed to do this without a login"
            if detail == "Unauthorized"
            else detail,
            path=path,
            status=status,
        )
    if status == 403:
        return PermissionDenied(detail, path=path, status=status)
    if status == 404:
        return NotFound(
            "no such path" if detail == "Not Found" else detail, path=path, status=status
        )
    if status >= 500:
        return ServerError(f"server error {status}: {detail}", path=path, status=status)
    return BadRequest(detail, path=path, status=status)


def _tls_context(verify: bool | str) -> bool | ssl.SSLContext:
    """httpx's ``verify``: a CA bundle path becomes a context trusting that bundle."""
    if isinstance(verify, bool):
        return verify
    return ssl.create_default_context(cafile=verify)


class Transport:
    """One pooled httpx client plus the policies the Caterva2 server needs.

    * Reads (GET, and POST /api/fetch) are retried with bounded exponential backoff and
      jitter on connection errors and 502/503/504, and once on a 500.
    * Writes are retried only when they certainly did not reach the server: a failed
      connect, or a 401 answered before the server did anything (then after a re-login).
    * After a 500 the pool is rebuilt: the server drops keep-alive connections after
      an unhandled exception, and the next request on one would fail with a reset.
    """

    def __init__(
        self,
        urlbase: str,
        *,
        credentials: Credentials | None,
        timeout: float | None,
        work_timeout: float | None = DEFAULT_WORK_TIMEOUT,
        retries: int = 3,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self.urlbase = urlbase.rstrip("/")
        self.credentials = credentials
        self.timeout = httpx.Timeout(timeout)
        self.work_timeout = httpx.Timeout(timeout, read=work_timeout)
        self.retries = retries
        self.stats = TransferStats()
        self._verify = verify
        self._injected = transport
        self._observer = observer
        self._login_lock = threading.RLock()
        self._logins = 0  # counts logins, so that concurrent 401s log in only once
        self._http = self._new_http(httpx.Cookies())
        self.closed = False
        if credentials is not None:
            self.login()

    # -- connection ------------------------------------------------------------

    def _new_http(self, cookies: httpx.Cookies) -> httpx.Client:
        # Idle connections are dropped before the server's 5 s keep-alive timeout: a request
        # sent on a connection the server is closing fails, and a write cannot be retried.
        inner = self._injected or httpx.HTTPTransport(
            verify=_tls_context(self._verify),
            limits=httpx.Limits(keepalive_expiry=_KEEPALIVE_EXPIRY),
        )
        return httpx.Client(
            base_url=self.urlbase,
            transport=_CountingTransport(inner, self.stats, self._observer),
            timeout=self.timeout,
            cookies=cookies,
            headers={"User-Agent": "cat2sync"},
        )

    def _reset_pool(self) -> None:
        # Other threads may still be reading from the old pool: leave it to the garbage
        # collector instead of closing it under them.
        with self._login_lock:
            self._http = self._new_http(self._http.cookies)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._http.close()

    @property
    def logged_in(self) -> bool:
        return self.credentials is not None

    def relogin(self, seen: int) -> None:
        """Log in again unless another thread did since it saw login number ``seen``."""
        with self._login_lock:
            if self._logins == seen:
                self.login()

    def login(self) -> None:
        """Log in with the stored credentials; one clear error on a wrong password."""
        assert self.credentials is not None
        with self._login_lock:
            self._login()
            self._logins += 1

    def _login(self) -> None:
        assert self.credentials is not None
        self._http.cookies.clear()
        try:
            resp = self._http.post(
                "/auth/jwt/login",
                data={"username": self.credentials.username, "password": self.credentials.password},
            )
        except httpx.TimeoutException as exc:
            raise Timeout(f"login timed out: {self.urlbase}") from exc
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.urlbase}: {exc}") from exc
        if resp.status_code == 400:
            raise AuthenticationError(
                f"login failed for {self.credentials.username}: wrong username or password",
                status=400,
            )
        if resp.status_code >= 400:
            raise error_for(resp, None)

    # -- requests --------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        path: str | None = None,
        idempotent: bool | None = None,
        work: bool = False,
        stream: bool = False,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        body: Callable[[], dict[str, Any]] | None = None,
        retry_500: bool = True,
    ) -> httpx.Response:
        """Send a request with the retry policy; raise a :class:`RemoteError` on failure.

        :param path: the remote path, named in errors.
        :param idempotent: may be retried after an unknown outcome (default: GET).
        :param work: the server may need long to answer; use the long read timeout.
        :param stream: return with the body unread (the caller must close it).
        :param body: makes fresh ``files``/``data`` keyword arguments for each attempt,
            so that a retried upload re-reads its file from the start.
        :param retry_500: False where the server answers 500 for bad input (chunk out
            of range), so that retrying would only repeat it.
        """
        if self.closed:
            raise TransportError("client is closed", path=path)
        idempotent = method == "GET" if idempotent is None else idempotent
        relogged = retried_500 = False
        attempt = 0
        logins = self._logins
        while True:
            attempt += 1
            try:
                response = self._send(
                    method,
                    url,
                    params=params,
                    json=json,
                    headers=headers,
                    extra=body() if body else {},
                    work=work,
                    stream=stream,
                )
            except httpx.ConnectError as exc:
                if attempt <= self.retries:
                    self._sleep_backoff(attempt)
                    continue
                raise TransportError(f"cannot connect to {self.urlbase}: {exc}", path=path) from exc
            except httpx.TimeoutException as exc:
                if idempotent and attempt <= self.retries:
                    self._sleep_backoff(attempt)
                    continue
                raise Timeout(
                    f"no answer from {self.urlbase} in time ({exc.__class__.__name__})", path=path
                ) from exc
            except httpx.TransportError as exc:
                self._reset_pool()
                if idempotent and attempt <= self.retries:
                    self._sleep_backoff(attempt)
                    continue
                raise TransportError(
                    f"connection to {self.urlbase} failed: {exc}", path=path
                ) from exc
            if response.status_code < 400:
                return response
            if stream:
                response.read()
            status = response.status_code
            if status == 401 and self.logged_in and not relogged and not _needs_superuser(response):
                relogged = True  # the login cookie expired (12 h); the server did nothing
                self.relogin(logins)
                continue
            if status >= 500:
                self._reset_pool()
                retryable = status in _RETRY_STATUSES or (
                    status == 500 and retry_500 and not retried_500
                )
                if idempotent and retryable and attempt <= self.retries:
                    retried_500 = retried_500 or status == 500
                    self._sleep_backoff(attempt)
                    continue
            raise error_for(response, path)

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        extra: dict[str, Any],
        work: bool,
        stream: bool,
    ) -> httpx.Response:
        request = self._http.build_request(
            method,
            url,
            params=params,
            json=json,
            headers=headers,
            timeout=self.work_timeout if work else self.timeout,
            **extra,
        )
        if _is_public_read(method, url):
            request.headers.pop("Cookie", None)
        return self._http.send(request, stream=stream)

    @staticmethod
    def restartable(path: str, transfer: Callable[[], _T]) -> _T:
        """Run ``transfer``, which streams response bodies opened by :meth:`request`; a
        body cut or stalled mid-stream is transferred again once, from the start.

        A request that fails outright is not retried here: :meth:`request` has already
        applied its own policy and raised an error of the tree.
        """
        for attempt in range(2):
            try:
                return transfer()
            except httpx.TimeoutException as exc:
                if attempt:
                    raise Timeout(f"download stalled: {exc}", path=path) from exc
            except httpx.TransportError as exc:
                if attempt:
                    raise TransportError(f"download interrupted: {exc}", path=path) from exc
        raise AssertionError("unreachable")

    def _sleep_backoff(self, attempt: int) -> None:
        delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1))
        time.sleep(delay * (0.5 + random.random() / 2))
