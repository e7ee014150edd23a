"""The ``[daemon]`` table."""

from __future__ import annotations

from typing import Final

from ._context import Context
from ._model import LOG_FORMATS, LOG_LEVELS, MISSING, STATE_DIR_NAME, DaemonConfig, HttpAddress
from ._section import Section, keys_of
from ._values import parse_address

_KEYS: Final = keys_of(DaemonConfig)


def read_daemon(section: Section, context: Context) -> DaemonConfig:
    section.check_keys(_KEYS)
    state_text = section.string("state_dir")
    return DaemonConfig(
        state_dir=(
            context.resolve(section, "state_dir", state_text)
            if state_text is not None
            else context.base_dir / STATE_DIR_NAME
        ),
        log_format=section.choice("log_format", LOG_FORMATS, "text"),
        log_level=section.choice("log_level", LOG_LEVELS, "info"),
        rescan=section.duration("rescan", 600.0, positive=True),
        retry_max=section.duration("retry_max", 300.0, positive=True),
        http=_http(section),
    )


def _http(section: Section) -> HttpAddress | None:
    """Where ``cat2sync run`` serves its status page; None (absent) for nowhere."""
    value = section.raw("http")
    if value is MISSING:
        return None
    try:
        return HttpAddress(*parse_address(value))
    except ValueError as exc:
        raise section.fail("http", str(exc)) from None
