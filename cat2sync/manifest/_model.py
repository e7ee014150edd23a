"""The manifest's typed, frozen objects."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

DEFAULT_SERVER: Final = "default"
DEFAULT_INCLUDE: Final = ("**/*",)
DEFAULT_SUBSCRIBE_EVERY: Final = 300.0
DEFAULT_VERIFY_EVERY: Final = 3600.0
STATE_DIR_NAME: Final = ".cat2sync"
MAX_CONCURRENCY: Final = 64

LogFormat: TypeAlias = Literal["text", "json"]
RefreshMode: TypeAlias = Literal["on-change", "every"]
OnConflict: TypeAlias = Literal["keep-both", "overwrite", "skip"]
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("text", "json")
REFRESH_MODES: Final[tuple[RefreshMode, ...]] = ("on-change", "every")
ON_CONFLICT: Final[tuple[OnConflict, ...]] = ("keep-both", "overwrite", "skip")

_EMPTY_MAPPING: Final[Mapping[str, Any]] = MappingProxyType({})


def _empty_mapping() -> Mapping[str, Any]:
    return _EMPTY_MAPPING


class _Sentinel(enum.Enum):
    REQUIRED = "REQUIRED"
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return self.value


#: ``SettingSpec.default`` for a plugin setting that has no default and must be given.
REQUIRED: Final = _Sentinel.REQUIRED
#: What a table reader gets for a key that is absent (``None`` may be a real value).
MISSING: Final = _Sentinel.MISSING


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingSpec:
    """What a plugin accepts in its ``[plugins.NAME]`` table, one per key.

    :param type: accepted Python type(s) of the TOML value (``str``, ``int``, ``float``,
        ``bool``, ``list``, ``dict``; ``float`` also accepts integers; ``pathlib.Path``
        accepts a string and resolves it against the manifest's folder).
    :param default: used when the key is absent; :data:`REQUIRED` means it must be given.
    :param description: one line for the docs and ``--help`` style listings.
    """

    type: type | tuple[type, ...]
    default: Any = REQUIRED
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransformSpec:
    """A transform applied to arrays in transit: ``"float32"`` or ``{name = "scale", ...}``."""

    name: str
    # hash=False keeps rules hashable although a mappingproxy is not (Python 3.11).
    params: Mapping[str, Any] = field(default_factory=_empty_mapping, hash=False)


@dataclass(frozen=True, slots=True)
class HttpAddress:
    """Where ``cat2sync run`` serves its status page and metrics (port 0: any free one)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    """The ``[daemon]`` table. ``state_dir`` defaults to ``.cat2sync`` beside the manifest;
    ``http`` is None when no status endpoint is wanted."""

    state_dir: Path
    log_level: str = "info"
    log_format: LogFormat = "text"
    rescan: float = 600.0
    retry_max: float = 300.0
    http: HttpAddress | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """One Caterva2 server. ``url is None`` means the embedded local server.

    ``password_file`` is the resolved path when the password came from a file; with
    ``load_manifest(check_paths=False)`` an unreadable file leaves ``password`` None.
    """

    name: str
    url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    timeout: float = 30.0
    verify: bool | str = True

    @property
    def embedded(self) -> bool:
        """Whether the daemon must start a local Caterva2 server for this entry."""
        return self.url is None


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadRule:
    """An ``[[upload]]`` rule: keep a remote folder up to date with a local folder."""

    name: str
    local: Path
    remote: str
    server: str = DEFAULT_SERVER
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = ()
    settle: float = 2.0
    append: bool = True
    delete: bool = False
    max_delete: float = 0.5
    follow_symlinks: bool = False
    concurrency: int = 4
    transforms: tuple[TransformSpec, ...] = ()
    #: Suffixes (lower case, with the dot) converted to ``.b2nd`` by a plugin on the way.
    convert: tuple[str, ...] = ()
    on_conflict: OnConflict = "keep-both"
    #: Seconds a shipped, verified and unchanged local file is kept; None: kept for ever.
    delete_local_after: float | None = None
    #: Publish a change journal in the remote folder, for subscribers (``.cat2sync/``).
    journal: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeRule:
    """A ``[[subscribe]]`` rule: mirror a remote folder into a local folder.

    Exactly one of ``every`` (seconds) and ``cron`` (5-field crontab) is set by the
    loader; a rule with neither in the manifest polls every 300 s.
    """

    name: str
    remote: str
    local: Path
    server: str = DEFAULT_SERVER
    every: float | None = None
    cron: str | None = None
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = ()
    delete: bool = False
    max_delete: float = 0.5
    concurrency: int = 8
    transforms: tuple[TransformSpec, ...] = ()
    on_conflict: OnConflict = "keep-both"
    #: Seconds between full passes when the folder has journals (the rest read them).
    verify_every: float = DEFAULT_VERIFY_EVERY


@dataclass(frozen=True, slots=True, kw_only=True)
class LazyExprRule:
    """A ``[[lazyexpr]]`` rule: a lazy expression kept as a dataset on the server."""

    name: str
    expression: str
    operands: Mapping[str, str] = field(default_factory=_empty_mapping, hash=False)
    server: str = DEFAULT_SERVER
    path: str | None = None
    refresh: RefreshMode = "on-change"
    every: float | None = None

    @property
    def destination(self) -> str:
        """The dataset the expression is stored as (``path`` or ``@personal/<name>.b2nd``)."""
        return self.path if self.path is not None else f"@personal/{self.name}.b2nd"


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginsConfig:
    """The ``[plugins]`` table: disabled plugin names and per-plugin settings."""

    disable: tuple[str, ...] = ()
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty_mapping)


Rule: TypeAlias = UploadRule | SubscribeRule


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A validated manifest. All local paths are absolute and resolved."""

    path: Path
    source: str
    base_dir: Path
    daemon: DaemonConfig
    servers: Mapping[str, ServerConfig]
    uploads: tuple[UploadRule, ...] = ()
    subscriptions: tuple[SubscribeRule, ...] = ()
    lazyexprs: tuple[LazyExprRule, ...] = ()
    plugins: PluginsConfig = field(default_factory=PluginsConfig)

    def rules(self) -> Iterator[Rule]:
        """All upload rules, then all subscribe rules, in manifest order."""
        yield from self.uploads
        yield from self.subscriptions

    def server_for(self, rule: UploadRule | SubscribeRule | LazyExprRule) -> ServerConfig:
        """The server a rule talks to (the loader guarantees that it exists)."""
        return self.servers[rule.server]
