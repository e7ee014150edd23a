"""Subscriptions follow the uploaders' change journals, against the real server: a pass
that finds no change costs at most 3 requests whatever the number of files, a pass
after K changes at most 3 + 2K, and full passes still catch writers without a journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.manifest import load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, grow_b2nd, read_b2nd, run_once, write_b2nd, write_manifest
from tests.helpers.daemon import upload_rule
from tests.helpers.mirror import Harness, files_below, open_daemon, subscribe_rule
from tests.helpers.remote import remote_bytes

FILES = 40


class Fleet:
    """One uploader shipping ``data`` into ``remote``, and one subscriber of it."""

    def __init__(self, tmp_path: Path, server: LocalServer, remote: str, **upload: Any) -> None:
        self.data = tmp_path / "data"
        self.data.mkdir(parents=True)
        (tmp_path / "up").mkdir()
        (tmp_path / "down").mkdir()
        self.mirror = tmp_path / "mirror"
        self.uploader = load_manifest(
            write_manifest(
                tmp_path / "up" / "cat2sync.toml",
                url=server.url,
                username=ALICE[0],
                password=ALICE[1],
                upload=[upload_rule(self.data, remote, **upload)],
            )
        )
        self.subscriber = write_manifest(
            tmp_path / "down" / "cat2sync.toml",
            url=server.url,
            username=ALICE[0],
            password=ALICE[1],
            subscribe=[subscribe_rule(remote, self.mirror)],
        )

    def ship(self) -> None:
        assert run_once(self.uploader).failures == 0

    def frames(self, n: int) -> Path:
        return self.data / f"f{n:03d}.b2nd"


def _pass(h: Harness, **kw: Any) -> tuple[int, list[Any]]:
    """One subscription pass: the requests it cost, and its events."""
    before = h.client.stats.requests
    start = len(h.events)
    h.daemon.mirror_pass("mirror", **kw)
    return h.client.stats.requests - before, h.events[start:]


@pytest.fixture
def fleet(tmp_path: Path, server: LocalServer, remote_dir: str) -> Fleet:
    fleet = Fleet(tmp_path, server, remote_dir)
    for n in range(FILES):
        write_b2nd(fleet.frames(n), np.full((20, 4), float(n)), chunks=(10, 4))
    (fleet.data / "notes.txt").write_text("beam stable\n")
    fleet.ship()
    return fleet


def test_no_change_costs_a_few_requests_whatever_the_number_of_files(fleet: Fleet) -> None:
    with open_daemon(fleet.subscriber) as h:
        requests, events = _pass(h)  # the first pass lists: everything comes
        assert len([e for e in events if e.kind == EventKind.DOWNLOADED]) == FILES + 1
        assert requests >= FILES
        requests, events = _pass(h)
        assert events == [] and requests <= 3
    mirrored = files_below(fleet.mirror)
    assert sorted(mirrored) == sorted([f"f{n:03d}.b2nd" for n in range(FILES)] + ["notes.txt"])
    assert not any(".cat2sync" in name for name in mirrored)  # journals are never data


def test_k_changes_cost_at_most_3_plus_2k(fleet: Fleet, client: Client, remote_dir: str) -> None:
    with open_daemon(fleet.subscriber) as h:
        _pass(h)
        grow_b2nd(fleet.frames(0), np.ones((5, 4)))  # appended
        write_b2nd(fleet.frames(1), np.zeros((30, 4)), chunks=(10, 4))  # rewritten
        fleet.frames(2).rename(fleet.data / "renamed.b2nd")  # moved
        (fleet.data / "notes.txt").write_text("beam lost\n")  # a regular file, replaced
        write_b2nd(fleet.data / "new.b2nd", np.arange(8.0), chunks=(4,))  # new
        fleet.ship()
        requests, events = _pass(h)
    assert requests <= 3 + 2 * 5, requests
    kinds = sorted((e.kind.value, e.path) for e in events)
    assert ("moved", "renamed.b2nd") in kinds
    for name in ("f000.b2nd", "f001.b2nd", "renamed.b2nd", "new.b2nd"):
        np.testing.assert_array_equal(read_b2nd(fleet.mirror / name), read_b2nd(fleet.data / name))
    assert (fleet.mirror / "notes.txt").read_text() == "beam lost\n"
    assert not (fleet.mirror / "f002.b2nd").exists()  # moved away, not copied


def test_a_writer_without_journal_is_caught_by_the_next_full_pass(
    fleet: Fleet, client: Client, remote_dir: str
) -> None:
    foreign = fleet.data.parent / "foreign.txt"
    foreign.write_text("written with the web UI\n")
    with open_daemon(fleet.subscriber) as h:
        _pass(h)
        client.upload(foreign, f"{remote_dir}/foreign.txt")  # no journal entry for it
        _, events = _pass(h)
        assert events == []  # a journal pass cannot know
        _, events = _pass(h, full=True)  # what `cat2sync once --full` runs
    assert [e.path for e in events] == ["foreign.txt"]
    assert (fleet.mirror / "foreign.txt").read_text() == "written with the web UI\n"


def test_a_journal_it_cannot_trust_means_a_full_pass(
    fleet: Fleet, client: Client, remote_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    with open_daemon(fleet.subscriber) as h:
        _pass(h)
        [segment] = [n for n in client.get_list(f"{remote_dir}/.cat2sync") if n.startswith("j1-")]
        client.append(f"{remote_dir}/.cat2sync/{segment}", np.frombuffer(b"garbage\n", np.uint8))
        (fleet.data / "notes.txt").write_text("changed\n")
        fleet.ship()
        with caplog.at_level("INFO", logger="cat2sync"):
            requests, events = _pass(h)
    assert requests > FILES  # listed and asked about every file
    assert [e.path for e in events if e.kind == EventKind.DOWNLOADED] == ["notes.txt"]
    [line] = [r.getMessage() for r in caplog.records if "a full pass:" in r.getMessage()]
    assert "\n" not in line and "journal" in line


def test_without_journals_a_folder_is_mirrored_as_before(
    tmp_path: Path, server: LocalServer, remote_dir: str
) -> None:
    fleet = Fleet(tmp_path, server, remote_dir, journal=False)
    for n in range(5):
        write_b2nd(fleet.frames(n), np.full((20, 4), float(n)), chunks=(10, 4))
    fleet.ship()
    with open_daemon(fleet.subscriber) as h:
        _pass(h)
        requests, events = _pass(h)
    assert events == [] and requests == 1 + 5  # a listing, an info per file


def test_two_uploaders_and_a_subscriber(
    tmp_path: Path, server: LocalServer, client: Client, remote_dir: str
) -> None:
    first = Fleet(tmp_path / "a", server, remote_dir)
    second = Fleet(tmp_path / "b", server, remote_dir, include=["b-*"])
    (first.data / "a-1.txt").write_text("from a\n")
    (second.data / "b-1.txt").write_text("from b\n")
    first.ship()
    second.ship()
    writers = [n for n in client.get_list(f"{remote_dir}/.cat2sync") if n.startswith("j1-")]
    assert len({n.split("-")[1] for n in writers}) == 2  # one journal per writer
    with open_daemon(first.subscriber) as h:
        _pass(h)
        (first.data / "a-2.txt").write_text("more from a\n")
        (second.data / "b-2.txt").write_text("more from b\n")
        first.ship()
        second.ship()
        requests, events = _pass(h)
    assert requests <= 3 + 1 + 2 * 2  # one more request for the second journal
    assert sorted(e.path for e in events) == ["a-2.txt", "b-2.txt"]
    assert remote_bytes(client, f"{remote_dir}/b-2.txt") == b"more from b\n"
