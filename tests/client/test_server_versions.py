"""What the client does differently on a 2025 server, and what it costs on each version.

Every test here runs against both servers (see conftest.py); ``needs_2025`` marks the
ones about a 2025 server's fallbacks, ``needs_2026`` the ones that pin the 2026 costs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from cat2sync import Client, NotFound, RemoteError, Unsupported
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE

A = np.arange(60, dtype="f8").reshape(6, 10)


def requests_for(client: Client, action: Callable[[], Any]) -> int:
    before = client.stats.requests
    action()
    return client.stats.requests - before


@pytest.fixture
def fresh(server: LocalServer) -> Client:
    """Alice on a client that has learned nothing about its server yet."""
    client = Client(server.url, ALICE)
    yield client
    client.close()


@pytest.fixture
def dataset(alice: Client, remote_dir: str, make_b2nd) -> str:
    remote = f"{remote_dir}/a.b2nd"
    alice.upload(make_b2nd("a.b2nd", A, chunks=(3, 10)), remote)
    return remote


@pytest.fixture
def notes(alice: Client, remote_dir: str, data_dir: Path) -> tuple[str, bytes]:
    """A compressible regular file on the server: ``(remote path, its bytes)``."""
    original = "".join(f"line {i}: nothing new\n" for i in range(20_000)).encode()
    (data_dir / "notes.txt").write_bytes(original)
    remote = f"{remote_dir}/notes.txt"
    alice.upload(data_dir / "notes.txt", remote)
    return remote, original


def temporaries(client: Client) -> list[str]:
    return [n for n in client.get_list("@personal") if ".cat2sync-" in n]


# -- what each operation costs -------------------------------------------------------


@pytest.mark.needs_2026("pins the request counts of a 2026 server")
def test_no_detection_request_on_a_2026_server(
    fresh: Client, dataset: str, notes: tuple[str, bytes], remote_dir: str, tmp_path: Path
) -> None:
    c = fresh
    assert requests_for(c, lambda: c.stat(dataset)) == 1
    assert requests_for(c, lambda: c.fetch_to(dataset, tmp_path / "a.b2nd")) == 1
    assert requests_for(c, lambda: c.download_to(notes[0], tmp_path / "notes.txt")) == 1
    assert requests_for(c, lambda: c.concatenate([dataset] * 2, f"{remote_dir}/c", 0)) == 1
    assert requests_for(c, lambda: c.stack([dataset] * 2, f"{remote_dir}/s", 0)) == 1
    assert requests_for(c, lambda: c.lazyexpr_at(f"{remote_dir}/e", "a * 2", {"a": dataset})) == 1


@pytest.mark.needs_2025("the fallbacks of a 2025 server")
def test_a_2025_server_is_detected_once_per_client(
    fresh: Client, dataset: str, remote_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    c = fresh
    caplog.set_level(logging.INFO, logger="cat2sync.client")
    # upload_lazyarr (404), GET /api/peer (404), /api/concat/ (500), lazyexpr, move.
    assert requests_for(c, lambda: c.concatenate([dataset] * 2, f"{remote_dir}/c1", 0)) == 5
    assert requests_for(c, lambda: c.concatenate([dataset] * 2, f"{remote_dir}/c2", 0)) == 2
    assert requests_for(c, lambda: c.stack([dataset] * 2, f"{remote_dir}/s", 0)) == 1
    assert requests_for(c, lambda: c.lazyexpr_at(f"{remote_dir}/e", "a * 2", {"a": dataset})) == 2
    assert requests_for(c, lambda: c.stat(dataset)) == 2  # a byte of a fetch, then info
    assert requests_for(c, lambda: c.stat(dataset)) == 2
    for name in ("c1", "c2"):
        np.testing.assert_array_equal(c.fetch(f"{remote_dir}/{name}.b2nd"), np.concatenate([A, A]))
    np.testing.assert_array_equal(c.fetch(f"{remote_dir}/s.b2nd"), np.stack([A, A]))
    np.testing.assert_array_equal(c.fetch(f"{remote_dir}/e.b2nd"), A * 2)
    assert temporaries(c) == []
    notes = [r.getMessage() for r in caplog.records if r.name == "cat2sync.client"]
    assert len(notes) == 3, notes  # upload_lazyarr, /api/concat/, ETag: each said once
    assert all(c.urlbase in note for note in notes)


@pytest.mark.needs_2025("the fallbacks of a 2025 server")
def test_the_first_stat_on_a_2025_server(fresh: Client, dataset: str) -> None:
    # info (no ETag), GET /api/peer, then the fallback's own pair.
    assert requests_for(fresh, lambda: fresh.stat(dataset)) == 4


# -- change detection ----------------------------------------------------------------


def test_stat_and_a_whole_fetch_give_the_same_etag(
    alice: Client, dataset: str, make_b2nd, tmp_path: Path
) -> None:
    # The mirror records the ETag of its first fetch and compares stat's with it later.
    _, fetched = alice.fetch_to(dataset, tmp_path / "a.b2nd")
    _, etag = alice.stat(dataset)
    assert fetched and etag == fetched
    alice.append(dataset, np.zeros((2, 10)))
    _, grown = alice.stat(dataset)
    assert grown != etag
    assert alice.fetch_to(dataset, tmp_path / "a.b2nd")[1] == grown
    alice.upload(make_b2nd("same.b2nd", A, chunks=(3, 10)), dataset)  # same bytes again
    _, rewritten = alice.stat(dataset)
    assert rewritten not in (etag, grown)
    alice.upload(make_b2nd("same.b2nd", A, chunks=(3, 10)), f"{dataset}.new.b2nd")
    alice.move(f"{dataset}.new.b2nd", dataset)  # another file (same bytes) takes its place
    assert alice.stat(dataset)[1] not in (etag, grown, rewritten)


def test_a_regular_file_has_an_etag_that_changes(
    alice: Client, notes: tuple[str, bytes], data_dir: Path
) -> None:
    remote, original = notes
    info, etag = alice.stat(remote)
    assert info["nbytes"] == len(original)
    assert etag
    (data_dir / "notes.txt").write_bytes(original + b"one more line\n")
    alice.upload(data_dir / "notes.txt", remote)
    assert alice.stat(remote)[1] not in (None, etag)


@pytest.mark.needs_2025("only a 2025 server can store an uncomputed expression")
def test_a_stored_expression_has_no_etag(alice: Client, dataset: str, tmp_path: Path) -> None:
    # Another client (the seed's, whose default is compute=False) stored an expression:
    # its file stays the same while its operands change, so nothing may call it unchanged.
    alice._t.request(
        "POST",
        "/api/lazyexpr/",
        json={
            "name": "stored",
            "expression": "a * 3",
            "operands": {"a": dataset},
            "compute": False,
        },
    )
    info, etag = alice.stat("@personal/stored.b2nd")
    assert info["expression"] == "a * 3"
    assert etag is None
    assert alice.fetch_to("@personal/stored.b2nd", tmp_path / "x.b2nd")[1] is None
    alice.remove("@personal/stored.b2nd")


# -- what a 2025 server cannot do ----------------------------------------------------


@pytest.mark.needs_2025("a 2025 server answers 500 for a folder's info")
def test_a_folder_is_unsupported_not_missing(alice: Client, dataset: str, remote_dir: str) -> None:
    for describe in (alice.get_info, alice.get, alice.stat):
        with pytest.raises(Unsupported) as err:
            describe(remote_dir)
        assert err.value.path == remote_dir
    assert alice.get_list(remote_dir) == ["a.b2nd"]
    with pytest.raises(NotFound):
        alice.get_info(f"{remote_dir}/missing.b2nd")


def test_download_of_an_hdf5_file(
    alice: Client, remote_dir: str, data_dir: Path, tmp_path: Path, legacy: bool
) -> None:
    local = data_dir / "t.h5"
    with h5py.File(local, "w") as h5:
        h5["x"] = np.arange(10)
    alice.upload(local, f"{remote_dir}/t.h5")
    if legacy:  # its download starts, then fails: every time
        for _ in range(2):  # before and after the client knows the server
            with pytest.raises(Unsupported):
                alice.download_to(f"{remote_dir}/t.h5", tmp_path / "t.h5")
        assert not (tmp_path / "t.h5").exists()
    else:
        alice.download_to(f"{remote_dir}/t.h5", tmp_path / "t.h5")
        assert (tmp_path / "t.h5").read_bytes() == local.read_bytes()
    # Unfolded, its datasets are served by both.
    unfolded = alice.unfold(f"{remote_dir}/t.h5")
    np.testing.assert_array_equal(alice.fetch(f"{unfolded}/x.b2nd"), np.arange(10))


@pytest.mark.needs_2025("a 2025 server ignores Accept-Encoding: blosc2")
def test_regular_files_travel_compressed_once_the_client_knows(
    fresh: Client, notes: tuple[str, bytes], tmp_path: Path
) -> None:
    remote, original = notes
    cbytes = fresh.get_info(remote)["cbytes"]
    for attempt in ("decompressed by the server", "as the stored frame"):
        before = fresh.stats.bytes_received
        fresh.download_to(remote, tmp_path / attempt)
        received = fresh.stats.bytes_received - before
        assert (tmp_path / attempt).read_bytes() == original
    assert received < cbytes + 1024 < len(original), attempt


def test_a_result_for_a_path_leaves_no_temporary_behind(
    alice: Client, dataset: str, remote_dir: str
) -> None:
    assert alice.lazyexpr_at(f"{remote_dir}/sub/e.b2nd", "a + 1", {"a": dataset}) == (
        f"{remote_dir}/sub/e.b2nd"
    )
    np.testing.assert_array_equal(alice.fetch(f"{remote_dir}/sub/e.b2nd"), A + 1)
    with pytest.raises(RemoteError):  # no such root: refused, whatever the server
        alice.lazyexpr_at("@nowhere/e.b2nd", "a + 1", {"a": dataset})
    assert temporaries(alice) == []
