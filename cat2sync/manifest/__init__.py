"""Load and validate a cat2sync manifest (TOML) into frozen dataclasses.

The manifest says which local folders are uploaded where, which remote folders are
mirrored locally, which lazy expressions are kept on the server, and how to reach the
Caterva2 server(s). Validation is strict on purpose: a daemon that runs unattended for
weeks must refuse a typo at start-up rather than silently ignore a key.

Every problem raises :class:`~cat2sync.errors.ManifestError` whose ``str()`` is one
line naming the file as the user gave it and the key path, e.g.::

    cat2sync.toml: upload[0].settle: expected a duration like "2s", got "soon"

Nothing else escapes :func:`load_manifest`. Secrets (passwords) never appear in a
message. The format is documented for operators in ``docs/manifest.md``.

Inside: ``_model`` holds the frozen types; ``_section`` reads typed values from one
table; ``_context`` knows the manifest's folder and environment; each table has its
reader (``_daemon``, ``_servers``, ``_rules`` for upload and subscribe, ``_lazyexpr``,
``_plugins``), ``_checks`` looks across rules and ``_loader`` puts them together. A table
accepts exactly the fields of the dataclass it becomes, so a new key is a field in
``_model`` plus one line in its reader.
"""

from __future__ import annotations

from ..durations import parse_duration
from ._loader import load_manifest
from ._model import (
    REQUIRED,
    DaemonConfig,
    HttpAddress,
    LazyExprRule,
    Manifest,
    OnConflict,
    PluginsConfig,
    Rule,
    ServerConfig,
    SettingSpec,
    SubscribeRule,
    TransformSpec,
    UploadRule,
)
from ._starter import starter_manifest
from ._values import parse_address

__all__ = [
    "REQUIRED",
    "DaemonConfig",
    "HttpAddress",
    "LazyExprRule",
    "Manifest",
    "OnConflict",
    "PluginsConfig",
    "Rule",
    "ServerConfig",
    "SettingSpec",
    "SubscribeRule",
    "TransformSpec",
    "UploadRule",
    "load_manifest",
    "parse_address",
    "parse_duration",
    "starter_manifest",
]
