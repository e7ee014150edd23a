"""The journal writer on the real server: batches, repair after a kill, lost answers,
foreign writes, rotation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from helpers.journal import MakeWriter, WriterStore, journal_entries

from cat2sync.client import Client
from cat2sync.errors import TransportError
from cat2sync.journal import JOURNAL_FOLDER, Entry, FullPass, Incremental, JournalReader, Op
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE


def names_in(client: Client, folder: str) -> list[str]:
    """Every journaled name, in journal order, over all writers."""
    return [e.name for entries in journal_entries(client, folder).values() for _, e in entries]


def seqs_in(client: Client, folder: str) -> list[int]:
    (entries,) = journal_entries(client, folder).values()
    return [seq for seq, _ in entries]


def segments_in(client: Client, folder: str) -> list[str]:
    return sorted(n for n in client.get_list(f"{folder}/{JOURNAL_FOLDER}") if n.startswith("j1-"))


def test_a_burst_of_entries_costs_one_append_per_flush(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    writer = make_writer()
    for i in range(300):
        writer.record(Entry.sent(f"run/f{i:03d}.b2nd", etag=f'"e{i}"'))
    before = client.stats.requests
    assert writer.flush() == 300
    assert client.stats.requests - before == 3  # a new journal: list, upload, move
    for i in range(300, 600):
        writer.record(Entry.sent(f"run/f{i:03d}.b2nd"))
    before = client.stats.requests
    assert writer.flush() == 300
    assert client.stats.requests - before == 1  # one append for 300 entries
    assert writer.flush() == 0 and client.stats.requests - before == 1
    assert names_in(client, remote_dir) == [f"run/f{i:03d}.b2nd" for i in range(600)]
    assert seqs_in(client, remote_dir) == list(range(1, 601))
    assert segments_in(client, remote_dir) == [f"j1-{writer.writer}-000001.b2nd"]


def test_the_background_flush_writes_after_a_quiet_moment_and_at_close(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    writer = make_writer(quiet=0.05, max_delay=0.5)
    writer.start()
    writer.record(Entry.sent("a.b2nd"))
    deadline = time.monotonic() + 30
    while not client.get_list(f"{remote_dir}/{JOURNAL_FOLDER}"):
        assert time.monotonic() < deadline, "the entry never reached the server"
        time.sleep(0.05)
    quiet = make_writer(quiet=60, max_delay=60)  # a second rule into the same folder
    quiet.start()
    quiet.record(Entry.removed("b.b2nd"))
    quiet.close()
    writer.close()
    assert sorted(names_in(client, remote_dir)) == ["a.b2nd", "b.b2nd"]


def test_a_change_is_announced_before_and_journaled_after(
    client: Client, make_writer: MakeWriter, remote_dir: str, store: WriterStore
) -> None:
    writer = make_writer()
    with writer.change("a.b2nd") as change:
        assert [r.entry for r in store.journal_pending("up")] == [None]  # announced
        change.record(Entry.sent("a.b2nd", etag='"e1"'))
    with writer.change("b.b2nd") as change:
        change.nothing()  # it failed before any write: nothing to journal
    with pytest.raises(RuntimeError), writer.change("c.b2nd", "d.b2nd"):
        raise RuntimeError("the move timed out: it may or may not have happened")
    writer.flush()
    got = [
        (e.op, e.name)
        for e in (e for es in journal_entries(client, remote_dir).values() for _, e in es)
    ]
    assert got == [(Op.SENT, "a.b2nd"), (Op.CHECK, "c.b2nd"), (Op.CHECK, "d.b2nd")]
    assert store.journal_pending("up") == []


def test_a_writer_killed_mid_change_repairs_its_journal_at_the_next_start(
    client: Client, make_writer: MakeWriter, remote_dir: str, store: WriterStore
) -> None:
    dead = make_writer(killed=True)
    dead.record(Entry.sent("shipped-before.b2nd"))
    dead.flush()
    dead.record(Entry.sent("recorded-not-appended.b2nd"))
    dead.change("under-way.b2nd").__enter__()  # killed before the change was recorded
    # ... SIGKILL here; the next run of the same rule:
    again = make_writer()
    assert again.writer == dead.writer
    again.start()
    again.close()
    entries = [e for es in journal_entries(client, remote_dir).values() for _, e in es]
    assert [(e.op, e.name) for e in entries] == [
        (Op.SENT, "shipped-before.b2nd"),
        (Op.SENT, "recorded-not-appended.b2nd"),
        (Op.CHECK, "under-way.b2nd"),
    ]
    assert store.journal_pending("up") == []


def test_an_append_whose_state_write_was_lost_is_not_journaled_twice(
    client: Client,
    make_writer: MakeWriter,
    remote_dir: str,
    store: WriterStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = make_writer(killed=True)
    dead.record(Entry.sent("a.b2nd"))
    dead.flush()
    dead.record(Entry.sent("b.b2nd"))
    dead.record(Entry.sent("c.b2nd"))

    def killed(*args: object, **kwargs: object) -> None:
        raise SystemExit("SIGKILL between the append and the state write")

    with monkeypatch.context() as patch:
        patch.setattr(store, "put_journal_cursor", killed)
        with pytest.raises(SystemExit):
            dead.flush()  # b and c are on the server; the state does not know
    again = make_writer()
    again.record(Entry.sent("d.b2nd"))
    again.flush()
    assert names_in(client, remote_dir) == ["a.b2nd", "b.b2nd", "c.b2nd", "d.b2nd"]
    assert seqs_in(client, remote_dir) == [1, 2, 3, 4]
    assert len(segments_in(client, remote_dir)) == 1  # it just carried on


class _LosesAnAppendAnswer(httpx.HTTPTransport):
    """Sends every request; the answer to the first append is lost on the way back."""

    lost = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.startswith("/api/append/") and not self.lost:
            self.lost = True
            response.close()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


@pytest.fixture
def lossy_client(server: LocalServer) -> Iterator[Client]:
    with Client(server.url, ALICE, transport=_LosesAnAppendAnswer()) as c:
        yield c


def test_an_append_whose_answer_was_lost_is_checked_before_the_next(
    client: Client, lossy_client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    writer = make_writer(client=lossy_client)
    writer.record(Entry.sent("a.b2nd"))
    writer.flush()
    writer.record(Entry.sent("b.b2nd"))
    with pytest.raises(TransportError):
        writer.flush()  # b was appended; its answer was lost
    writer.record(Entry.sent("c.b2nd"))
    writer.flush()
    assert names_in(client, remote_dir) == ["a.b2nd", "b.b2nd", "c.b2nd"]
    assert seqs_in(client, remote_dir) == [1, 2, 3]


def test_a_journal_someone_else_wrote_into_is_left_for_a_new_segment(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    writer = make_writer()
    writer.record(Entry.sent("a.b2nd"))
    writer.flush()
    reader = JournalReader(client, remote_dir)
    first = reader.read({})
    assert isinstance(first, FullPass)
    (segment,) = segments_in(client, remote_dir)
    client.append(f"{remote_dir}/{JOURNAL_FOLDER}/{segment}", np.frombuffer(b"junk\n", np.uint8))
    writer.record(Entry.sent("b.b2nd"))
    writer.flush()
    assert len(segments_in(client, remote_dir)) == 2
    damaged = reader.read(first.positions)
    assert isinstance(damaged, FullPass) and "checksum" in damaged.reason
    writer.record(Entry.sent("c.b2nd"))
    writer.flush()
    after = reader.read(damaged.positions)  # it resumes in the new segment
    assert isinstance(after, Incremental)
    assert [c.name for c in after.changes] == ["c.b2nd"]


def test_a_removed_journal_is_started_again(
    client: Client, make_writer: MakeWriter, remote_dir: str
) -> None:
    writer = make_writer()
    writer.record(Entry.sent("a.b2nd"))
    writer.flush()
    client.remove(f"{remote_dir}/{JOURNAL_FOLDER}")
    writer.record(Entry.sent("b.b2nd"))
    writer.flush()
    assert segments_in(client, remote_dir) == [f"j1-{writer.writer}-000002.b2nd"]
    assert names_in(client, remote_dir) == ["b.b2nd"]


def test_segments_rotate_and_only_the_last_two_are_kept(
    client: Client, make_writer: MakeWriter, remote_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cat2sync.journal._writer.SEGMENT_BYTES", 600)
    writer = make_writer()
    reader = JournalReader(client, remote_dir)
    writer.record(Entry.sent("first.b2nd"))
    writer.flush()
    start = reader.read({})
    assert isinstance(start, FullPass)
    positions, seen = start.positions, []
    for i in range(40):
        writer.record(Entry.sent(f"f{i:02d}.b2nd", etag=f'"etag-{i}"'))
        writer.flush()
        assert len(segments_in(client, remote_dir)) <= 2
        if i % 2:  # the reader keeps up, one read for two flushes
            got = reader.read(positions)
            assert isinstance(got, Incremental), got
            seen += [c.name for c in got.changes]
            positions = got.positions
    assert seen == [f"f{i:02d}.b2nd" for i in range(40)]
    assert writer.flush() == 0
    last = segments_in(client, remote_dir)[-1]
    assert int(last.rsplit("-", 1)[1].split(".")[0]) > 5  # it did rotate, many times
    for i in range(40, 60):  # a reader away for more than a segment...
        writer.record(Entry.sent(f"f{i:02d}.b2nd", etag=f'"etag-{i}"'))
        writer.flush()
    away = reader.read(positions)
    assert isinstance(away, FullPass) and "removed before it was read out" in away.reason


def test_a_state_copied_elsewhere_or_a_new_folder_gets_a_writer_of_its_own(
    client: Client, make_writer: MakeWriter, remote_dir: str, store: WriterStore
) -> None:
    writer = make_writer()
    writer.record(Entry.sent("a.b2nd"))
    writer.flush()
    assert make_writer().writer == writer.writer  # the same rule, restarted
    copied = make_writer(identity="other-host:/state")
    assert copied.writer != writer.writer
    store.add_journal_pending("up", ["x.b2nd"], None)
    moved = make_writer(folder=f"{remote_dir}-elsewhere")
    assert moved.writer not in (writer.writer, copied.writer)
    assert store.journal_pending("up") == []  # names of the old folder are dropped


@pytest.mark.parametrize("rotating", [False, True])
def test_a_segment_made_just_before_a_kill_is_taken_over_at_the_next_start(
    client: Client,
    make_writer: MakeWriter,
    remote_dir: str,
    store: WriterStore,
    monkeypatch: pytest.MonkeyPatch,
    rotating: bool,
) -> None:
    monkeypatch.setattr("cat2sync.journal._writer.SEGMENT_BYTES", 300)
    dead = make_writer(killed=True)
    if rotating:
        dead.record(Entry.sent("a.b2nd"))
        dead.flush()
    reader = JournalReader(client, remote_dir)
    positions = reader.read({}).positions if rotating else {}
    dead.record(Entry.sent("b" * 100 + ".b2nd"))

    def killed(*args: object, **kwargs: object) -> None:
        raise SystemExit("SIGKILL after the segment was moved into place")

    with monkeypatch.context() as patch:
        patch.setattr(store, "put_journal_cursor", killed)
        with pytest.raises(SystemExit):
            dead.flush()
    again = make_writer()
    again.start()
    if rotating:  # a reader follows into the segment taken over, in a journal pass
        got = reader.read(positions)
        assert isinstance(got, Incremental), got
        assert [c.name for c in got.changes] == ["b" * 100 + ".b2nd"]
    again.record(Entry.sent("c.b2nd"))
    again.flush()
    assert names_in(client, remote_dir) == ["b" * 100 + ".b2nd", "c.b2nd"]
    assert seqs_in(client, remote_dir) == ([2, 3] if rotating else [1, 2])
    assert len(segments_in(client, remote_dir)) == 2


def test_a_name_no_subscriber_can_mirror_is_not_journaled(
    client: Client, make_writer: MakeWriter, remote_dir: str, store: WriterStore
) -> None:
    writer = make_writer()
    with writer.change("bad\x1bname.b2nd") as change:  # a mirror skips it: unsafe name
        change.record(Entry.sent("bad\x1bname.b2nd"))
    writer.record(Entry.sent("good.b2nd"))
    writer.flush()
    assert names_in(client, remote_dir) == ["good.b2nd"]
    assert store.journal_pending("up") == []
