"""The ``[[upload]]`` tables (and what every rule reads alike)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.manifest import REMOTE_EXPECTED, UPLOAD, expect_error, load

UPLOAD_KEYS = (
    "append, concurrency, convert, delete, delete_local_after, exclude, follow_symlinks, "
    "include, local, max_delete, name, on_conflict, remote, server, settle, transforms"
)


def test_trust_keys_and_their_defaults(workdir: Path) -> None:
    rule = load(UPLOAD).uploads[0]
    assert (rule.convert, rule.on_conflict, rule.delete_local_after) == ((), "keep-both", None)
    text = 'convert = [".CSV", ".tif"]\non_conflict = "Skip"\ndelete_local_after = "7d"\n'
    rule = load(UPLOAD + text).uploads[0]
    assert (rule.convert, rule.on_conflict, rule.delete_local_after) == (
        (".csv", ".tif"),
        "skip",
        7 * 86400.0,
    )


def test_numbers_are_accepted_for_durations_and_fractions(workdir: Path) -> None:
    rule = load(UPLOAD + "settle = 0\nmax_delete = 1\n").uploads[0]
    assert (rule.settle, rule.max_delete) == (0.0, 1.0)


def test_missing_and_wrong_kind_of_local_folder(workdir: Path) -> None:
    base = workdir.resolve()
    expect_error(
        '[[upload]]\nlocal = "nope"\nremote = "@public"\n',
        "upload[0].local",
        f"folder does not exist: {base / 'nope'}",
    )
    (workdir / "file.txt").write_text("x")
    expect_error(
        '[[upload]]\nlocal = "file.txt"\nremote = "@public"\n',
        "upload[0].local",
        f"not a folder: {base / 'file.txt'}",
    )
    expect_error(
        '[[subscribe]]\nroot = "@public"\nlocal = "file.txt"\n',
        "subscribe[0].local",
        f"not a folder: {base / 'file.txt'}",
    )


ERRORS = [
    # unknown keys
    (UPLOAD + 'setle = "2s"\n', "upload[0].setle", f"unknown key (expected one of: {UPLOAD_KEYS})"),
    (
        UPLOAD + '"odd key" = 1\n',
        'upload[0]."odd key"',
        f"unknown key (expected one of: {UPLOAD_KEYS})",
    ),
    # types
    (UPLOAD + 'settle = "soon"\n', "upload[0].settle", 'expected a duration like "2s", got "soon"'),
    (UPLOAD + "settle = true\n", "upload[0].settle", 'expected a duration like "2s", got true'),
    (UPLOAD + "settle = [1]\n", "upload[0].settle", 'expected a duration like "2s", got an array'),
    (UPLOAD + 'append = "yes"\n', "upload[0].append", 'expected a boolean, got "yes"'),
    (UPLOAD + "delete = 1\n", "upload[0].delete", "expected a boolean, got 1"),
    (UPLOAD + "concurrency = true\n", "upload[0].concurrency", "expected an integer, got true"),
    (UPLOAD + "concurrency = 2.0\n", "upload[0].concurrency", "expected an integer, got 2.0"),
    (UPLOAD + "concurrency = 0\n", "upload[0].concurrency", "must be between 1 and 64, got 0"),
    (UPLOAD + "concurrency = 65\n", "upload[0].concurrency", "must be between 1 and 64, got 65"),
    (
        UPLOAD + "max_delete = 1.5\n",
        "upload[0].max_delete",
        'expected a fraction between 0 and 1 or a percentage like "50%", got 1.5',
    ),
    (
        UPLOAD + 'max_delete = "150%"\n',
        "upload[0].max_delete",
        'expected a fraction between 0 and 1 or a percentage like "50%", got "150%"',
    ),
    (
        UPLOAD + 'max_delete = "half"\n',
        "upload[0].max_delete",
        'expected a fraction between 0 and 1 or a percentage like "50%", got "half"',
    ),
    (
        UPLOAD + 'include = "**/*.h5"\n',
        "upload[0].include",
        'expected an array of strings, got "**/*.h5"',
    ),
    (UPLOAD + "include = []\n", "upload[0].include", "must not be empty"),
    (UPLOAD + 'exclude = ["*.tmp", ""]\n', "upload[0].exclude[1]", "must not be empty"),
    (UPLOAD + "exclude = [1]\n", "upload[0].exclude[0]", "expected a string, got 1"),
    (UPLOAD + 'name = ""\n', "upload[0].name", "must not be empty"),
    ("upload = 3\n", "upload", "expected an array of tables ([[upload]]), got 3"),
    (
        '[upload]\nlocal = "acquisition"\n',
        "upload",
        "expected an array of tables ([[upload]]), got a table",
    ),
    ("upload = [1]\n", "upload[0]", "expected a table, got 1"),
    # conversions, conflicts, freeing local space
    (
        UPLOAD + 'convert = ".csv"\n',
        "upload[0].convert",
        'expected an array of strings, got ".csv"',
    ),
    (
        UPLOAD + 'convert = ["csv"]\n',
        "upload[0].convert[0]",
        'expected a suffix like ".csv", got "csv"',
    ),
    (
        UPLOAD + 'convert = ["."]\n',
        "upload[0].convert[0]",
        'expected a suffix like ".csv", got "."',
    ),
    (
        UPLOAD + 'convert = [".a/b"]\n',
        "upload[0].convert[0]",
        'expected a suffix like ".csv", got ".a/b"',
    ),
    (UPLOAD + 'convert = [".csv", ".CSV"]\n', "upload[0].convert[1]", '".CSV" is listed twice'),
    (
        UPLOAD + 'on_conflict = "rename"\n',
        "upload[0].on_conflict",
        'expected one of "keep-both", "overwrite", "skip", got "rename"',
    ),
    (
        UPLOAD + 'delete_local_after = "soon"\n',
        "upload[0].delete_local_after",
        'expected a duration like "2s", got "soon"',
    ),
    (
        UPLOAD + "delete_local_after = 0\n",
        "upload[0].delete_local_after",
        "must be greater than 0, got 0",
    ),
    # transforms
    (
        UPLOAD + 'transforms = "float32"\n',
        "upload[0].transforms",
        'expected an array of transforms, got "float32"',
    ),
    (
        UPLOAD + "transforms = [{factor = 1}]\n",
        "upload[0].transforms[0].name",
        "missing required key",
    ),
    (UPLOAD + 'transforms = [""]\n', "upload[0].transforms[0]", "must not be empty"),
    (
        UPLOAD + "transforms = [3]\n",
        "upload[0].transforms[0]",
        'expected a transform name or a table like {name = "scale"}, got 3',
    ),
    # remote paths
    ('[[upload]]\nlocal = "acquisition"\n', "upload[0].remote", "missing required key"),
    ('[[upload]]\nremote = "@public"\n', "upload[0].local", "missing required key"),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "personal/x"\n',
        "upload[0].remote",
        f'{REMOTE_EXPECTED} starting with a root (@public, @personal, @shared), got "personal/x"',
    ),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "@personal/../x"\n',
        "upload[0].remote",
        f"{REMOTE_EXPECTED} (no empty, '.' or '..' segments), got \"@personal/../x\"",
    ),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "@personal/./x"\n',
        "upload[0].remote",
        f"{REMOTE_EXPECTED} (no empty, '.' or '..' segments), got \"@personal/./x\"",
    ),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "@personal//x"\n',
        "upload[0].remote",
        f"{REMOTE_EXPECTED} (no empty, '.' or '..' segments), got \"@personal//x\"",
    ),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "@personal/x/"\n',
        "upload[0].remote",
        f"{REMOTE_EXPECTED} (no empty, '.' or '..' segments), got \"@personal/x/\"",
    ),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "/@personal/x"\n',
        "upload[0].remote",
        f"{REMOTE_EXPECTED} (no leading '/'), got \"/@personal/x\"",
    ),
    (
        "[[upload]]\nlocal = \"acquisition\"\nremote = '@personal\\x'\n",
        "upload[0].remote",
        f"{REMOTE_EXPECTED} with '/' separators, got \"@personal\\\\x\"",
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), ERRORS)
def test_one_line_errors(workdir: Path, text: str, key: str, message: str) -> None:
    expect_error(text, key, message)
