"""The ``[[lazyexpr]]`` tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.manifest import LAZYEXPR, REMOTE_EXPECTED, expect_error

ERRORS = [
    ('[[lazyexpr]]\nexpression = "a"\n', "lazyexpr[0].name", "missing required key"),
    (
        '[[lazyexpr]]\nname = "a/b"\n',
        "lazyexpr[0].name",
        "expected a plain name (letters, digits, '_', '-', '.'; no '/' or '..'), got \"a/b\"",
    ),
    (
        '[[lazyexpr]]\nname = "a..b"\n',
        "lazyexpr[0].name",
        "expected a plain name (letters, digits, '_', '-', '.'; no '/' or '..'), got \"a..b\"",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "  "\n',
        "lazyexpr[0].expression",
        "must not be empty",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "a"\n',
        "lazyexpr[0].operands",
        "missing required key",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "a"\noperands = {}\n',
        "lazyexpr[0].operands",
        "must not be empty",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "a + 1"\n'
        'operands = {a = "@p/a.b2nd", x = "@p/x.b2nd"}\n',
        "lazyexpr[0].operands.x",
        "not used in the expression",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "xa + 1"\noperands = {a = "@p/a.b2nd"}\n',
        "lazyexpr[0].operands.a",
        "not used in the expression",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "a"\noperands = {a = "p/a.b2nd"}\n',
        "lazyexpr[0].operands.a",
        f'{REMOTE_EXPECTED} starting with a root (@public, @personal, @shared), got "p/a.b2nd"',
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "a"\noperands = {a = "@public"}\n',
        "lazyexpr[0].operands.a",
        'expected a remote path below a root like "@public/name", got "@public"',
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "1"\noperands = {1x = "@p/a.b2nd"}\n',
        "lazyexpr[0].operands.1x",
        "operand names must be identifiers like raw or dark_1",
    ),
    (
        LAZYEXPR + 'path = "@personal/c.h5"\n',
        "lazyexpr[0].path",
        'expected a dataset path ending in ".b2nd", got "@personal/c.h5"',
    ),
    (
        LAZYEXPR + 'refresh = "sometimes"\n',
        "lazyexpr[0].refresh",
        'expected one of "on-change", "every", got "sometimes"',
    ),
    (
        LAZYEXPR + 'refresh = "every"\n',
        "lazyexpr[0].every",
        'missing required key (refresh = "every" needs it)',
    ),
    (
        LAZYEXPR + 'refresh = "on-change"\nevery = "1m"\n',
        "lazyexpr[0].every",
        'cannot be combined with refresh = "on-change"',
    ),
    (
        LAZYEXPR + 'every = "later"\n',
        "lazyexpr[0].every",
        'expected a duration like "2s", got "later"',
    ),
    (
        LAZYEXPR + 'server = "lab"\n',
        "lazyexpr[0].server",
        'no server named "lab" (defined: default)',
    ),
    (
        LAZYEXPR + LAZYEXPR.replace('"c"', '"d"') + 'path = "@personal/c.b2nd"\n',
        "lazyexpr[1].path",
        "@personal/c.b2nd is already written by lazyexpr[0]",
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), ERRORS)
def test_one_line_errors(workdir: Path, text: str, key: str, message: str) -> None:
    expect_error(text, key, message)
