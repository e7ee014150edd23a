"""Reading one TOML table: typed values with one-line errors naming the key path."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..durations import parse_duration, parse_fraction
from ..errors import ManifestError
from ._model import MISSING
from ._values import join_key, kind, one_line, show

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Choice = TypeVar("Choice", bound=str)


def keys_of(
    model: type[DataclassInstance], *, but: Sequence[str] = (), aliases: Sequence[str] = ()
) -> tuple[str, ...]:
    """The keys a table accepts: the fields of the dataclass it is read into.

    :param but: fields that are not keys (a server's name is its table's name).
    :param aliases: keys accepted besides the fields.
    """
    fields = [field.name for field in dataclasses.fields(model) if field.name not in but]
    return (*fields, *aliases)


@dataclass(frozen=True, slots=True)
class Section:
    """A TOML table being validated, with typed getters that fail with its key path.

    :param source: the manifest file as the user named it, for messages.
    :param prefix: the table's key path (``upload[0]``, ``servers.lab``; ``""`` at the top).
    """

    source: str
    data: Mapping[str, Any]
    prefix: str

    def key(self, name: str) -> str:
        return join_key(self.prefix, name)

    def fail(self, name: str, message: str) -> ManifestError:
        return ManifestError(self.source, self.key(name), message)

    def index_fail(self, name: str, index: int, message: str) -> ManifestError:
        return ManifestError(self.source, f"{self.key(name)}[{index}]", message)

    def check_keys(self, allowed: Sequence[str]) -> None:
        for name in self.data:
            if name not in allowed:
                expected = ", ".join(sorted(allowed))
                raise self.fail(name, f"unknown key (expected one of: {expected})")

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, *, required: bool = False) -> Any:
        if name in self.data:
            return self.data[name]
        if required:
            raise self.fail(name, "missing required key")
        return MISSING

    def string(self, name: str, *, required: bool = False, secret: bool = False) -> str | None:
        """A non-empty string, or None when absent and not required."""
        value = self.raw(name, required=required)
        if value is MISSING:
            return None
        if not isinstance(value, str):
            shown = kind(value) if secret else show(value)
            raise self.fail(name, f"expected a string, got {shown}")
        if not value.strip():
            raise self.fail(name, "must not be empty")
        return value

    def required_string(self, name: str) -> str:
        value = self.string(name, required=True)
        assert value is not None  # required=True never returns None
        return value

    def choice(self, name: str, choices: Sequence[Choice], default: Choice) -> Choice:
        """One of ``choices``, written in any case."""
        value = self.string(name)
        if value is None:
            return default
        for choice in choices:
            if value.lower() == choice:
                return choice
        expected = ", ".join(f'"{choice}"' for choice in choices)
        raise self.fail(name, f"expected one of {expected}, got {show(value)}")

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            raise self.fail(name, f"expected a boolean, got {show(value)}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name)
        if value is MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"expected an integer, got {show(value)}")
        if not low <= value <= high:
            raise self.fail(name, f"must be between {low} and {high}, got {value}")
        return value

    def duration(self, name: str, default: float, *, positive: bool) -> float:
        """Seconds; ``positive`` rejects 0 (intervals), else 0 is allowed (delays)."""
        seconds = self.optional_duration(name, positive=positive)
        return default if seconds is None else seconds

    def optional_duration(self, name: str, *, positive: bool) -> float | None:
        """Seconds, or None when absent."""
        value = self.raw(name)
        if value is MISSING:
            return None
        if not isinstance(value, str | int | float):
            raise self.fail(name, f'expected a duration like "2s", got {show(value)}')
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.fail(name, one_line(str(exc))) from None
        if positive and seconds <= 0:
            raise self.fail(name, f"must be greater than 0, got {show(value)}")
        return seconds

    def fraction(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is MISSING:
            return default
        if not isinstance(value, str | int | float):
            raise self.fail(
                name,
                f'expected a fraction between 0 and 1 or a percentage like "50%", '
                f"got {show(value)}",
            )
        try:
            return parse_fraction(value)
        except ValueError as exc:
            raise self.fail(name, one_line(str(exc))) from None

    def string_list(
        self, name: str, default: tuple[str, ...], *, allow_empty: bool
    ) -> tuple[str, ...]:
        value = self.raw(name)
        if value is MISSING:
            return default
        if not isinstance(value, list):
            raise self.fail(name, f"expected an array of strings, got {show(value)}")
        if not value and not allow_empty:
            raise self.fail(name, "must not be empty")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.index_fail(name, index, f"expected a string, got {show(item)}")
            if not item.strip():
                raise self.index_fail(name, index, "must not be empty")
        return tuple(value)

    def subtable(self, name: str) -> Section | None:
        """The table at ``name``, or None when absent."""
        value = self.raw(name)
        if value is MISSING:
            return None
        if not isinstance(value, dict):
            raise self.fail(name, f"expected a table, got {show(value)}")
        return self.inner(value, self.key(name))

    def array_of_tables(self, name: str) -> list[Section]:
        """The ``[[name]]`` tables, in order; none when absent."""
        value = self.raw(name)
        if value is MISSING:
            return []
        if not isinstance(value, list):
            raise self.fail(name, f"expected an array of tables ([[{name}]]), got {show(value)}")
        sections = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.index_fail(name, index, f"expected a table, got {show(item)}")
            sections.append(self.inner(item, f"{self.key(name)}[{index}]"))
        return sections

    def inner(self, data: Mapping[str, Any], prefix: str) -> Section:
        """A table of the same file at key path ``prefix``."""
        return Section(self.source, data, prefix)

    def with_data(self, data: Mapping[str, Any]) -> Section:
        """The same table with other values (``${VAR}`` expanded, say)."""
        return dataclasses.replace(self, data=data)
