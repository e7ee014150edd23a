"""``cat2sync init``: the text of a minimal valid manifest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tomli_w

from ._values import remote_path_problem, show, url_problem


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
        checks.append((f"server {show(server)}", url_problem(server)))
    if username is not None and not username.strip():
        checks.append(("username", "must not be empty"))
    for local, remote in uploads:
        checks.append((f"upload {show(local)}", None if local.strip() else "empty local folder"))
        checks.append((f"upload {show(local)}", remote_path_problem(remote)))
    for remote, local in subscriptions:
        checks.append((f"subscribe {show(remote)}", remote_path_problem(remote)))
        checks.append(
            (f"subscribe {show(remote)}", None if local.strip() else "empty local folder")
        )
    for what, problem in checks:
        if problem is not None:
            raise ValueError(f"{what}: {problem}")
