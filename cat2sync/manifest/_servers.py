"""The ``[server]`` table, or the ``[servers.NAME]`` tables."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from ._context import Context
from ._model import DEFAULT_SERVER, MISSING, ServerConfig
from ._section import Section, keys_of
from ._values import safe_name_problem, show, url_problem

# A server's name is the name of its table, not a key.
_KEYS: Final = keys_of(ServerConfig, but=("name",))


def read_servers(top: Section, context: Context) -> dict[str, ServerConfig]:
    """Servers by name; the embedded one as ``default`` when none is configured."""
    if top.has("server") and top.has("servers"):
        raise top.fail("servers", "cannot be combined with [server]; use [servers.default] instead")
    single = top.subtable("server")
    if single is not None:
        return {DEFAULT_SERVER: _read_server(single, DEFAULT_SERVER, context)}
    many = top.subtable("servers")
    if many is None:
        return {DEFAULT_SERVER: ServerConfig(name=DEFAULT_SERVER)}
    if not many.data:
        raise top.fail("servers", "no servers defined (add a [servers.NAME] table)")
    servers = {}
    for name in many.data:
        problem = safe_name_problem(name)
        if problem is not None:
            raise many.fail(name, problem)
        table = many.subtable(name)
        assert table is not None  # the key exists
        servers[name] = _read_server(table, name, context)
    return servers


def _read_server(as_written: Section, name: str, context: Context) -> ServerConfig:
    as_written.check_keys(_KEYS)
    section = context.interpolated(as_written)
    url = _url(section, as_written)
    username = section.string("username")
    _check_credentials_pair(section, username)
    password, password_file = _password(section, context)
    return ServerConfig(
        name=name,
        url=url,
        username=username,
        password=password,
        password_file=password_file,
        timeout=section.duration("timeout", 30.0, positive=True),
        verify=_verify(section, context),
    )


def _url(section: Section, as_written: Section) -> str | None:
    """The server's URL; None for ``"embedded"`` (the default)."""
    url = section.string("url")
    if url is None or url == "embedded":
        return None
    problem = url_problem(url, as_written=as_written.data["url"])
    if problem is not None:
        raise section.fail("url", problem)
    return url


def _check_credentials_pair(section: Section, username: str | None) -> None:
    # Checked before the password is read: a missing file is a lesser problem than
    # a password that could never be used.
    if section.has("password") and section.has("password_file"):
        raise section.fail("password_file", "give either password or password_file, not both")
    has_password = section.has("password") or section.has("password_file")
    if username is not None and not has_password:
        raise section.fail("username", "needs a password or password_file")
    if username is None and has_password:
        which = "password" if section.has("password") else "password_file"
        raise section.fail(which, "needs a username")


def _password(section: Section, context: Context) -> tuple[str | None, Path | None]:
    """The password, and the file it was read from (if it was)."""
    password = section.string("password", secret=True)
    if password is not None:
        return password, None
    file_text = section.string("password_file")
    if file_text is None:
        return None, None
    password_file = context.resolve(section, "password_file", file_text)
    try:
        content = password_file.read_text(encoding="utf-8")
    except OSError as exc:
        if not context.check_paths:
            return None, password_file  # linting elsewhere: the file lives on the lab PC
        reason = exc.strerror or type(exc).__name__
        raise section.fail("password_file", f"cannot read {password_file}: {reason}") from None
    except UnicodeDecodeError:
        raise section.fail("password_file", f"not UTF-8 text: {password_file}") from None
    password = content.rstrip("\r\n")
    if not password:
        raise section.fail("password_file", f"file is empty: {password_file}")
    return password, password_file


def _verify(section: Section, context: Context) -> bool | str:
    """``verify``: true, false, or the resolved path of a CA bundle."""
    value = section.raw("verify")
    if value is MISSING:
        return True
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise section.fail(
            "verify", f"expected true, false or a CA bundle file path, got {show(value)}"
        )
    text = section.required_string("verify")
    bundle = context.resolve(section, "verify", text)
    if context.check_paths and not bundle.is_file():
        raise section.fail("verify", f"CA bundle file not found: {bundle}")
    return str(bundle)
