"""Human durations (``"500ms"``, ``"2s"``, ``"1m30s"``) and fractions (``"50%"``).

Kept apart from the manifest loader so that the CLI and the scheduler can parse the
same syntax (e.g. a ``--every 5m`` option) without importing the whole loader.
"""

from __future__ import annotations

import json
import math
import re

__all__ = ["parse_duration", "parse_fraction"]

# Seconds per unit. Order matters: components must appear from the largest unit to
# the smallest, each at most once, so "1m30s" is valid but "30s1m" and "1s1s" are not.
_UNITS: dict[str, float] = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_COMPONENT = re.compile(r"(\d+(?:\.\d+)?)(ms|[dhms])")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")


_MAX_SHOWN = 60


def _show(value: object) -> str:
    """A short, one-line rendering of a bad value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # json.dumps escapes newlines and control characters: messages stay one line.
        shown = json.dumps(value, ensure_ascii=False)
        return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 2] + '..."'
    return repr(value)


def _bad_duration(text: object) -> ValueError:
    return ValueError(f'expected a duration like "2s", got {_show(text)}')


def parse_duration(text: str | int | float) -> float:
    """Seconds represented by ``text``.

    :param text: a number of seconds (``int``/``float`` >= 0) or a string made of
        ``<number><unit>`` components with units ``d``, ``h``, ``m``, ``s``, ``ms``, in
        that order and each at most once (``"500ms"``, ``"1.5s"``, ``"1h30m"``).
    :raises ValueError: the message reads ``expected a duration like "2s", got ...``
        (or says that the value is negative).
    """
    # bool is an int subclass; `settle = true` is a mistake, not one second.
    if isinstance(text, bool):
        raise _bad_duration(text)
    if isinstance(text, int | float):
        seconds = float(text)
        if not math.isfinite(seconds):
            raise _bad_duration(text)
        if seconds < 0:
            raise ValueError(f"a duration must not be negative, got {text!r}")
        return seconds
    if not isinstance(text, str):
        raise _bad_duration(text)
    return _parse_duration_string(text)


def _parse_duration_string(text: str) -> float:
    position = 0
    total = 0.0
    previous_rank = -1
    ranks = list(_UNITS)
    while position < len(text):
        match = _COMPONENT.match(text, position)
        if match is None:
            raise _bad_duration(text)
        number, unit = match.groups()
        rank = ranks.index(unit)
        if rank <= previous_rank:
            raise _bad_duration(text)
        previous_rank = rank
        total += float(number) * _UNITS[unit]
        position = match.end()
    if position == 0:
        raise _bad_duration(text)
    return total


def parse_fraction(value: str | int | float) -> float:
    """A fraction in ``[0, 1]`` from a number or a percentage string like ``"50%"``.

    :raises ValueError: the message says what was expected and shows the value.
    """
    expected = 'expected a fraction between 0 and 1 or a percentage like "50%"'
    if isinstance(value, bool):
        raise ValueError(f"{expected}, got {_show(value)}")
    if isinstance(value, int | float):
        fraction = float(value)
    elif isinstance(value, str):
        match = _PERCENT.fullmatch(value)
        if match is None:
            raise ValueError(f"{expected}, got {_show(value)}")
        fraction = float(match.group(1)) / 100.0
    else:
        raise ValueError(f"{expected}, got {_show(value)}")
    if not 0.0 <= fraction <= 1.0:  # also rejects NaN
        raise ValueError(f"{expected}, got {_show(value)}")
    return fraction
