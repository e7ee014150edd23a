"""The one exception tree of cat2sync.

::

    Cat2Error
     ├── ManifestError              a manifest is invalid (file and key path in the message)
     ├── ServerStartError           the embedded Caterva2 server did not come up
     ├── StateLockedError           another daemon holds the state directory
     └── RemoteError                the Caterva2 server refused or failed a request
          ├── AuthenticationError   bad credentials, or a write/read that needs a login
          ├── PermissionDenied      logged in, but not allowed (e.g. not a superuser)
          ├── NotFound              the path does not exist
          ├── BadRequest            the server rejected the request's content (400/409/416/422)
          ├── ServerError           5xx
          └── TransportError        the request never got an answer
               └── Timeout

Every :class:`RemoteError` carries the remote ``path`` (when there is one) and the
server's own ``detail`` message, so a one-line report is always possible.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "Cat2Error",
    "ManifestError",
    "NotFound",
    "PermissionDenied",
    "RemoteError",
    "ServerError",
    "ServerStartError",
    "StateLockedError",
    "Timeout",
    "TransportError",
]


class Cat2Error(Exception):
    """Base of every error cat2sync raises on purpose."""


class ManifestError(Cat2Error):
    """A manifest is invalid. ``str()`` is the one-line message for the user."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + message)


class ServerStartError(Cat2Error):
    """The embedded Caterva2 server failed to start; the message quotes its log."""


class StateLockedError(Cat2Error):
    """Another process already uses this state directory."""


class RemoteError(Cat2Error):
    """The server refused or failed a request."""

    def __init__(self, detail: str, *, path: str | None = None, status: int | None = None) -> None:
        self.detail = detail
        self.path = path
        self.status = status
        prefix = f"{path}: " if path else ""
        super().__init__(prefix + detail)


class AuthenticationError(RemoteError):
    """Bad credentials, an expired login, or an operation that needs a login."""


class PermissionDenied(RemoteError):
    """Logged in, but the server does not allow this to this user."""


class NotFound(RemoteError, LookupError):
    """The remote path does not exist."""


class BadRequest(RemoteError, ValueError):
    """The server rejected what was sent (bad slice, bad expression, wrong shape...)."""


class ServerError(RemoteError):
    """The server failed (5xx)."""


class TransportError(RemoteError, OSError):
    """No answer: connection refused or reset, protocol error."""


class Timeout(TransportError, TimeoutError):
    """No answer within the client's timeout."""
