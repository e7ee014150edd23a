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
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

from ..durations import parse_duration
from ..errors import ManifestError
from ._loader import _Loader
from ._model import (
    REQUIRED,
    DaemonConfig,
    LazyExprRule,
    Manifest,
    PluginsConfig,
    Rule,
    ServerConfig,
    SettingSpec,
    SubscribeRule,
    TransformSpec,
    UploadRule,
)
from ._values import _one_line, _remote_path_problem, _show, _url_problem

__all__ = [
    "REQUIRED",
    "DaemonConfig",
    "LazyExprRule",
    "Manifest",
    "PluginsConfig",
    "Rule",
    "ServerConfig",
    "SettingSpec",
    "SubscribeRule",
    "TransformSpec",
    "UploadRule",
    "load_manifest",
    "parse_duration",
    "starter_manifest",
]


# --------------------------------------------------------------------------- entry points


def _read_document(source: str) -> dict[str, Any]:
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
        raise ManifestError(source, "", f"invalid TOML: {_one_line(str(exc))}") from None


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
    loader = _Loader(
        source,
        env=os.environ if env is None else env,
        plugin_settings=plugin_settings,
        check_paths=check_paths,
    )
    try:
        return loader.load(_read_document(source))
    except ManifestError:
        raise
    except Exception as exc:  # a bug in here must still reach the user as one line
        message = _one_line(f"cannot load ({type(exc).__name__}: {exc})")
        raise ManifestError(source, "", message) from exc


def starter_manifest(
    *,
    server: str | None,
    username: str | None,
    uploads: Sequence[tuple[str, str]],
    subscriptions: Sequence[tuple[str, str]],
) -> str:
    """TOML text of a minimal valid manifest, for ``cat2sync init``.

    :param server: server URL; None or ``"embedded"`` for the embedded local server.
    :param username: login; the password is then read from ``$CAT2_PASSWORD``.
    :param uploads: ``(local folder, remote folder)`` pairs.
    :param subscriptions: ``(remote folder, local folder)`` pairs (data flows left to right).
    :raises ValueError: an argument would make an invalid manifest.
    """
    _check_starter_arguments(server, username, uploads, subscriptions)
    server_table: dict[str, Any] = {"url": _escape_interpolation(server or "embedded")}
    if username is not None:
        server_table["username"] = _escape_interpolation(username)
        server_table["password"] = "${CAT2_PASSWORD}"
    lines = [
        "# cat2sync manifest, written by `cat2sync init`.",
        "# Every key is described in docs/manifest.md.",
    ]
    if username is not None:
        lines.append("# The password is read from the CAT2_PASSWORD environment variable")
        lines.append('# (or replace it with password_file = "path/to/file").')
    sections = [_toml_section("[server]", server_table)]
    sections += [
        _toml_section("[[upload]]", {"local": local, "remote": remote}) for local, remote in uploads
    ]
    sections += [
        _toml_section("[[subscribe]]", {"root": remote, "local": local, "every": "5m"})
        for remote, local in subscriptions
    ]
    return "\n".join(lines) + "\n\n" + "\n".join(sections)


def _toml_section(header: str, table: Mapping[str, Any]) -> str:
    # tomli_w writes short arrays of tables inline; operators expect [[upload]] blocks,
    # so each block is written separately (tomli_w still quotes every value).
    return f"{header}\n{tomli_w.dumps(dict(table))}"


def _escape_interpolation(text: str) -> str:
    # A literal "${" typed at `cat2sync init` must not turn into a variable reference.
    return text.replace("${", "$${")


def _check_starter_arguments(
    server: str | None,
    username: str | None,
    uploads: Sequence[tuple[str, str]],
    subscriptions: Sequence[tuple[str, str]],
) -> None:
    checks: list[tuple[str, str | None]] = []
    if server is not None and server != "embedded":
        checks.append((f"server {_show(server)}", _url_problem(server)))
    if username is not None and not username.strip():
        checks.append(("username", "must not be empty"))
    for local, remote in uploads:
        checks.append((f"upload {_show(local)}", None if local.strip() else "empty local folder"))
        checks.append((f"upload {_show(local)}", _remote_path_problem(remote)))
    for remote, local in subscriptions:
        checks.append((f"subscribe {_show(remote)}", _remote_path_problem(remote)))
        checks.append(
            (f"subscribe {_show(remote)}", None if local.strip() else "empty local folder")
        )
    for what, problem in checks:
        if problem is not None:
            raise ValueError(f"{what}: {problem}")
