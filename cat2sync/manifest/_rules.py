"""The ``[[upload]]`` and ``[[subscribe]]`` tables, and the keys every rule reads alike."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Collection
from pathlib import Path
from types import MappingProxyType
from typing import Final

from apscheduler.triggers.cron import CronTrigger

from ._context import Context
from ._model import (
    DEFAULT_INCLUDE,
    DEFAULT_SERVER,
    DEFAULT_SUBSCRIBE_EVERY,
    MAX_CONCURRENCY,
    MISSING,
    ON_CONFLICT,
    SubscribeRule,
    TransformSpec,
    UploadRule,
)
from ._section import Section, keys_of
from ._values import one_line, remote_path_problem, show

_UPLOAD_KEYS: Final = keys_of(UploadRule)
# "root" is the name docs/manifest.md uses; "remote" matches [[upload]].
_SUBSCRIBE_KEYS: Final = keys_of(SubscribeRule, aliases=("root",))


def read_upload(section: Section, context: Context, servers: Collection[str]) -> UploadRule:
    section.check_keys(_UPLOAD_KEYS)
    local_text, local = _local_folder(section, context, must_exist=True)
    remote = remote_path(section, "remote")
    return UploadRule(
        name=_rule_name(section, f"upload:{local_text}"),
        local=local,
        remote=remote,
        server=rule_server(section, servers),
        include=section.string_list("include", DEFAULT_INCLUDE, allow_empty=False),
        exclude=section.string_list("exclude", (), allow_empty=True),
        settle=section.duration("settle", 2.0, positive=False),
        append=section.boolean("append", True),
        delete=section.boolean("delete", False),
        max_delete=section.fraction("max_delete", 0.5),
        follow_symlinks=section.boolean("follow_symlinks", False),
        concurrency=section.integer("concurrency", 4, 1, MAX_CONCURRENCY),
        transforms=_transforms(section),
        convert=_suffixes(section, "convert"),
        on_conflict=section.choice("on_conflict", ON_CONFLICT, "keep-both"),
        delete_local_after=section.optional_duration("delete_local_after", positive=True),
    )


def read_subscribe(section: Section, context: Context, servers: Collection[str]) -> SubscribeRule:
    section.check_keys(_SUBSCRIBE_KEYS)
    if section.has("root") and section.has("remote"):
        raise section.fail("remote", "give either root or remote (an alias), not both")
    remote = remote_path(section, "remote" if section.has("remote") else "root")
    _, local = _local_folder(section, context, must_exist=False)
    every, cron = _schedule(section)
    return SubscribeRule(
        name=_rule_name(section, f"subscribe:{remote}"),
        remote=remote,
        local=local,
        server=rule_server(section, servers),
        every=every,
        cron=cron,
        include=section.string_list("include", DEFAULT_INCLUDE, allow_empty=False),
        exclude=section.string_list("exclude", (), allow_empty=True),
        delete=section.boolean("delete", False),
        max_delete=section.fraction("max_delete", 0.5),
        concurrency=section.integer("concurrency", 8, 1, MAX_CONCURRENCY),
        transforms=_transforms(section),
        on_conflict=section.choice("on_conflict", ON_CONFLICT, "keep-both"),
    )


# -- keys of every rule (lazy expressions too)


def rule_server(section: Section, servers: Collection[str]) -> str:
    """The ``server`` key: the name of a configured server."""
    name = section.string("server") or DEFAULT_SERVER
    if name not in servers:
        defined = ", ".join(sorted(servers))
        raise section.fail("server", f'no server named "{name}" (defined: {defined})')
    return name


def remote_path(section: Section, name: str, *, min_segments: int = 1) -> str:
    """A required remote path like ``@personal/folder``."""
    text = section.required_string(name)
    problem = remote_path_problem(text, min_segments=min_segments)
    if problem is not None:
        raise section.fail(name, problem)
    return text


# -- keys of upload and subscribe rules


def _local_folder(section: Section, context: Context, *, must_exist: bool) -> tuple[str, Path]:
    """The ``local`` key: text as written and the resolved folder."""
    text = section.required_string("local")
    folder = context.resolve(section, "local", text)
    if context.check_paths:
        if must_exist and not folder.exists():
            raise section.fail("local", f"folder does not exist: {folder}")
        if folder.exists() and not folder.is_dir():
            raise section.fail("local", f"not a folder: {folder}")
    return text, folder


def _rule_name(section: Section, default: str) -> str:
    name = section.string("name")
    if name is None:
        return default
    if any(ord(char) < 0x20 for char in name):
        raise section.fail("name", f"must not contain control characters, got {show(name)}")
    return name


def _suffixes(section: Section, name: str) -> tuple[str, ...]:
    """File suffixes like ``".csv"``, in lower case (suffixes match in any case)."""
    out: list[str] = []
    for index, item in enumerate(section.string_list(name, (), allow_empty=True)):
        suffix = item.lower()
        if not suffix.startswith(".") or len(suffix) < 2 or "/" in suffix or " " in suffix:
            raise section.index_fail(
                name, index, f'expected a suffix like ".csv", got {show(item)}'
            )
        if suffix in out:
            raise section.index_fail(name, index, f"{show(item)} is listed twice")
        out.append(suffix)
    return tuple(out)


def _transforms(section: Section) -> tuple[TransformSpec, ...]:
    value = section.raw("transforms")
    if value is MISSING:
        return ()
    if not isinstance(value, list):
        raise section.fail("transforms", f"expected an array of transforms, got {show(value)}")
    return tuple(_transform(section, index, item) for index, item in enumerate(value))


def _transform(section: Section, index: int, item: object) -> TransformSpec:
    """``"float32"`` or ``{name = "scale", factor = 0.5}``; parameters are the plugin's."""
    if isinstance(item, str):
        if not item.strip():
            raise section.index_fail("transforms", index, "must not be empty")
        return TransformSpec(name=item)
    if not isinstance(item, dict):
        raise section.index_fail(
            "transforms",
            index,
            f'expected a transform name or a table like {{name = "scale"}}, got {show(item)}',
        )
    name = section.inner(item, f"{section.key('transforms')}[{index}]").required_string("name")
    params = {param: param_value for param, param_value in item.items() if param != "name"}
    return TransformSpec(name=name, params=MappingProxyType(params))


def _schedule(section: Section) -> tuple[float | None, str | None]:
    """``(every, cron)``: exactly one is set."""
    every = section.optional_duration("every", positive=True)
    cron = section.string("cron")
    if every is not None and cron is not None:
        raise section.fail("cron", "give either every or cron, not both")
    if cron is None:
        return (every if every is not None else DEFAULT_SUBSCRIBE_EVERY), None
    try:
        # A fixed timezone: validation must not depend on the host's tz database.
        CronTrigger.from_crontab(cron, timezone=_dt.UTC)
    except ValueError as exc:
        message = one_line(str(exc))
        raise section.fail(
            "cron", f'invalid crontab {show(cron)} (like "*/5 * * * *"): {message}'
        ) from None
    return None, cron
