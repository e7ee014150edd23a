"""From journal entries to one change per name, table by table (no server)."""

from __future__ import annotations

from cat2sync.journal import Change, Entry, Op, coalesce

A, B = "a" * 16, "b" * 16
INFO = {"shape": [20], "chunks": [10], "blocks": [10], "dtype": "f8"}


def changes(*entries: Entry) -> dict[str, tuple[Op, str | None]]:
    return {c.name: (c.op, c.src) for c in coalesce({A: entries})}


def test_the_last_entry_about_a_name_wins() -> None:
    got = coalesce(
        {
            A: [
                Entry.sent("x.b2nd", etag="e1"),
                Entry.sent("x.b2nd", etag="e2", info=INFO),
                Entry.removed("y.b2nd"),
                Entry.sent("y.b2nd", etag="e3"),
                Entry.sent("z.b2nd"),
                Entry.removed("z.b2nd"),
            ]
        }
    )
    assert {c.name: (c.op, c.etag) for c in got} == {
        "x.b2nd": (Op.SENT, "e2"),
        "y.b2nd": (Op.SENT, "e3"),
        "z.b2nd": (Op.REMOVED, None),
    }
    assert next(c for c in got if c.name == "x.b2nd").info == {**INFO}


def test_rows_appended_to_a_dataset_replaced_in_the_same_read_mean_fetch_it_whole() -> None:
    grown = Entry.appended("g.b2nd", (10, 20), info=INFO, etag="e2")
    assert changes(Entry.appended("g.b2nd", (5, 10)), grown) == {"g.b2nd": (Op.APPENDED, None)}
    assert changes(Entry.sent("g.b2nd"), grown) == {"g.b2nd": (Op.SENT, None)}
    assert changes(Entry.moved("f.b2nd", "g.b2nd"), grown)["g.b2nd"] == (Op.SENT, None)
    assert changes(Entry.check("g.b2nd"), grown) == {"g.b2nd": (Op.APPENDED, None)}


def test_a_conflict_copy_is_a_new_dataset_to_a_subscriber() -> None:
    assert changes(Entry.conflict_copy("a (conflict).b2nd", "a.b2nd", etag="e")) == {
        "a (conflict).b2nd": (Op.SENT, None)
    }


def test_a_move_removes_its_source_and_chains_collapse_to_the_first_name() -> None:
    assert changes(Entry.moved("a", "b")) == {"b": (Op.MOVED, "a"), "a": (Op.REMOVED, None)}
    assert changes(Entry.moved("a", "b"), Entry.moved("b", "c")) == {
        "c": (Op.MOVED, "a"),
        "b": (Op.REMOVED, None),
        "a": (Op.REMOVED, None),
    }
    # Moved away and back: the content is where it was; its ETag decides.
    assert changes(Entry.moved("a", "b"), Entry.moved("b", "a"))["a"] == (Op.SENT, None)


def test_a_move_of_something_written_since_the_last_read_is_a_fetch() -> None:
    assert changes(Entry.sent("a", etag="new"), Entry.moved("a", "b", etag="new")) == {
        "b": (Op.SENT, None),
        "a": (Op.REMOVED, None),
    }


def test_a_name_written_again_after_moving_away_keeps_the_move_first() -> None:
    got = coalesce({A: [Entry.moved("a", "b"), Entry.sent("a", etag="new")]})
    assert [(c.name, c.op) for c in got] == [("b", Op.MOVED), ("a", Op.SENT)]


def test_moves_come_first_in_the_order_they_were_made() -> None:
    got = coalesce(
        {
            A: [
                Entry.sent("s"),
                Entry.moved("a", "b"),
                Entry.removed("r"),
                Entry.moved("c", "a"),
            ]
        }
    )
    assert [(c.name, c.op, c.src) for c in got] == [
        ("b", Op.MOVED, "a"),
        ("a", Op.MOVED, "c"),
        ("s", Op.SENT, None),
        ("r", Op.REMOVED, None),
        ("c", Op.REMOVED, None),
    ]


def test_names_that_two_writers_touched_in_one_read_are_checked_with_the_server() -> None:
    got = coalesce(
        {
            A: [Entry.sent("both"), Entry.moved("mine", "moved"), Entry.sent("only-a")],
            B: [Entry.removed("both"), Entry.sent("mine"), Entry.sent("only-b")],
        }
    )
    assert len(got) == len({c.name for c in got})  # one change per name
    assert {c.name: c.op for c in got} == {
        "both": Op.CHECK,
        "mine": Op.CHECK,
        "moved": Op.CHECK,  # its source was written by the other writer meanwhile
        "only-a": Op.SENT,
        "only-b": Op.SENT,
    }


def test_nothing_new_is_no_change() -> None:
    assert coalesce({}) == () == coalesce({A: [], B: []})
    assert Change("x", Op.MOVED, src="y").names() == ("y", "x")
