"""The ``[[lazyexpr]]`` tables."""

from __future__ import annotations

import re
from collections.abc import Collection
from types import MappingProxyType
from typing import Final

from ._model import REFRESH_MODES, LazyExprRule, RefreshMode
from ._rules import remote_path, rule_server
from ._section import Section, keys_of
from ._values import safe_name_problem, show

_KEYS: Final = keys_of(LazyExprRule)
_IDENTIFIER = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*")


def read_lazyexpr(section: Section, servers: Collection[str]) -> LazyExprRule:
    section.check_keys(_KEYS)
    name = section.required_string("name")
    problem = safe_name_problem(name)
    if problem is not None:
        raise section.fail("name", problem)
    expression = section.required_string("expression")
    operands = _operands(section, expression)
    server = rule_server(section, servers)
    path = _dataset_path(section)
    refresh, every = _refresh(section)
    return LazyExprRule(
        name=name,
        expression=expression,
        operands=MappingProxyType(operands),
        server=server,
        path=path,
        refresh=refresh,
        every=every,
    )


def _operands(section: Section, expression: str) -> dict[str, str]:
    """Variable -> dataset path; every variable must appear in the expression."""
    table = section.subtable("operands")
    if table is None:
        raise section.fail("operands", "missing required key")
    if not table.data:
        raise section.fail("operands", "must not be empty")
    used = set(_IDENTIFIER.findall(expression))
    operands = {}
    for variable in table.data:
        if not variable.isidentifier() or not variable.isascii():
            raise table.fail(variable, "operand names must be identifiers like raw or dark_1")
        operands[variable] = remote_path(table, variable, min_segments=2)
        if variable not in used:
            raise table.fail(variable, "not used in the expression")
    return operands


def _dataset_path(section: Section) -> str | None:
    """``path``: where the expression is stored, a ``.b2nd`` dataset (None: the default)."""
    if not section.has("path"):
        return None
    path = remote_path(section, "path", min_segments=2)
    if not path.endswith(".b2nd"):
        raise section.fail("path", f'expected a dataset path ending in ".b2nd", got {show(path)}')
    return path


def _refresh(section: Section) -> tuple[RefreshMode, float | None]:
    """``(refresh, every)``: ``every`` is set exactly when refresh is "every"."""
    implied: RefreshMode = "every" if section.has("every") else "on-change"
    mode = section.choice("refresh", REFRESH_MODES, implied)
    every = section.optional_duration("every", positive=True)
    if mode == "on-change":
        if every is not None:
            raise section.fail("every", 'cannot be combined with refresh = "on-change"')
        return "on-change", None
    if every is None:
        raise section.fail("every", 'missing required key (refresh = "every" needs it)')
    return "every", every
