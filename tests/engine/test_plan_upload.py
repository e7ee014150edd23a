"""The upload planner's decisions, table by table, with no server and no file system."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cat2sync.engine.arrays import Layout
from cat2sync.engine.plan import (
    ABSENT,
    UPLOAD,
    Adopt,
    AppendFrom,
    Clash,
    CompareFirst,
    LocalFile,
    Move,
    Proceed,
    RemoteState,
    Removal,
    Send,
    Unchanged,
    VerifyThenAppend,
    append_resume,
    conflict_name,
    decide_file,
    decide_write,
    deletion_refusal,
    first_contact,
    plan_freeing,
    plan_upload_pass,
    rows_to_append,
)
from cat2sync.records import Shipped

REMOTE = "@personal/run"


def shipped(
    relpath: str, *, inode: int, size: int = 100, mtime_ns: int = 1, **kw: object
) -> Shipped:
    return Shipped(
        rule="up",
        relpath=relpath,
        remote=f"{REMOTE}/{relpath}",
        kind="file",
        size=size,
        mtime_ns=mtime_ns,
        dev=1,
        inode=inode,
        **kw,  # type: ignore[arg-type]
    )


def local(relpath: str, *, inode: int, size: int = 100, mtime_ns: int = 1) -> LocalFile:
    return LocalFile(relpath, size, mtime_ns, dev=1, inode=inode)


def files(*items: LocalFile) -> dict[str, LocalFile]:
    return {f.relpath: f for f in items}


def records(*items: Shipped) -> dict[str, Shipped]:
    return {r.relpath: r for r in items}


def summary(plan: object) -> dict[str, object]:
    """A plan as plain names, for readable table rows."""
    assert hasattr(plan, "send")
    return {
        "send": sorted(s.file.relpath for s in plan.send),
        "moves": sorted(f"{m.record.relpath}->{m.to.relpath}" for m in plan.moves),
        "removals": sorted(r.record.relpath for r in plan.removals),
        "refused": plan.refusal is not None,
    }


NOTHING = {"send": [], "moves": [], "removals": [], "refused": False}

# (case, local files, shipped records, rule keys, expected plan)
PASS_CASES = [
    ("new file", files(local("a.b2nd", inode=1)), {}, {}, {**NOTHING, "send": ["a.b2nd"]}),
    (
        "unchanged file",
        files(local("a.b2nd", inode=1)),
        records(shipped("a.b2nd", inode=1)),
        {},
        NOTHING,
    ),
    (
        "grown or rewritten file (size differs)",
        files(local("a.b2nd", inode=1, size=200)),
        records(shipped("a.b2nd", inode=1)),
        {},
        {**NOTHING, "send": ["a.b2nd"]},
    ),
    (
        "touched file (mtime differs)",
        files(local("a.b2nd", inode=1, mtime_ns=2)),
        records(shipped("a.b2nd", inode=1)),
        {},
        {**NOTHING, "send": ["a.b2nd"]},
    ),
    (
        "rename: same inode, size and mtime, old name gone",
        files(local("b.b2nd", inode=7)),
        records(shipped("a.b2nd", inode=7)),
        {"delete": True},
        {**NOTHING, "moves": ["a.b2nd->b.b2nd"]},
    ),
    (
        "hard link: the old name is still there",
        files(local("a.b2nd", inode=7), local("b.b2nd", inode=7)),
        records(shipped("a.b2nd", inode=7)),
        {},
        {**NOTHING, "send": ["b.b2nd"]},
    ),
    (
        "renamed and edited: sent, and the old name is a deletion",
        files(local("b.b2nd", inode=7, size=300), local("c.b2nd", inode=8)),
        records(shipped("a.b2nd", inode=7), shipped("c.b2nd", inode=8)),
        {"delete": True},
        {**NOTHING, "send": ["b.b2nd"], "removals": ["a.b2nd"]},
    ),
    (
        "rename to a name without suffix: the server's move would make it a folder",
        files(local("b", inode=7)),
        records(shipped("a.b2nd", inode=7)),
        {},
        {**NOTHING, "send": ["b"]},
    ),
    (
        "folder renamed: every file moves",
        files(local("d2/x.b2nd", inode=1), local("d2/y.b2nd", inode=2)),
        records(shipped("d1/x.b2nd", inode=1), shipped("d1/y.b2nd", inode=2)),
        {"delete": True},
        {**NOTHING, "moves": ["d1/x.b2nd->d2/x.b2nd", "d1/y.b2nd->d2/y.b2nd"]},
    ),
    (
        "two new names of one renamed file: one move, one upload",
        files(local("b.b2nd", inode=7), local("c.b2nd", inode=7)),
        records(shipped("a.b2nd", inode=7)),
        {},
        {**NOTHING, "moves": ["a.b2nd->b.b2nd"], "send": ["c.b2nd"]},
    ),
    (
        "deletion within the cap",
        files(*(local(f"f{i}", inode=i) for i in range(3))),
        records(*(shipped(f"f{i}", inode=i) for i in range(4))),
        {"delete": True, "max_delete": 0.5},
        {**NOTHING, "removals": ["f3"]},
    ),
    (
        "deletions beyond the cap are refused, all of them",
        files(local("f0", inode=0)),
        records(*(shipped(f"f{i}", inode=i) for i in range(4))),
        {"delete": True, "max_delete": 0.5},
        {**NOTHING, "refused": True},
    ),
    (
        "no deletion without delete = true",
        files(local("f0", inode=0)),
        records(*(shipped(f"f{i}", inode=i) for i in range(4))),
        {},
        NOTHING,
    ),
    (
        "empty folder (an unmounted disk): no deletion at all",
        {},
        records(shipped("f0", inode=0)),
        {"delete": True, "max_delete": 1.0},
        {**NOTHING, "refused": True},
    ),
    (
        "empty folder without delete: nothing to refuse",
        {},
        records(shipped("f0", inode=0)),
        {},
        NOTHING,
    ),
    (
        "one deletion is always allowed",
        files(local("new", inode=9)),
        records(shipped("old", inode=5)),
        {"delete": True, "max_delete": 0.0},
        {**NOTHING, "send": ["new"], "removals": ["old"]},
    ),
]


@pytest.mark.parametrize(
    ("local_files", "shipped_records", "keys", "expected"),
    [case[1:] for case in PASS_CASES],
    ids=[case[0] for case in PASS_CASES],
)
def test_upload_pass(
    local_files: dict[str, LocalFile],
    shipped_records: dict[str, Shipped],
    keys: dict[str, object],
    expected: dict[str, object],
) -> None:
    plan = plan_upload_pass(
        remote_folder=REMOTE,
        local=local_files,
        records=shipped_records,
        delete=bool(keys.get("delete", False)),
        max_delete=float(keys.get("max_delete", 0.5)),  # type: ignore[arg-type]
    )
    assert summary(plan) == expected


def test_missing_folder_is_refused_whole() -> None:
    plan = plan_upload_pass(
        remote_folder=REMOTE,
        local=None,
        records=records(shipped("a", inode=1)),
        delete=True,
        folder="/data/run",
    )
    assert summary(plan) == {**NOTHING, "refused": True}
    assert plan.refusal == (
        "local folder /data/run is missing (unmounted?): nothing sent, no remote file removed"
    )


def test_a_move_carries_its_evidence() -> None:
    old, new = shipped("raw/a.csv", inode=3), local("cal/a.csv", inode=3)
    plan = plan_upload_pass(
        remote_folder=REMOTE, local=files(new), records=records(old), converted={".csv"}
    )
    assert plan.moves == (Move(old, new, f"{REMOTE}/cal/a.b2nd"),)  # converted on the way


def test_refusals_say_why() -> None:
    plan = plan_upload_pass(
        remote_folder=REMOTE,
        local={},
        records=records(shipped("a", inode=1), shipped("b", inode=2)),
        delete=True,
    )
    assert plan.refusal == (
        "the local folder is empty but 2 files were shipped (unmounted?): no remote file removed"
    )
    plan = plan_upload_pass(
        remote_folder=REMOTE,
        local=files(local("a", inode=1)),
        records=records(*(shipped(f"f{i}", inode=10 + i) for i in range(4)), shipped("a", inode=1)),
        delete=True,
    )
    assert plan.refusal == (
        "4 of 5 shipped files vanished from the local folder, more than max_delete "
        "allows (2): no remote file removed"
    )
    assert plan.removals == ()


@pytest.mark.parametrize(
    ("known", "vanished", "remaining", "max_delete", "refused"),
    [
        (10, 0, 0, 0.5, False),  # nothing vanished: nothing to refuse, even empty
        (10, 5, 5, 0.5, False),  # exactly the cap
        (10, 6, 4, 0.5, True),
        (3, 1, 2, 0.5, False),  # int(1.5) = 1
        (3, 2, 1, 0.5, True),
        (4, 4, 0, 1.0, True),  # everything vanished: always refused
        (4, 3, 1, 1.0, False),
        (1, 1, 1, 0.0, False),  # at least one may go
    ],
)
def test_deletion_cap(
    known: int, vanished: int, remaining: int, max_delete: float, refused: bool
) -> None:
    why = deletion_refusal(
        UPLOAD, known=known, vanished=vanished, remaining=remaining, max_delete=max_delete
    )
    assert (why is not None) == refused


# -- one watched file ---------------------------------------------------------------

FILE_CASES = [
    ("unchanged", local("a", inode=1), shipped("a", inode=1), [], set(), Unchanged),
    ("changed", local("a", inode=1, size=5), shipped("a", inode=1), [], set(), Send),
    ("new", local("b", inode=2), None, [], set(), Send),
    ("renamed", local("b.b2nd", inode=2), None, [shipped("a.b2nd", inode=2)], set(), Move),
    ("hard link", local("b.b2nd", inode=2), None, [shipped("a.b2nd", inode=2)], {"a.b2nd"}, Send),
    (
        "same inode, other content (inode reused)",
        local("b.b2nd", inode=2, size=1),
        None,
        [shipped("a.b2nd", inode=2)],
        set(),
        Send,
    ),
]


@pytest.mark.parametrize(
    ("file", "record", "twins", "present", "decision"),
    [case[1:] for case in FILE_CASES],
    ids=[case[0] for case in FILE_CASES],
)
def test_one_file(
    file: LocalFile, record: Shipped | None, twins: list[Shipped], present: set[str], decision: type
) -> None:
    remote = f"{REMOTE}/{file.relpath}"
    got = decide_file(file, record, twins=twins, present=present, remote=remote)
    assert type(got) is decision


# -- growth: rows to append ----------------------------------------------------------

SENT = Shipped(
    rule="up",
    relpath="a.b2nd",
    remote=f"{REMOTE}/a.b2nd",
    kind="array",
    size=10,
    mtime_ns=1,
    shape=(100, 4),
    dtype="float64",
    chunks=(10, 4),
    digests=tuple(f"d{i}" for i in range(10)),
    tail_digest="t",
)
NOW = Layout(shape=(150, 4), dtype="float64", chunks=(10, 4), digests=(), tail_digest="")
SAME_PREFIX = Layout(
    shape=(100, 4), dtype="float64", chunks=(10, 4), digests=SENT.digests or (), tail_digest="t"
)

GROWTH_CASES = [
    ("grew along the first axis", SENT, NOW, None, 100),
    ("grew, and the first rows are the ones sent", SENT, NOW, SAME_PREFIX, 100),
    ("grew, but an early row changed", SENT, NOW, replace(SAME_PREFIX, tail_digest="x"), None),
    ("same rows", SENT, replace(NOW, shape=(100, 4)), None, None),
    ("shrank", SENT, replace(NOW, shape=(50, 4)), None, None),
    ("other dtype", SENT, replace(NOW, dtype="float32"), None, None),
    ("other chunks", SENT, replace(NOW, chunks=(20, 4)), None, None),
    ("other trailing shape", SENT, replace(NOW, shape=(150, 5)), None, None),
    ("sent as a plain file", replace(SENT, kind="file"), NOW, None, None),
]


@pytest.mark.parametrize(
    ("record", "layout", "prefix", "sent"),
    [case[1:] for case in GROWTH_CASES],
    ids=[case[0] for case in GROWTH_CASES],
)
def test_growth_or_rewrite(
    record: Shipped, layout: Layout, prefix: Layout | None, sent: int | None
) -> None:
    assert rows_to_append(record, layout, prefix) == sent


RESUME_CASES = [
    ("the server holds what we sent", (100, 4), (4,), AppendFrom(100)),
    ("a lost answer: more rows than recorded", (120, 4), (4,), VerifyThenAppend(100, 120)),
    ("all rows already there", (150, 4), (4,), VerifyThenAppend(100, 150)),
    ("more rows than we have: someone else's", (160, 4), (4,), None),
    ("fewer rows than sent: replaced", (80, 4), (4,), None),
    ("remote missing", None, (4,), None),
    ("other trailing shape", (100, 5), (4,), None),
    ("transformed: the transforms decide the trailing shape", (100, 5), None, AppendFrom(100)),
]


@pytest.mark.parametrize(
    ("remote_shape", "trailing", "expected"),
    [case[1:] for case in RESUME_CASES],
    ids=[case[0] for case in RESUME_CASES],
)
def test_append_resume(
    remote_shape: tuple[int, ...] | None, trailing: tuple[int, ...] | None, expected: object
) -> None:
    assert append_resume(remote_shape, sent=100, total=150, trailing=trailing) == expected


def test_removal_names_its_record() -> None:
    gone = shipped("gone", inode=4)
    plan = plan_upload_pass(
        remote_folder=REMOTE,
        local=files(local("kept", inode=5)),
        records=records(gone, shipped("kept", inode=5)),
        delete=True,
    )
    assert plan.removals == (Removal(gone),)


# -- another writer ------------------------------------------------------------------

OURS = replace(shipped("a.b2nd", inode=1), etag="e1")
WRITE_CASES = {
    "a free name": (None, ABSENT, "keep-both", Proceed()),
    "first contact with an existing remote": (
        None,
        RemoteState(True, "e9"),
        "keep-both",
        CompareFirst(),
    ),
    "the remote is what we wrote": (OURS, RemoteState(True, "e1"), "keep-both", Proceed()),
    "the remote was deleted by someone: recreate it": (OURS, ABSENT, "keep-both", Proceed()),
    "the remote was replaced by someone": (
        OURS,
        RemoteState(True, "e2"),
        "keep-both",
        Clash("keep-both", "the remote was changed by another writer since cat2sync wrote it"),
    ),
    "replaced, and the rule skips conflicts": (
        OURS,
        RemoteState(True, "e2"),
        "skip",
        Clash("skip", "the remote was changed by another writer since cat2sync wrote it"),
    ),
    "replaced, and the rule overwrites": (OURS, RemoteState(True, "e2"), "overwrite", Proceed()),
    "an older record without ETag is trusted": (
        replace(OURS, etag=None),
        RemoteState(True, "e2"),
        "keep-both",
        Proceed(),
    ),
    "still another writer's, after a skipped conflict": (
        replace(OURS, theirs=True),
        RemoteState(True, "e1"),
        "skip",
        Clash("skip", "the remote is still another writer's version"),
    ),
    "another writer's file was removed: ours goes": (
        replace(OURS, theirs=True),
        ABSENT,
        "skip",
        Proceed(),
    ),
}


@pytest.mark.parametrize(
    ("record", "remote", "on_conflict", "expected"),
    list(WRITE_CASES.values()),
    ids=list(WRITE_CASES),
)
def test_may_we_write(
    record: Shipped | None, remote: RemoteState, on_conflict: str, expected: object
) -> None:
    assert decide_write(record, remote, on_conflict) == expected  # type: ignore[arg-type]


def test_first_contact() -> None:
    assert first_contact(True, "keep-both") == Adopt()
    assert first_contact(False, "skip") == Clash(
        "skip", "the server already holds a different file of that name"
    )


def test_conflict_names() -> None:
    when = 1796126400.0  # 2026-12-01 12:00:00 UTC
    assert conflict_name("@shared/x/run_001.b2nd", when) == (
        "@shared/x/run_001.conflict-20261201T120000Z.b2nd"
    )
    assert conflict_name("d/notes", when, 2) == "d/notes.conflict-20261201T120000Z-2"


def test_another_writers_records_are_forgotten_never_removed() -> None:
    theirs = replace(shipped("t.b2nd", inode=3), theirs=True)
    plan = plan_upload_pass(
        remote_folder=REMOTE,
        local=files(local("a", inode=1)),
        records=records(theirs, shipped("a", inode=1)),
        delete=True,
    )
    assert (plan.forget, plan.removals, plan.refusal) == ((theirs,), (), None)


def test_freed_files_are_not_vanished_nor_renamed() -> None:
    freed = replace(shipped("old.b2nd", inode=3), freed=1.0)
    plan = plan_upload_pass(
        remote_folder=REMOTE,
        local=files(local("new.b2nd", inode=3)),  # an inode number used again
        records=records(freed),
        delete=True,
    )
    assert summary(plan) == {**NOTHING, "send": ["new.b2nd"]}


# -- freeing local space -------------------------------------------------------------

DAY = 86400 * 10**9
NOW = 100 * DAY
OLD = dict(mtime_ns=NOW - 8 * DAY)


def test_freeing() -> None:
    recs = records(
        shipped("old", inode=1, **OLD),  # type: ignore[arg-type]
        shipped("recent", inode=2, mtime_ns=NOW - DAY),
        shipped("edited", inode=3, **OLD),  # type: ignore[arg-type]
        shipped("pending", inode=4, **OLD),  # type: ignore[arg-type]
        replace(shipped("theirs", inode=5, **OLD), theirs=True),  # type: ignore[arg-type]
        replace(shipped("copy", inode=6, **OLD), remote=f"{REMOTE}/copy.conflict-x"),  # type: ignore[arg-type]
    )
    here = files(
        local("old", inode=1, **OLD),  # type: ignore[arg-type]
        local("recent", inode=2, mtime_ns=NOW - DAY),
        local("edited", inode=3, size=5, **OLD),  # type: ignore[arg-type]
        local("pending", inode=4, **OLD),  # type: ignore[arg-type]
        local("theirs", inode=5, **OLD),  # type: ignore[arg-type]
        local("copy", inode=6, **OLD),  # type: ignore[arg-type]
    )
    due = plan_freeing(
        local=here,
        records=recs,
        pending={"pending"},
        remote_folder=REMOTE,
        now_ns=NOW,
        after=7 * 86400,
        max_delete=1.0,
    )
    assert [f.file.relpath for f in due] == ["old"]


def test_freeing_respects_the_deletion_cap() -> None:
    names = [f"f{i}" for i in range(10)]
    recs = records(*(shipped(n, inode=i, **OLD) for i, n in enumerate(names)))  # type: ignore[arg-type]
    here = files(*(local(n, inode=i, **OLD) for i, n in enumerate(names)))  # type: ignore[arg-type]
    due = plan_freeing(
        local=here,
        records=recs,
        pending=(),
        remote_folder=REMOTE,
        now_ns=NOW,
        after=1.0,
        max_delete=0.3,
    )
    assert len(due) == 3  # the rest next pass
