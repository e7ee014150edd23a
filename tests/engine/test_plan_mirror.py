"""The mirror planner's decisions, table by table, with no server and no file system."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cat2sync.engine.plan import (
    MIRROR,
    Delete,
    Download,
    Extend,
    KeepChanged,
    LocalCopy,
    Unchanged,
    Unreadable,
    decide_deletion,
    decide_entry,
    deletion_refusal,
    plan_listing,
)
from cat2sync.records import Mirrored

ROOT = Path("/mirror")


def mirrored(name: str, *, etag: str = "e1", shape: tuple[int, ...] | None = (100, 4)) -> Mirrored:
    return Mirrored(
        rule="sub",
        remote_rel=name,
        etag=etag,
        mtime=None,
        shape=shape,
        nchunks=10,
        size=1000,
        mtime_ns=5,
    )


def safe(*names: str) -> dict[str, tuple[str, Path] | str]:
    """Targets for names the march found safe (the clean name is the name itself)."""
    return {n: (n, ROOT / n) for n in names}


def plan(listing: list[str], targets: dict[str, Any], recs: list[Mirrored], **kw: Any) -> Any:
    return plan_listing(
        listing=listing, targets=targets, records={r.remote_rel: r for r in recs}, **kw
    )


def test_a_new_dataset_is_fetched_whole_the_rest_asked_for_info() -> None:
    got = plan(
        ["new.b2nd", "new.b2frame", "old.b2nd", "scan.h5", "log.txt"],
        safe("new.b2nd", "new.b2frame", "old.b2nd", "scan.h5", "log.txt"),
        [mirrored("old.b2nd")],
    )
    assert {e.name: e.first for e in got.entries} == {
        "new.b2nd": True,
        "new.b2frame": True,
        "old.b2nd": False,
        "scan.h5": False,
        "log.txt": False,
    }


def test_a_transforming_rule_never_fetches_whole() -> None:
    got = plan(["new.b2nd"], safe("new.b2nd"), [], fetch_whole=False)
    assert [e.first for e in got.entries] == [False]


NAME_CASES = [
    (
        "an unsafe name is skipped with the march's reason",
        {"../x": "has an empty, '.' or '..' segment", **safe("ok")},
        [],
        ["ok"],
        [("../x", "has an empty, '.' or '..' segment")],
    ),
    (
        "names that collide once case-folded: the first in order wins",
        {"A.b2nd": ("A.b2nd", ROOT / "A.b2nd"), "a.b2nd": ("a.b2nd", ROOT / "a.b2nd")},
        [],
        ["A.b2nd"],
        [("a.b2nd", "collides with 'A.b2nd' once normalised")],
    ),
    (
        "of colliding names, the one already mirrored wins",
        {"A.b2nd": ("A.b2nd", ROOT / "A.b2nd"), "a.b2nd": ("a.b2nd", ROOT / "a.b2nd")},
        ["a.b2nd"],
        ["a.b2nd"],
        [("A.b2nd", "collides with 'a.b2nd' once normalised")],
    ),
    (
        "of colliding names, the one in NFC wins",
        {
            "e\u0301.b2nd": ("\u00e9.b2nd", ROOT / "\u00e9.b2nd"),
            "\u00e9.b2nd": ("\u00e9.b2nd", ROOT / "\u00e9.b2nd"),
        },
        [],
        ["\u00e9.b2nd"],
        [("e\u0301.b2nd", "collides with '\u00e9.b2nd' once normalised")],
    ),
    (
        "a file named like another entry's folder",
        safe("x", "x/y.b2nd"),
        [],
        ["x/y.b2nd"],
        [("x", "is also the name of a remote folder")],
    ),
]


@pytest.mark.parametrize(
    ("targets", "known", "chosen", "skipped"),
    [case[1:] for case in NAME_CASES],
    ids=[case[0] for case in NAME_CASES],
)
def test_names(
    targets: dict[str, Any], known: list[str], chosen: list[str], skipped: list[tuple[str, str]]
) -> None:
    got = plan(list(targets), targets, [mirrored(n) for n in known])
    assert [e.name for e in got.entries] == chosen
    assert list(got.skipped) == skipped


DELETION_CASES = [
    ("within the cap", ["a", "b", "c"], ["a", "b", "c", "d"], {}, ["d"], False),
    ("beyond the cap", ["a"], ["a", "b", "c", "d"], {}, [], True),
    ("not without delete = true", ["a"], ["a", "b"], {"delete": False}, [], False),
    ("an empty listing removes nothing", [], ["a"], {"max_delete": 1.0}, [], True),
    # Listed but skipped (unsafe, excluded): it still exists remotely, so it stays.
    ("skipped names are not vanished", ["a", "../b"], ["a", "../b"], {}, [], False),
]


@pytest.mark.parametrize(
    ("listing", "known", "keys", "removed", "refused"),
    [case[1:] for case in DELETION_CASES],
    ids=[case[0] for case in DELETION_CASES],
)
def test_deletions(
    listing: list[str], known: list[str], keys: dict[str, Any], removed: list[str], refused: bool
) -> None:
    keys = {"delete": True, "max_delete": 0.5, **keys}
    got = plan(
        listing, safe(*(n for n in listing if ".." not in n)), [mirrored(n) for n in known], **keys
    )
    assert [r.remote_rel for r in got.removals] == removed
    assert (got.refusal is not None) == refused


def test_an_empty_listing_says_so() -> None:
    got = plan([], {}, [mirrored("a"), mirrored("b")], delete=True)
    assert got.refusal == (
        "the remote folder is empty but 2 files were mirrored: no local file removed"
    )
    assert deletion_refusal(MIRROR, known=4, vanished=3, remaining=1, max_delete=0.5) == (
        "3 of 4 mirrored files vanished from the remote folder, more than max_delete allows "
        "(2): no local file removed"
    )


INTACT = LocalCopy(1000, 5)
EDITED = LocalCopy(1200, 9)
GROWN = {"shape": [150, 4]}

ENTRY_CASES = [
    (
        "same ETag, local file intact",
        "a.b2nd",
        mirrored("a.b2nd"),
        GROWN,
        "e1",
        INTACT,
        False,
        Unchanged(),
    ),
    (
        "new ETag, grew along the first axis",
        "a.b2nd",
        mirrored("a.b2nd"),
        GROWN,
        "e2",
        INTACT,
        False,
        Extend(100, 150),
    ),
    (
        "new ETag, same rows: rewritten",
        "a.b2nd",
        mirrored("a.b2nd"),
        {"shape": [100, 4]},
        "e2",
        INTACT,
        False,
        Download(),
    ),
    (
        "new ETag, trailing shape changed",
        "a.b2nd",
        mirrored("a.b2nd"),
        {"shape": [150, 5]},
        "e2",
        INTACT,
        False,
        Download(),
    ),
    (
        "grew, but the local copy was edited",
        "a.b2nd",
        mirrored("a.b2nd"),
        GROWN,
        "e2",
        EDITED,
        False,
        Download(),
    ),
    (
        "same ETag, but the local copy was edited",
        "a.b2nd",
        mirrored("a.b2nd"),
        GROWN,
        "e1",
        EDITED,
        False,
        Download(),
    ),
    (
        "same ETag, but the local copy is gone",
        "a.b2nd",
        mirrored("a.b2nd"),
        GROWN,
        "e1",
        None,
        False,
        Download(),
    ),
    (
        "grew, but the rule transforms what it writes",
        "a.b2nd",
        mirrored("a.b2nd"),
        GROWN,
        "e2",
        INTACT,
        True,
        Download(),
    ),
    (
        "grew, but not a .b2nd",
        "a.b2frame",
        mirrored("a.b2frame"),
        GROWN,
        "e2",
        INTACT,
        False,
        Download(),
    ),
    ("never mirrored", "a.b2nd", None, GROWN, "e1", None, False, Download()),
    (
        "no ETag from the server: never taken as unchanged",
        "a.h5",
        mirrored("a.h5", shape=None),
        {"kind": "group"},
        None,
        INTACT,
        False,
        Download(),
    ),
    (
        "the server cannot read it",
        "bad.b2nd",
        None,
        {"error": "Unrecognized format"},
        None,
        None,
        False,
        Unreadable("the server cannot read it (Unrecognized format): not mirrored"),
    ),
]


@pytest.mark.parametrize(
    ("name", "record", "info", "etag", "copy", "transformed", "expected"),
    [case[1:] for case in ENTRY_CASES],
    ids=[case[0] for case in ENTRY_CASES],
)
def test_one_entry(
    name: str,
    record: Mirrored | None,
    info: dict[str, Any],
    etag: str | None,
    copy: LocalCopy | None,
    transformed: bool,
    expected: object,
) -> None:
    got = decide_entry(name, record, info=info, etag=etag, local=copy, transformed=transformed)
    assert got == expected


@pytest.mark.parametrize(
    ("copy", "expected"),
    [(INTACT, Delete()), (None, Delete()), (EDITED, KeepChanged())],
    ids=["intact", "already gone", "edited locally"],
)
def test_deleting_a_mirror_file(copy: LocalCopy | None, expected: object) -> None:
    assert decide_deletion(mirrored("a"), copy) == expected
