"""Checks across rules: overlapping folders, the state folder, duplicate names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.manifest import LAZYEXPR, SUBSCRIBE, UPLOAD, expect_error


@pytest.mark.parametrize(
    ("text", "key", "relation"),
    [
        (
            UPLOAD + '[[subscribe]]\nroot = "@public/x"\nlocal = "acquisition/sub"\n',
            "subscribe[0].local",
            "overlaps upload[0].local ({a} contains {a}/sub)",
        ),
        (
            UPLOAD + '[[subscribe]]\nroot = "@public/x"\nlocal = "./acquisition"\n',
            "subscribe[0].local",
            "overlaps upload[0].local (both are {a})",
        ),
        (
            '[[upload]]\nlocal = "acquisition/inner"\nremote = "@public/a"\n' + UPLOAD,
            "upload[1].local",
            "overlaps upload[0].local ({a} contains {a}/inner)",
        ),
    ],
)
def test_overlapping_local_folders(workdir: Path, text: str, key: str, relation: str) -> None:
    (workdir / "acquisition" / "inner").mkdir()
    expect_error(text, key, relation.format(a=workdir.resolve() / "acquisition"))


def test_state_dir_must_not_be_synced(workdir: Path) -> None:
    base = workdir.resolve()
    expect_error(
        '[[upload]]\nlocal = "."\nremote = "@public"\n',
        "daemon.state_dir",
        f"{base / '.cat2sync'} lies inside upload[0].local ({base}); move it elsewhere",
    )
    expect_error(
        '[daemon]\nstate_dir = "acquisition/state"\n' + UPLOAD,
        "daemon.state_dir",
        f"{base / 'acquisition' / 'state'} lies inside upload[0].local "
        f"({base / 'acquisition'}); move it elsewhere",
    )
    expect_error(
        '[daemon]\nstate_dir = "mirror"\n[[subscribe]]\nroot = "@public"\nlocal = "mirror/x"\n',
        "subscribe[0].local",
        f"lies inside daemon.state_dir ({base / 'mirror'})",
    )


ERRORS = [
    (
        UPLOAD + 'name = "a"\n' + SUBSCRIBE + 'name = "a"\n',
        "subscribe[0].name",
        'duplicate rule name "a" (also used by upload[0]); set a distinct name',
    ),
    (
        SUBSCRIBE + SUBSCRIBE.replace('"mirror"', '"mirror2"'),
        "subscribe[1].name",
        'duplicate rule name "subscribe:@public/x" (also used by subscribe[0]); '
        "set a distinct name",
    ),
    (
        UPLOAD + 'name = "c"\n' + LAZYEXPR,
        "lazyexpr[0].name",
        'duplicate rule name "c" (also used by upload[0]); set a distinct name',
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), ERRORS)
def test_one_line_errors(workdir: Path, text: str, key: str, message: str) -> None:
    expect_error(text, key, message)
