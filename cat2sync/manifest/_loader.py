"""A manifest file to a :class:`Manifest`, table by table, failing on the first problem."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from ..errors import ManifestError
from ._checks import check_rules
from ._context import Context
from ._daemon import read_daemon
from ._lazyexpr import read_lazyexpr
from ._model import Manifest, SettingSpec
from ._plugins import read_plugins
from ._rules import read_subscribe, read_upload
from ._servers import read_servers
from ._values import one_line

_TOP_KEYS: Final = ("daemon", "server", "servers", "upload", "subscribe", "lazyexpr", "plugins")


def load_manifest(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    plugin_settings: Mapping[str, Mapping[str, SettingSpec]] | None = None,
    check_paths: bool = True,
) -> Manifest:
    """Read and validate a manifest.

    :param path: the manifest file; error messages name it exactly as given.
    :param env: variables for ``${VAR}`` interpolation (default: ``os.environ``).
    :param plugin_settings: plugin name -> accepted settings of every installed plugin;
        when given, ``[plugins.NAME]`` tables are validated and defaults filled in.
    :param check_paths: check that upload folders (and password/CA files) exist; turn
        off to lint a manifest on a machine other than the one it is meant for.
    :raises ManifestError: the only exception raised; its message is one line.
    """
    source = os.fspath(path)
    context = Context.of_file(
        source,
        env=os.environ if env is None else env,
        plugin_settings=plugin_settings,
        check_paths=check_paths,
    )
    try:
        return read_manifest(read_document(source), context)
    except ManifestError:
        raise
    except Exception as exc:  # a bug in here must still reach the user as one line
        message = one_line(f"cannot load ({type(exc).__name__}: {exc})")
        raise ManifestError(source, "", message) from exc


def read_document(source: str) -> dict[str, Any]:
    """The parsed TOML of the file ``source``."""
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise ManifestError(source, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        # utf-8-sig: tolerate the byte-order mark some Windows editors write.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            source, "", f"invalid TOML: not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(source, "", f"invalid TOML: {one_line(str(exc))}") from None


def read_manifest(document: Mapping[str, Any], context: Context) -> Manifest:
    top = context.top(document)
    top.check_keys(_TOP_KEYS)
    daemon = read_daemon(top.subtable("daemon") or top.inner({}, "daemon"), context)
    servers = read_servers(top, context)
    uploads = tuple(read_upload(table, context, servers) for table in top.array_of_tables("upload"))
    subscriptions = tuple(
        read_subscribe(table, context, servers) for table in top.array_of_tables("subscribe")
    )
    lazyexprs = tuple(read_lazyexpr(table, servers) for table in top.array_of_tables("lazyexpr"))
    check_rules(context, daemon.state_dir, uploads, subscriptions, lazyexprs)
    return Manifest(
        path=context.path,
        source=context.source,
        base_dir=context.base_dir,
        daemon=daemon,
        servers=MappingProxyType(servers),
        uploads=uploads,
        subscriptions=subscriptions,
        lazyexprs=lazyexprs,
        plugins=read_plugins(top.subtable("plugins"), context),
    )
