"""The journal reader on the real server: what a pass costs, and every journal it must
not trust (it falls back to a full pass, and says why in one line)."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import blosc2
import numpy as np
import pytest
from helpers.journal import MakeWriter, WriterStore, upload_bytes

from cat2sync.client import Client
from cat2sync.journal import (
    JOURNAL_FOLDER,
    Entry,
    FullPass,
    Incremental,
    JournalReader,
    JournalWriter,
    NoJournal,
    Op,
    Position,
)
from cat2sync.journal._format import encode_entry, segment_name
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE


def started(writer: JournalWriter, *names: str) -> JournalWriter:
    for name in names:
        writer.record(Entry.sent(name))
    writer.flush()
    return writer


def follow(reader: JournalReader) -> dict[str, Position]:
    """Positions at the current end of every journal (what a first full pass leaves)."""
    first = reader.read({})
    assert isinstance(first, FullPass), first
    assert "read for the first time" in first.reason
    return first.positions


def requests_of(client: Client, call: Callable[[], object]) -> tuple[object, int]:
    before = client.stats.requests
    out = call()
    return out, client.stats.requests - before


def segment_path(folder: str, writer: str, segment: int = 1) -> str:
    return f"{folder}/{JOURNAL_FOLDER}/{segment_name(writer, segment)}"


def test_a_folder_without_journals_is_mirrored_as_before(client: Client, remote_dir: str) -> None:
    got, requests = requests_of(client, lambda: JournalReader(client, remote_dir).read({}))
    assert got == NoJournal() and requests == 1


def test_a_pass_that_finds_no_change_costs_one_request_per_writer_and_the_listing(
    client: Client, make_writer: MakeWriter, remote_dir: str, tmp_path: Path
) -> None:
    reader = JournalReader(client, remote_dir)
    started(make_writer(), "a.b2nd")
    positions = follow(reader)
    got, requests = requests_of(client, lambda: reader.read(positions))
    assert isinstance(got, Incremental) and got.changes == () and requests == 2
    assert got.positions == positions
    for n in (2, 3):  # more writers into the same folder: one request more each
        other = WriterStore(tmp_path / f"other{n}.db")
        started(make_writer(state=other, identity=f"host-{n}"), f"w{n}.b2nd")
        positions = follow(reader)
        got, requests = requests_of(client, lambda: reader.read(positions))  # noqa: B023
        assert isinstance(got, Incremental) and got.changes == () and requests == 1 + n
        other.close()


def test_a_pass_after_k_changes_reads_them_in_the_same_two_requests(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    writer = started(make_writer(), "a.b2nd")
    reader = JournalReader(client, remote_dir)
    positions = follow(reader)
    info, etag = {"shape": [10], "chunks": [10], "blocks": [10], "dtype": "int64"}, '"u-1-2"'
    writer.record(Entry.sent("run/new.b2nd", info=info, etag=etag))
    writer.record(Entry.appended("a.b2nd", (10, 20), info={**info, "shape": [20]}, etag='"x"'))
    writer.record(Entry.moved("old.b2nd", "moved.b2nd", etag='"m"'))
    writer.record(Entry.removed("gone.b2nd"))
    writer.flush()
    got, requests = requests_of(client, lambda: reader.read(positions))
    assert isinstance(got, Incremental) and requests == 2
    assert [(c.name, c.op, c.src, c.etag) for c in got.changes] == [
        ("moved.b2nd", Op.MOVED, "old.b2nd", '"m"'),
        ("run/new.b2nd", Op.SENT, None, etag),
        ("a.b2nd", Op.APPENDED, None, '"x"'),
        ("old.b2nd", Op.REMOVED, None, None),
        ("gone.b2nd", Op.REMOVED, None, None),
    ]
    assert got.changes[1].info == info  # what a subscriber needs instead of its own info
    again = reader.read(got.positions)
    assert isinstance(again, Incremental) and again.changes == ()


def test_changes_that_could_not_be_applied_are_read_again(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    writer = started(make_writer(), "a.b2nd")
    reader = JournalReader(client, remote_dir)
    positions = follow(reader)
    started(writer, "b.b2nd", "c.b2nd", "d.b2nd")
    got = reader.read(positions)
    assert isinstance(got, Incremental)
    assert got.positions_keeping(set()) == got.positions
    retry = reader.read(got.positions_keeping({"c.b2nd"}))
    assert isinstance(retry, Incremental)
    assert [c.name for c in retry.changes] == ["c.b2nd", "d.b2nd"]


def test_a_reader_follows_a_writer_into_its_next_segment(
    client: Client, make_writer: MakeWriter, remote_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cat2sync.journal._writer.SEGMENT_BYTES", 400)
    writer = started(make_writer(), "a.b2nd")
    reader = JournalReader(client, remote_dir)
    positions = follow(reader)
    started(writer, "b.b2nd", "c.b2nd")
    started(writer, "d.b2nd")  # a new segment
    got, requests = requests_of(client, lambda: reader.read(positions))
    assert isinstance(got, Incremental)
    assert [c.name for c in got.changes] == ["b.b2nd", "c.b2nd", "d.b2nd"]
    assert requests == 3  # the listing, the end of the old segment, the new one
    assert got.positions[writer.writer].segment == 2


# -- journals a reader must not trust ------------------------------------------------


def framed(body: bytes) -> bytes:
    return b"%08x %s\n" % (zlib.crc32(body), body)


def reread_after(
    client: Client, make_writer: MakeWriter, remote_dir: str, damage: Callable[[str, str], None]
) -> FullPass:
    """Follow a journal, ``damage(segment path, writer)`` it, and read it again."""
    writer = started(make_writer(), "a.b2nd", "b.b2nd")
    reader = JournalReader(client, remote_dir)
    positions = follow(reader)
    damage(segment_path(remote_dir, writer.writer), writer.writer)
    got = reader.read(positions)
    assert isinstance(got, FullPass), got
    assert "\n" not in got.reason
    return got


def _truncate(client: Client, remote_dir: str) -> Callable[[str, str], None]:
    def damage(path: str, writer: str) -> None:
        data = client.get_slice(path, slice(0, None), as_blosc2=False).tobytes()
        upload_bytes(client, path, data[:-30])

    return damage


def test_a_truncated_journal_is_not_trusted(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    got = reread_after(client, make_writer, remote_dir, _truncate(client, remote_dir))
    assert "shorter than when it was last read" in got.reason


def test_a_journal_moved_back_to_an_older_copy_is_not_trusted(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    def damage(path: str, writer: str) -> None:
        client.copy(path, f"{remote_dir}/backup.b2nd")
        client.append(path, np.frombuffer(encode_entry(Entry.sent("c.b2nd"), 3), np.uint8))
        client.move(f"{remote_dir}/backup.b2nd", path)  # restored from before the append

    writer = started(make_writer(), "a.b2nd", "b.b2nd")
    reader = JournalReader(client, remote_dir)
    positions = follow(reader)
    path = segment_path(remote_dir, writer.writer)
    client.copy(path, f"{remote_dir}/backup.b2nd")
    started(writer, "c.b2nd")
    ahead = reader.read(positions)
    assert isinstance(ahead, Incremental)
    client.move(f"{remote_dir}/backup.b2nd", path)
    got = reader.read(ahead.positions)
    assert isinstance(got, FullPass) and "shorter" in got.reason


def test_garbage_rows_in_a_journal_are_not_trusted(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    def damage(path: str, writer: str) -> None:
        client.append(path, np.frombuffer(b"\x00\xffnot a line\n", np.uint8))

    got = reread_after(client, make_writer, remote_dir, damage)
    assert "checksum" in got.reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"op":"sent","name":"../../outside.b2nd","seq":3}', "unsafe name"),
        (b'{"op":"sent","name":"/etc/cron.d/x","seq":3}', "unsafe name"),
        (b'{"op":"moved","src":"a.b2nd","name":"a/../../x","seq":3}', "unsafe name"),
        (b'{"op":"sent","name":".cat2sync/j1-x.b2nd","seq":3}', "journal"),
        (b'{"op":"sent","name":"x.b2nd","seq":9}', "entry 9 where entry 3 was due"),
        (b'{"op":"truncate","name":"x.b2nd","seq":3}', "unknown operation"),
    ],
)
def test_a_journal_someone_else_forged_is_not_trusted(
    client: Client, make_writer: MakeWriter, remote_dir: str, line: bytes, reason: str
) -> None:
    def damage(path: str, writer: str) -> None:
        client.append(path, np.frombuffer(framed(line), np.uint8))

    got = reread_after(client, make_writer, remote_dir, damage)
    assert reason in got.reason


def test_a_rewritten_journal_of_the_same_length_is_not_trusted(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    def damage(path: str, writer: str) -> None:
        data = client.get_slice(path, slice(0, None), as_blosc2=False).tobytes()
        head, first, last = data.splitlines(keepends=True)
        swap = encode_entry(Entry.sent("B.b2nd").stamped(0), 2)  # "b.b2nd" -> "B.b2nd"
        assert len(swap) <= len(last)
        upload_bytes(client, path, head + first + swap.ljust(len(last), b" "))

    got = reread_after(client, make_writer, remote_dir, damage)
    assert "no longer where it was" in got.reason


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("float array", "not a journal"),
        ("frame", "not a journal"),
        ("garbage bytes", "cannot read"),
        ("text", "a line without a checksum"),
    ],
)
def test_a_file_named_like_a_journal_that_is_not_one_is_not_trusted(
    client: Client, remote_dir: str, tmp_path: Path, kind: str, reason: str
) -> None:
    writer = "0123456789abcdef"
    path = segment_path(remote_dir, writer)
    local = tmp_path / "x.b2nd"
    if kind == "float array":
        blosc2.asarray(np.arange(100.0), urlpath=str(local), mode="w")
    elif kind == "frame":
        blosc2.SChunk(chunksize=100, data=b"x" * 100, urlpath=str(local), mode="w")
    elif kind == "garbage bytes":
        local.write_bytes(b"\x00garbage" * 100)
    if kind == "text":
        upload_bytes(client, path, b"a plain text file\nwith lines\n" * 10)
    else:
        client.upload(local, path)
    reader = JournalReader(client, remote_dir)
    got = reader.read({writer: Position(1, 50, 10, 0, 3)})
    assert isinstance(got, FullPass), got
    assert "cannot be followed from its end" in got.reason and reason in got.reason
    assert got.positions == {}  # nothing to follow: the next pass is a full one again


def test_a_journal_in_a_newer_format_makes_every_pass_a_full_one(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    writer = started(make_writer(), "a.b2nd")
    reader = JournalReader(client, remote_dir)
    positions = follow(reader)
    upload_bytes(client, f"{remote_dir}/{JOURNAL_FOLDER}/j2-{'f' * 16}-000001.b2nd", b"v2\n")
    got = reader.read(positions)
    assert isinstance(got, FullPass) and "newer than this cat2sync reads" in got.reason
    assert writer.writer  # untouched


def test_a_journal_that_vanished_or_lost_a_segment_is_not_trusted(
    client: Client, make_writer: MakeWriter, remote_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cat2sync.journal._writer.SEGMENT_BYTES", 300)
    writer = started(make_writer(), "a.b2nd")
    reader = JournalReader(client, remote_dir)
    positions = follow(reader)
    started(writer, "b.b2nd")  # segment 2
    started(writer, "c.b2nd")  # segment 3 (and segment 1 is removed)
    client.remove(segment_path(remote_dir, writer.writer, 2))
    gap = reader.read(positions)
    assert isinstance(gap, FullPass), gap
    client.remove(f"{remote_dir}/{JOURNAL_FOLDER}")
    gone = reader.read(gap.positions)
    assert isinstance(gone, FullPass) and gone.reason == f"journal {writer.writer} is gone"
    assert gone.positions == {}
    assert reader.read(gone.positions) == NoJournal()


def test_a_reader_never_writes_or_raises_on_any_of_it(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    """The reader only reads: after all of the above, the folder holds what writers put."""
    started(make_writer(), "a.b2nd")
    before = client.get_list(f"{remote_dir}/{JOURNAL_FOLDER}")
    reader = JournalReader(client, remote_dir)
    positions = follow(reader)
    for bad in (
        {},
        {"f" * 16: Position(9, 9, 9, 9, 9)},
        {w: Position(1, 10**9, 5, 0, 1) for w in positions},
    ):
        assert isinstance(reader.read(bad), FullPass)
    assert client.get_list(f"{remote_dir}/{JOURNAL_FOLDER}") == before


# -- two writers and a reader at the same time -----------------------------------------


def test_two_writers_and_a_reader_at_once_lose_nothing(
    server: LocalServer, client: Client, make_writer: MakeWriter, remote_dir: str, tmp_path: Path
) -> None:
    second = WriterStore(tmp_path / "second.db")
    other_host = Client(server.url, ALICE)  # each uploader, and the reader, its own client
    writers = [
        make_writer(quiet=0.01, max_delay=0.05),
        make_writer(client=other_host, state=second, identity="host-2", quiet=0.01, max_delay=0.05),
    ]
    for i, writer in enumerate(writers):
        started(writer, f"w{i}/first.b2nd")
    subscriber = Client(server.url, ALICE)
    reader = JournalReader(subscriber, remote_dir)
    positions = follow(reader)
    seen: dict[str, list[str]] = {w.writer: [] for w in writers}
    done = threading.Event()
    outcomes: list[object] = []

    def read_along() -> None:
        nonlocal positions
        while True:
            finished = done.is_set()
            got = reader.read(positions)
            outcomes.append(got)
            if isinstance(got, Incremental):
                for writer, reads in got.reads.items():
                    seen[writer] += [r.entry.name for r in reads]
                positions = got.positions
            if finished:
                return

    def write(i: int, writer: JournalWriter) -> None:
        for n in range(150):
            writer.record(Entry.sent(f"w{i}/f{n:03d}.b2nd", etag=f'"{i}-{n}"'))

    reading = threading.Thread(target=read_along)
    for writer in writers:
        writer.start()
    reading.start()
    writing = [threading.Thread(target=write, args=(i, w)) for i, w in enumerate(writers)]
    for thread in writing:
        thread.start()
    for thread in writing:
        thread.join()
    for writer in writers:
        writer.close()
    done.set()
    reading.join()
    second.close()
    other_host.close()
    subscriber.close()
    assert all(isinstance(o, Incremental) for o in outcomes), [
        o for o in outcomes if not isinstance(o, Incremental)
    ]
    for i, writer in enumerate(writers):
        assert seen[writer.writer] == [f"w{i}/f{n:03d}.b2nd" for n in range(150)]
