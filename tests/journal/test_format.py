"""The journal's bytes, table by table, with no server: what a reader trusts and what
makes it ask for a full pass."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest

from cat2sync.journal import Entry, Op, Position, dump_positions, entry_info, load_positions
from cat2sync.journal._format import (
    MAX_LINE,
    Header,
    Parsed,
    Untrusted,
    check_name,
    encode_body,
    encode_entry,
    encode_header,
    is_journal_name,
    last_line,
    parse_segment,
    parse_since,
    segment_name,
    split_segment_name,
)

WRITER = "0123456789abcdef"
FOLDER = "@shared/b7"
ARRAY_INFO = {
    "shape": [1000, 4],
    "chunks": [100, 4],
    "blocks": [10, 4],
    "dtype": "int64",
    "mtime": "2026-12-01T16:31:00.721417Z",
    "accept_ranges": "bytes",
    "schunk": {
        "cbytes": 1745,
        "nbytes": 32000,
        "nchunks": 10,
        "urlpath": "/srv/state/personal/9b1c/b7/a.b2nd",
        "cparams": {"codec": 5},
        "vlmeta": {},
    },
}


def header(seq: int = 1, segment: int = 1, **kw: Any) -> bytes:
    fields = {"writer": WRITER, "segment": segment, "epoch": "9f2c01ab", "seq": seq}
    return encode_header(Header(**{**fields, "folder": FOLDER, "created": 1.0, **kw}))


def segment(*entries: Entry, seq: int = 1) -> bytes:
    return header(seq) + b"".join(encode_entry(e, seq + i) for i, e in enumerate(entries))


def framed(obj: Any) -> bytes:
    """A line with a valid checksum around any JSON object (what a forger can do)."""
    body = json.dumps(obj).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def parse(data: bytes, seq: int | None = None) -> Parsed:
    got = parse_segment(data, writer=WRITER, segment=1, folder=FOLDER, seq=seq)
    assert isinstance(got, Parsed), got
    return got


def untrusted(data: bytes) -> str:
    got = parse_segment(data, writer=WRITER, segment=1, folder=FOLDER)
    assert isinstance(got, Untrusted), got
    return got.reason


# -- round trips -------------------------------------------------------------------


def test_every_kind_of_entry_reads_back_as_written() -> None:
    entries = [
        Entry.sent("run/a.b2nd", info=ARRAY_INFO, etag='"u-1-2"'),
        Entry.appended("run/a.b2nd", (1000, 1100), info=ARRAY_INFO, etag='"u-1-3"'),
        Entry.moved("run/a.b2nd", "done/a.b2nd", etag='"u-1-3"'),
        Entry.removed("old.b2nd"),
        Entry.conflict_copy("a (conflict 1).b2nd", "a.b2nd", etag='"u-9-9"'),
        Entry.check("maybe.b2nd"),
        Entry.sent("Ünïcode naïve/日本.txt"),
    ]
    got = parse(segment(*entries))
    assert [r.entry for r in got.reads] == entries
    assert [r.seq for r in got.reads] == list(range(1, 8))
    assert got.header is not None and got.header.seq == 1
    assert got.end.seq == 8 and got.complete


def test_an_entry_keeps_only_what_a_mirror_needs_of_the_servers_info() -> None:
    assert entry_info(ARRAY_INFO) == {
        "shape": [1000, 4],
        "chunks": [100, 4],
        "blocks": [10, 4],
        "dtype": "int64",
        "mtime": "2026-12-01T16:31:00.721417Z",
        "schunk": {"cbytes": 1745, "nbytes": 32000, "nchunks": 10},
    }
    stored_file = {"cbytes": 61, "nbytes": 60, "nchunks": 1, "mtime": "t", "cparams": {}}
    assert entry_info(stored_file) == {"cbytes": 61, "nbytes": 60, "nchunks": 1, "mtime": "t"}
    group = {"kind": "group", "size": 10, "nfiles": 2, "mtime": "t"}
    assert entry_info(group) == group
    assert entry_info({"mtime": "t", "error": "Unrecognized format"})["error"]


def test_a_line_is_a_checksum_and_compact_sorted_json() -> None:
    line = encode_entry(Entry.removed("a.b2nd"), 7)
    crc, body = line[:-1].split(b" ", 1)
    assert int(crc, 16) == zlib.crc32(body) and line.endswith(b"\n")
    assert json.loads(body) == {"at": 0.0, "name": "a.b2nd", "op": "removed", "seq": 7}
    assert b", " not in body and list(json.loads(body)) == sorted(json.loads(body))


def test_a_writer_refuses_an_unsafe_name_or_an_overlong_entry() -> None:
    with pytest.raises(ValueError, match="unsafe"):
        encode_entry(Entry.sent("../escape.b2nd"), 1)
    with pytest.raises(ValueError, match="journal"):
        encode_entry(Entry.moved("a.b2nd", ".cat2sync/j1-x.b2nd"), 1)
    with pytest.raises(ValueError, match="longer"):
        encode_entry(Entry.sent("a.b2nd", etag="x" * MAX_LINE), 1)


# -- what a reader does not trust ----------------------------------------------------


GOOD = segment(Entry.sent("a.b2nd"), Entry.removed("b.b2nd"))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"not a journal at all\n", "checksum"),
        (header()[:-1], "header is partial"),
        (framed({"kind": "something else"}), "not a cat2sync journal"),
        (header().replace(b'"v":1', b'"v":2'), "checksum"),  # edited without its checksum
        (GOOD[:-3] + b"XY\n", "checksum"),
        (GOOD + b"garbage without a checksum\n", "without a checksum"),
        (GOOD + b"0" * (MAX_LINE + 1), "longer than any entry"),
        (GOOD + encode_entry(Entry.sent("c.b2nd"), 5), "entry 5 where entry 3 was due"),
        (GOOD + encode_entry(Entry.sent("c.b2nd"), 2), "entry 2 where entry 3 was due"),
        (GOOD + framed({"op": "sent", "name": "/etc/passwd", "seq": 3}), "unsafe name"),
        (GOOD + framed({"op": "sent", "name": "a/../../x", "seq": 3}), "unsafe name"),
        (GOOD + framed({"op": "sent", "name": "a\x1b[2Jb", "seq": 3}), "control character"),
        (GOOD + framed({"op": "sent", "name": "a\\b", "seq": 3}), "backslash"),
        (GOOD + framed({"op": "sent", "name": ".cat2sync/j1-x", "seq": 3}), "journal"),
        (GOOD + framed({"op": "sent", "name": "d/.cat2sync-up.b2nd", "seq": 3}), "temporary"),
        (GOOD + framed({"op": "moved", "name": "x", "src": "../y", "seq": 3}), "unsafe"),
        (GOOD + framed({"op": "moved", "name": "x", "seq": 3}), "wrong src"),
        (GOOD + framed({"op": "renamed", "name": "x", "seq": 3}), "unknown operation"),
        (GOOD + framed({"op": "sent", "seq": 3}), "without a name"),
        (GOOD + framed({"op": "sent", "name": 7, "seq": 3}), "without a name"),
        (GOOD + framed({"op": "appended", "name": "x", "seq": 3}), "wrong rows"),
        (GOOD + framed({"op": "appended", "name": "x", "rows": [5, 2], "seq": 3}), "rows"),
        (GOOD + framed({"op": "sent", "name": "x", "etag": 5, "seq": 3}), "etag"),
        (GOOD + framed({"op": "sent", "name": "x", "info": [], "seq": 3}), "not an object"),
        (
            GOOD + framed({"op": "sent", "name": "x", "info": {"shape": [-1]}, "seq": 3}),
            "info.shape",
        ),
        (GOOD + framed({"op": "sent", "name": "x", "at": "noon", "seq": 3}), "time"),
        (GOOD + framed(["a", "list"]), "not a JSON object"),
        (GOOD + b"00000000 {\n", "checksum"),
    ],
)
def test_a_damaged_or_hostile_segment_is_not_trusted(data: bytes, reason: str) -> None:
    assert reason in untrusted(data)


def test_a_header_of_a_newer_format_version_is_not_read() -> None:
    newer = framed(
        {
            "kind": "cat2sync-journal",
            "v": 2,
            "writer": WRITER,
            "segment": 1,
            "epoch": "e",
            "seq": 1,
            "folder": FOLDER,
            "created": 0,
        }
    )
    assert "format version 2 is newer" in untrusted(newer)


def test_a_header_must_name_this_writer_segment_and_folder_and_continue_the_seq() -> None:
    data = segment(Entry.sent("a.b2nd"), seq=10)
    for kw in ({"writer": "f" * 16}, {"segment": 2}, {"folder": "@shared/other"}):
        got = parse_segment(data, **{"writer": WRITER, "segment": 1, "folder": FOLDER, **kw})
        assert isinstance(got, Untrusted) and "another writer" in got.reason
    gap = parse_segment(data, writer=WRITER, segment=1, folder=FOLDER, seq=7)
    assert isinstance(gap, Untrusted) and "entry 7 was due (a gap)" in gap.reason
    assert parse(data, seq=10).reads[0].seq == 10


def test_a_partial_last_line_is_left_for_the_next_read() -> None:
    more = encode_entry(Entry.sent("c.b2nd"), 3)
    got = parse(GOOD + more[:20])
    assert not got.complete
    assert [r.seq for r in got.reads] == [1, 2]
    assert got.end.offset == len(GOOD)  # the partial line is read again next time


# -- reading since a position --------------------------------------------------------


def position_after(data: bytes) -> Position:
    got = parse(data)
    return got.end


def test_since_a_position_only_the_new_entries_come_back() -> None:
    since = position_after(GOOD)
    grown = GOOD + encode_entry(Entry.sent("c.b2nd"), 3) + encode_entry(Entry.removed("a"), 4)
    got = parse_since(grown[since.offset - since.tail :], since)
    assert isinstance(got, Parsed)
    assert [(r.seq, r.entry.name) for r in got.reads] == [(3, "c.b2nd"), (4, "a")]
    assert got.reads[0].before == since
    assert got.reads[1].before.offset == got.reads[0].before.offset + len(
        encode_entry(Entry.sent("c.b2nd"), 3)
    )
    nothing = parse_since(GOOD[since.offset - since.tail :], since)
    assert isinstance(nothing, Parsed) and nothing.reads == () and nothing.end == since


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (lambda good: good[:-10], "shorter than when it was last read"),  # truncated
        (lambda good: b"", "shorter than when it was last read"),  # emptied
        (
            lambda good: segment(Entry.sent("a.b2nd"), Entry.removed("c.b2nd")),
            "no longer where it was",
        ),  # rewritten with the same length
        (
            lambda good: segment(Entry.sent("a.b2nd")) + b"x" * 200 + b"\n",
            "no longer where it was",
        ),  # moved back, then something else written there
    ],
)
def test_a_journal_rewritten_truncated_or_moved_back_is_not_trusted(now: Any, reason: str) -> None:
    since = position_after(GOOD)
    data = now(GOOD)[since.offset - since.tail :]
    got = parse_since(data, since)
    assert isinstance(got, Untrusted) and reason in got.reason


def test_the_last_line_of_a_segment_tail_is_where_a_new_reader_starts() -> None:
    start = len(header())
    got = last_line(GOOD[start:], start=start, segment=1)
    assert got == position_after(GOOD)
    only_header = last_line(header(seq=40), start=0, segment=1)
    assert isinstance(only_header, Position) and only_header.seq == 40
    for bad in (GOOD[start:-1], b"junk\n", GOOD[start:] + framed({"op": "sent", "name": "x"})):
        assert isinstance(last_line(bad, start=start, segment=1), Untrusted)


# -- names and positions ---------------------------------------------------------------


def test_journal_files_are_named_with_their_format_version() -> None:
    name = segment_name(WRITER, 3)
    assert name == f"j1-{WRITER}-000003.b2nd"
    assert split_segment_name(name) == (1, WRITER, 3)
    assert split_segment_name(f"j2-{WRITER}-1234567.b2nd") == (2, WRITER, 1234567)
    for other in (".cat2sync-tmp.b2nd", f"{WRITER}-000001.b2nd", f"j1-{WRITER}-01.b2nd", "x"):
        assert split_segment_name(other) is None


@pytest.mark.parametrize(
    ("name", "journal"),
    [
        (".cat2sync/j1-x.b2nd", True),
        ("sub/.cat2sync/j1-x.b2nd", True),  # a subfolder's writer, seen from a parent
        (".cat2sync", True),
        (".cat2sync-up.b2nd", False),  # a temporary: filtered by its own rule
        ("data/.cat2syncX/a", False),
        ("a.b2nd", False),
    ],
)
def test_journal_names_are_recognised_at_any_depth(name: str, journal: bool) -> None:
    assert is_journal_name(name) is journal


def test_safe_names_pass() -> None:
    for name in ("a.b2nd", "run 1/frame (2).b2nd", "naïve/日本.txt", ".hidden/x"):
        assert check_name(name) is None


def test_positions_survive_the_state_and_garbage_means_none() -> None:
    positions = {WRITER: Position(2, 500, 80, 12345, 9), "f" * 16: Position(1, 10, 10, 1, 1)}
    assert load_positions(dump_positions(positions)) == positions
    for garbage in (None, "", "{", "[1,2]", '{"x": [1,2,3,4,5]}', f'{{"{WRITER}": [1]}}'):
        assert load_positions(garbage) == {}


def test_an_entry_body_line_is_the_same_as_the_entry_line() -> None:
    entry = Entry.appended("a.b2nd", (1, 2), info=ARRAY_INFO, etag="e").stamped(5.25)
    assert encode_body(entry.body(), 3) == encode_entry(entry, 3)
    assert entry.op is Op.APPENDED and entry.names() == ("a.b2nd",)
