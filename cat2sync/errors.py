"""The one exception tree of cat2sync: every exception class the package raises.

::

    Cat2Error                       base; ``remedy`` says what the caller should do
     ├── ConfigError                fix the configuration
     │    ├── ManifestError         a manifest key is invalid (file and key path)
     │    │    └── SettingError     a key of a plugin's ``[plugins.NAME]`` table
     │    └── StateVersionError     the state folder's schema is newer (or not migrated yet)
     ├── ServerStartError           the embedded Caterva2 server did not come up   (fatal)
     ├── StateLockedError           another daemon holds the state folder          (fatal)
     ├── NotReady                   a local file is incomplete (not a Blosc2 container yet)
     ├── FileChanged                a local file changed while it was being sent
     ├── UnsafeName                 a remote name cannot be written inside the mirror
     ├── TransformError             a transform failed, or gave rows that cannot be sent
     ├── PluginError                a plugin's hook raised (names the plugin and the hook)
     └── RemoteError                the Caterva2 server refused or failed a request
          ├── AuthenticationError   bad credentials, or a request that needs a login
          ├── PermissionDenied      logged in, but not allowed (e.g. not a superuser)
          ├── NotFound              the path does not exist
          ├── BadRequest            the server rejected the request's content (400/409/416/422)
          ├── Unsupported           this server does not offer the operation (too old)
          ├── ServerError           5xx
          └── TransportError        the request never got an answer
               └── Timeout

Every class says what to do about it in :attr:`Cat2Error.remedy`, in the spirit of
rclone's ``fs/fserrors``: the daemon, the mirror and the lazy-expression engine decide
retries from :func:`remedy_for` alone, never from the class.

Every :class:`RemoteError` carries the remote ``path`` (when there is one) and the
server's own ``detail`` message, so a one-line report is always possible. httpx errors
become these types in ``client/_transport.py`` and nowhere else.
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "Cat2Error",
    "ConfigError",
    "FileChanged",
    "ManifestError",
    "NotFound",
    "NotReady",
    "PermissionDenied",
    "PluginError",
    "Remedy",
    "RemoteError",
    "ServerError",
    "ServerStartError",
    "SettingError",
    "StateLockedError",
    "StateVersionError",
    "Timeout",
    "TransformError",
    "TransportError",
    "UnsafeName",
    "Unsupported",
    "explain",
    "remedy_for",
]


class Remedy(enum.StrEnum):
    """What the caller of a failed operation should do."""

    #: Transient (the server is away, the network failed, a 5xx): try again later, with
    #: backoff.
    RETRY = "retry later"
    #: The local file is still being written, or changed meanwhile: try again once it
    #: has settled.
    WAIT = "wait until the file settles"
    #: This file, name or data cannot be synced as it is: report it, and try again only
    #: when it changes (or at the next full pass).
    FIX_FILE = "fix the file"
    #: The manifest, a plugin's settings, the credentials or the server's version are
    #: wrong for this: report it; retrying helps only once someone fixes it.
    FIX_CONFIG = "fix the configuration"
    #: The command cannot carry on.
    FATAL = "fatal"


class Cat2Error(Exception):
    """Base of every error cat2sync raises on purpose."""

    remedy: ClassVar[Remedy] = Remedy.RETRY


# -- configuration ------------------------------------------------------------------


class ConfigError(Cat2Error):
    """The configuration is wrong; nothing succeeds until it is fixed."""

    remedy = Remedy.FIX_CONFIG


class ManifestError(ConfigError):
    """A manifest is invalid. ``str()`` is the one-line message for the user."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + message)


class SettingError(ManifestError):
    """A plugin's own setting is invalid: ``key`` is its path inside the plugin's table
    (the message has the whole key path, ``plugins.<plugin>.<key>``).

    A plugin raises it from ``cat2sync_configure`` (or from its settings parser) with
    the key inside its table; the manifest's file is filled in when the core reports it::

        raise SettingError("convert", "clevel", "expected an integer from 0 to 9")
    """

    def __init__(self, plugin: str, key: str, message: str, source: str = "") -> None:
        super().__init__(source or "manifest", f"plugins.{plugin}.{key}", message)
        self.plugin, self.key = plugin, key

    def in_file(self, source: str) -> SettingError:
        """The same error, reported against the manifest file ``source``."""
        return SettingError(self.plugin, self.key, self.message, source)


class StateVersionError(ConfigError):
    """The state folder's schema is not the one this cat2sync reads: newer (refused), or
    older and opened read-only (a daemon migrates it when it next starts)."""

    def __init__(self, state_dir: object, found: int, supported: int) -> None:
        self.found, self.supported = found, supported
        if found > supported:
            advice = (
                f"is newer than this cat2sync understands ({supported}): upgrade cat2sync, "
                "or use another state_dir"
            )
        else:
            advice = f"is older than {supported}: it is upgraded when the daemon next starts"
        super().__init__(f"{state_dir}: state schema version {found} {advice}")


# -- the daemon's own resources ------------------------------------------------------


class ServerStartError(Cat2Error):
    """The embedded Caterva2 server failed to start; the message quotes its log."""

    remedy = Remedy.FATAL


class StateLockedError(Cat2Error):
    """Another process already uses this state directory."""

    remedy = Remedy.FATAL


# -- one file -------------------------------------------------------------------------


class NotReady(Cat2Error):
    """The file is not complete yet (does not open as a Blosc2 container)."""

    remedy = Remedy.WAIT


class FileChanged(Cat2Error):
    """The file changed while it was being sent; it will be sent again once settled."""

    remedy = Remedy.WAIT


class UnsafeName(Cat2Error, ValueError):
    """A remote name cannot be written safely inside the mirror folder."""

    remedy = Remedy.FIX_FILE


class TransformError(Cat2Error):
    """A transform failed or gave rows that cannot be sent."""

    remedy = Remedy.FIX_FILE


class PluginError(Cat2Error):
    """A plugin's hook raised; the message names the plugin, the hook and the cause.

    A plugin may have failed for a passing reason (a network share away), so the work
    is retried later like a server failure.
    """

    def __init__(self, plugin: str, hook: str, exc: BaseException, subject: str = "") -> None:
        self.plugin, self.hook, self.cause = plugin, hook, exc
        about = f" on {subject}" if subject else ""
        super().__init__(
            f"plugin {plugin!r} failed in {hook}{about}: {exc.__class__.__name__}: {exc}"
        )


# -- the server -----------------------------------------------------------------------


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

    remedy = Remedy.FIX_CONFIG


class PermissionDenied(RemoteError):
    """Logged in, but the server does not allow this to this user."""

    remedy = Remedy.FIX_CONFIG


class NotFound(RemoteError, LookupError):
    """The remote path does not exist."""

    remedy = Remedy.FIX_FILE


class BadRequest(RemoteError, ValueError):
    """The server rejected what was sent (bad slice, bad expression, wrong shape...).

    A full quota is one too (the server says so with a 400), and it passes: the work
    is retried later.
    """


class Unsupported(RemoteError):
    """The server does not offer this operation (an older Caterva2): not a missing path."""

    remedy = Remedy.FIX_CONFIG


class ServerError(RemoteError):
    """The server failed (5xx)."""


class TransportError(RemoteError, OSError):
    """No answer: connection refused or reset, protocol error."""


class Timeout(TransportError, TimeoutError):
    """No answer within the client's timeout."""


def remedy_for(exc: BaseException) -> Remedy:
    """What to do about ``exc``, whatever raised it.

    Local I/O errors pass (a full disk, a share away) except a missing permission,
    which someone must fix; an unexpected exception (a bug, or a library failing on
    damaged data) is retried later, so that one file never stops the daemon.
    """
    if isinstance(exc, Cat2Error):
        return exc.remedy
    if isinstance(exc, PermissionError):
        return Remedy.FIX_FILE
    return Remedy.RETRY


def explain(exc: BaseException) -> str:
    """A one-line report of ``exc``: its message, with its class for an exception that
    is not one of ours (nor an ``OSError``), whose message alone may say little."""
    message = str(exc) or exc.__class__.__name__
    if isinstance(exc, Cat2Error | OSError):
        return message
    return f"{exc.__class__.__name__}: {message}"
