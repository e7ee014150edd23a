"""The mirror planner's decisions, table by table, with no server and no file system."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from cat2sync.engine.plan import (
    MIRROR,
    Clash,
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
REWRITTEN = {"shape": [100, 4]}
B2ND = mirrored("a.b2nd")
H5 = replace(mirrored("a.h5", shape=None, etag=""), mtime="2026-12-01T10:00:00Z")
KEEP, OVER, SKIP = "keep-both", "overwrite", "skip"
CLASH_EDITED = "the local file changed since cat2sync wrote it, and the remote changed too"
CLASH_BEFORE = "a local file of that name was there before cat2sync mirrored it"


@dataclass(frozen=True)
class EntryCase:
    """One entry: the record, what the server says, the local file, the rule's keys."""

    record: Mirrored | None
    etag: str | None
    local: LocalCopy | None
    expected: object
    info: Mapping[str, Any] = field(default_factory=lambda: GROWN)
    name: str = "a.b2nd"
    transformed: bool = False
    on_conflict: str = KEEP


ENTRY_CASES = {
    "same ETag, local file intact": EntryCase(B2ND, "e1", INTACT, Unchanged()),
    "new ETag, grew along the first axis": EntryCase(B2ND, "e2", INTACT, Extend(100, 150)),
    "new ETag, same rows: rewritten": EntryCase(B2ND, "e2", INTACT, Download(), REWRITTEN),
    "new ETag, trailing shape changed": EntryCase(
        B2ND, "e2", INTACT, Download(), {"shape": [150, 5]}
    ),
    "same ETag, the local copy is gone": EntryCase(B2ND, "e1", None, Download()),
    "grew, but the rule transforms what it writes": EntryCase(
        B2ND, "e2", INTACT, Download(), transformed=True
    ),
    "grew, but not a .b2nd": EntryCase(
        mirrored("a.b2frame"), "e2", INTACT, Download(), name="a.b2frame"
    ),
    "never mirrored": EntryCase(None, "e1", None, Download()),
    "no ETag from the server: never taken as unchanged": EntryCase(
        mirrored("a.h5", shape=None), None, INTACT, Download(), {"kind": "group"}, "a.h5"
    ),
    "the server cannot read it": EntryCase(
        None,
        None,
        None,
        Unreadable("the server cannot read it (Unrecognized format): not mirrored"),
        {"error": "Unrecognized format"},
    ),
    # Local edits and files cat2sync did not write: conflicts, unless "overwrite".
    "edited locally, the remote unchanged: left alone": EntryCase(B2ND, "e1", EDITED, Unchanged()),
    "edited locally, the remote grew: a conflict": EntryCase(
        B2ND, "e2", EDITED, Clash(KEEP, CLASH_EDITED)
    ),
    "edited locally, the remote grew, skip": EntryCase(
        B2ND, "e2", EDITED, Clash(SKIP, CLASH_EDITED), on_conflict=SKIP
    ),
    "edited locally, overwrite restores the remote": EntryCase(
        B2ND, "e1", EDITED, Download(), on_conflict=OVER
    ),
    "edited locally, the remote grew, overwrite": EntryCase(
        B2ND, "e2", EDITED, Download(), on_conflict=OVER
    ),
    "a local file there before the first pass": EntryCase(
        None, "e1", INTACT, Clash(KEEP, CLASH_BEFORE)
    ),
    "a local file there before the first pass, overwrite": EntryCase(
        None, "e1", INTACT, Download(), on_conflict=OVER
    ),
    "not cat2sync's since a conflict, no new remote change": EntryCase(
        replace(B2ND, ours=False), "e1", INTACT, Unchanged()
    ),
    "not cat2sync's since a conflict, the remote changed": EntryCase(
        replace(B2ND, ours=False),
        "e2",
        INTACT,
        Clash(KEEP, "the local file is not cat2sync's (kept through an earlier conflict)"),
    ),
    "no ETag (HDF5), edited locally, same server mtime": EntryCase(
        H5, None, EDITED, Unchanged(), {"kind": "group", "mtime": H5.mtime}, "a.h5"
    ),
    "no ETag (HDF5), edited locally, new server mtime": EntryCase(
        H5,
        None,
        EDITED,
        Clash(KEEP, CLASH_EDITED),
        {"kind": "group", "mtime": "2026-12-02T00:00:00Z"},
        "a.h5",
    ),
}


@pytest.mark.parametrize("case", list(ENTRY_CASES.values()), ids=list(ENTRY_CASES))
def test_one_entry(case: EntryCase) -> None:
    got = decide_entry(
        case.name,
        case.record,
        info=case.info,
        etag=case.etag,
        local=case.local,
        transformed=case.transformed,
        on_conflict=case.on_conflict,  # type: ignore[arg-type]
    )
    assert got == case.expected


@pytest.mark.parametrize(
    ("copy", "expected"),
    [(INTACT, Delete()), (None, Delete()), (EDITED, KeepChanged())],
    ids=["intact", "already gone", "edited locally"],
)
def test_deleting_a_mirror_file(copy: LocalCopy | None, expected: object) -> None:
    assert decide_deletion(mirrored("a"), copy) == expected


def test_a_conflicted_file_is_never_deleted() -> None:
    assert decide_deletion(replace(mirrored("a"), ours=False), INTACT) == KeepChanged()


def test_a_first_fetch_never_writes_over_a_local_file() -> None:
    got = plan(["a.b2nd", "b.b2nd"], safe("a.b2nd", "b.b2nd"), [], existing={"a.b2nd"})
    assert {e.name: e.first for e in got.entries} == {"a.b2nd": False, "b.b2nd": True}
