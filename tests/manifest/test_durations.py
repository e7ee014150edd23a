"""Durations and their syntax (``cat2sync.durations``)."""

from __future__ import annotations

import pytest

from cat2sync.manifest import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (0, 0.0),
        (2, 2.0),
        (1.5, 1.5),
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1m30s", 90.0),
        ("1h2m3s4ms", 3723.004),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["soon", "", "2", "5 m", "1s1m", "1s1s", "1.s", ".5s", "ms", "1x", "2s ", "-1s"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r'^expected a duration like "2s", got '):
        parse_duration(text)


def test_parse_duration_rejects_negative_bool_and_nan() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(-1)
    with pytest.raises(ValueError, match="got true"):
        parse_duration(True)
    with pytest.raises(ValueError, match="got nan"):
        parse_duration(float("nan"))
