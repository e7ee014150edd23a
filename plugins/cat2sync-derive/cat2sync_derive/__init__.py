"""cat2sync-derive: keep templated lazy expressions up to date for matching datasets.

Each time an upload rule sends (or appends to) a dataset whose name matches a derive
rule, the daemon (re)computes that rule's expression on the server::

    [[plugins.derive.rules]]
    match = "run_*.b2nd"
    name = "{stem}_calibrated"
    expression = "(x - dark) * 0.5"
    operands = { dark = "{folder}/dark.b2nd" }
    path = "{folder}/derived/{stem}_calibrated.b2nd"

Template fields: ``{stem}`` (``run_007``), ``{name}`` (``run_007.b2nd``), ``{folder}``
(the dataset's remote folder, ``@shared/beamline``) and ``{rule}`` (the upload rule).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from cat2sync.errors import SettingError
from cat2sync.manifest import SettingSpec
from cat2sync.plugins import LazyExprRequest, hookimpl, read_settings

if TYPE_CHECKING:
    from cat2sync.manifest import Manifest, UploadRule

__all__ = [
    "FIELDS",
    "NAME",
    "SETTINGS",
    "DeriveRule",
    "parse_rules",
    "requests_for",
]

log = logging.getLogger(__name__)

#: The plugin's name: its entry point, ``[plugins.derive]`` and ``disable = ["derive"]``.
NAME: Final = "derive"
#: The fields a template may use.
FIELDS: Final = ("stem", "name", "folder", "rule")
_RULE_KEYS: Final = ("match", "name", "expression", "variable", "operands", "path")
_IDENTIFIER: Final = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_NAME: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")

SETTINGS: Final[Mapping[str, SettingSpec]] = {
    "rules": SettingSpec(
        type=list,
        default=[],
        description="derive rules: tables with match, name, expression, "
        "variable, operands and path",
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DeriveRule:
    """One validated entry of ``rules``; the templates are rendered by :meth:`request`."""

    index: int
    match: str
    name: str
    expression: str
    variable: str = "x"
    operands: Mapping[str, str] = field(default_factory=dict, hash=False)
    path: str | None = None

    def matches(self, remote_path: str) -> bool:
        return fnmatch.fnmatchcase(PurePosixPath(remote_path).name, self.match)

    def request(self, rule: str, remote_path: str) -> LazyExprRequest | None:
        """The lazy expression for one matching dataset, or None when it cannot be made
        (a warning is logged: such a name would fail on every upload)."""
        dataset = PurePosixPath(remote_path)
        fields = {
            "stem": dataset.stem,
            "name": dataset.name,
            "folder": str(dataset.parent),
            "rule": rule,
        }
        name = self.name.format_map(fields)
        path = self.path.format_map(fields) if self.path is not None else None
        operands = {var: tmpl.format_map(fields) for var, tmpl in self.operands.items()}
        where = f"plugins.{NAME}.rules[{self.index}]"
        if not _PLAIN_NAME.fullmatch(name):
            log.warning(
                "%s: skipped for %s: the name %r is not a plain dataset name "
                "(letters, digits, '_', '-', '.')",
                where,
                remote_path,
                name,
            )
            return None
        if path is not None and not path.endswith(".b2nd"):
            log.warning(
                "%s: skipped for %s: the path %r does not end in .b2nd", where, remote_path, path
            )
            return None
        for what, target in [("path", path), *operands.items()]:
            problem = _remote_problem(target)
            if problem is not None:
                log.warning(
                    "%s: skipped for %s: %s %r %s", where, remote_path, what, target, problem
                )
                return None
        destination = path if path is not None else f"@personal/{name}.b2nd"
        if destination == remote_path or destination in operands.values():
            log.warning(
                "%s: skipped for %s: the result would overwrite an operand (%s)",
                where,
                remote_path,
                destination,
            )
            return None
        return LazyExprRequest(
            name=name,
            expression=self.expression,
            operands=MappingProxyType({self.variable: remote_path, **operands}),
            path=path,
        )


def _remote_problem(path: str | None) -> str | None:
    if path is None:
        return None
    segments = path.split("/")
    if not path.startswith("@") or len(segments) < 2 or any(s in ("", ".", "..") for s in segments):
        return 'is not a remote path like "@shared/folder/data.b2nd"'
    return None


# -- validation ---------------------------------------------------------------------------


def _template(value: object, key: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SettingError(NAME, key, f"expected a non-empty string, got {value!r}")
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise SettingError(
            NAME, key, f"bad template {value!r}: {exc} (write {{{{ and }}}} for literal braces)"
        ) from None
    for _, field_name, _, _ in parsed:
        if field_name is not None and field_name not in FIELDS:
            shown = "{" + field_name + "}" if field_name else "{}"
            raise SettingError(
                NAME,
                key,
                f"unknown template field {shown} (expected "
                + ", ".join("{" + f + "}" for f in FIELDS)
                + ")",
            )
    return value


def _remote_template(value: object, key: str, *, required: bool = True) -> str | None:
    text = _template(value, key, required=required)
    if text is not None and not (text.startswith("@") or text.startswith("{folder}")):
        raise SettingError(
            NAME,
            key,
            'expected a remote path starting with a root like "@shared/"'
            f" or with {{folder}}, got {text!r}",
        )
    return text


def _identifier(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.isidentifier() or not value.isascii():
        raise SettingError(NAME, key, f"expected a variable name like x or raw_1, got {value!r}")
    return value


def _one_rule(index: int, table: object) -> DeriveRule:
    prefix = f"rules[{index}]"
    if not isinstance(table, dict):
        raise SettingError(NAME, prefix, f"expected a table, got {table!r}")
    for key in table:
        if key not in _RULE_KEYS:
            raise SettingError(
                NAME,
                f"{prefix}.{key}",
                "unknown key (expected one of: " + ", ".join(sorted(_RULE_KEYS)) + ")",
            )
    for key in ("match", "name", "expression"):
        if key not in table:
            raise SettingError(NAME, f"{prefix}.{key}", "missing required key")
    match = table["match"]
    if not isinstance(match, str) or not match.strip() or "/" in match:
        raise SettingError(
            NAME,
            f"{prefix}.match",
            f'expected a glob on the dataset\'s name like "run_*.b2nd" (no "/"), got {match!r}',
        )
    name = _template(table["name"], f"{prefix}.name")
    assert name is not None
    if "/" in name or "{folder}" in name:
        raise SettingError(
            NAME,
            f"{prefix}.name",
            'expected a dataset name, without "/" or {folder} (use path to choose the folder)',
        )
    expression = table["expression"]
    if not isinstance(expression, str) or not expression.strip():
        raise SettingError(
            NAME, f"{prefix}.expression", f"expected a non-empty string, got {expression!r}"
        )
    used = set(_IDENTIFIER.findall(expression))
    variable = _identifier(table.get("variable", "x"), f"{prefix}.variable")
    if variable not in used:
        raise SettingError(
            NAME,
            f"{prefix}.variable",
            f"{variable} (the matched dataset) is not used in the expression",
        )
    raw_operands = table.get("operands", {})
    if not isinstance(raw_operands, dict):
        raise SettingError(NAME, f"{prefix}.operands", f"expected a table, got {raw_operands!r}")
    operands: dict[str, str] = {}
    for var, target in raw_operands.items():
        key = f"{prefix}.operands.{var}"
        _identifier(var, key)
        if var == variable:
            raise SettingError(NAME, key, f"{var} is the matched dataset's variable already")
        if var not in used:
            raise SettingError(NAME, key, "not used in the expression")
        text = _remote_template(target, key)
        assert text is not None
        operands[var] = text
    path = _remote_template(table.get("path"), f"{prefix}.path", required=False)
    if path is not None and not path.endswith((".b2nd", "}")):  # "{folder}/{name}" is fine
        raise SettingError(
            NAME, f"{prefix}.path", f'expected a path ending in ".b2nd", got {path!r}'
        )
    return DeriveRule(
        index=index,
        match=match,
        name=name,
        expression=expression,
        variable=variable,
        operands=MappingProxyType(operands),
        path=path,
    )


def parse_rules(value: object) -> tuple[DeriveRule, ...]:
    """Validate the ``rules`` setting. :raises SettingError: naming the key."""
    if not isinstance(value, list):
        raise SettingError(NAME, "rules", f"expected an array of tables, got {value!r}")
    return tuple(_one_rule(index, table) for index, table in enumerate(value))


# -- state and hooks ----------------------------------------------------------------------

# Replaced whole by cat2sync_configure: hooks in worker threads see one consistent tuple.
_rules: tuple[DeriveRule, ...] = ()


def current_rules() -> tuple[DeriveRule, ...]:
    return _rules


def requests_for(
    rules: tuple[DeriveRule, ...],
    rule: str,
    remote_path: str,
) -> list[LazyExprRequest]:
    """The requests of every matching rule, in order."""
    requests = []
    for derive in rules:
        if derive.matches(remote_path):
            request = derive.request(rule, remote_path)
            if request is not None:
                requests.append(request)
    return requests


@hookimpl
def cat2sync_declare_settings(
    declare: Callable[[str, Mapping[str, SettingSpec]], None],
) -> None:
    declare(NAME, SETTINGS)


@hookimpl
def cat2sync_configure(manifest: Manifest) -> None:
    global _rules
    _rules = read_settings(manifest, NAME, lambda table: parse_rules(table.get("rules", [])))


@hookimpl
def cat2sync_lazyexprs(
    rule: UploadRule,
    remote_path: str,
    info: Mapping[str, Any],
) -> list[LazyExprRequest] | None:
    return requests_for(_rules, rule.name, remote_path) or None
