"""A subscribed folder is mirrored exactly, and a pass with no remote change moves no data."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blosc2
import h5py
import numpy as np
import pytest

from cat2sync import Client
from cat2sync.events import EventKind
from tests.helpers.mirror import files_below, open_daemon, put_array, put_bytes

INFO_BUDGET = 2048  # bytes of info JSON one unchanged entry may cost


def _structured(n: int) -> np.ndarray:
    arr = np.zeros(n, dtype=[("t", "<f8"), ("counts", "<i4"), ("ok", "?")])
    arr["t"] = np.linspace(0, 1, n)
    arr["counts"] = np.arange(n) % 97
    arr["ok"] = np.arange(n) % 3 == 0
    return arr


def _frame(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.arange(50_000, dtype="<i4")
    blosc2.SChunk(chunksize=40_000, data=data, urlpath=str(path), mode="w", cparams={"typesize": 4})
    return path


@pytest.fixture
def mixed_tree(client: Client, data_dir: Path, remote_dir: str) -> dict[str, Path]:
    """Nested datasets of several ranks and dtypes, a frame and regular files, uploaded to
    ``remote_dir``; returns relative name -> the local original."""
    rng = np.random.default_rng(7)
    arrays: dict[str, tuple[np.ndarray, dict[str, Any]]] = {
        "one.b2nd": (np.arange(10_000, dtype="f8"), {"chunks": (3000,)}),
        "deep/two.b2nd": (rng.integers(0, 1000, (300, 40)), {"chunks": (64, 16)}),
        "deep/er/three.b2nd": (
            np.linspace(0, 1, 6 * 50 * 7).reshape(6, 50, 7),
            {"chunks": (2, 25, 7)},
        ),
        "deep/er/still/records.b2nd": (_structured(5000), {"chunks": (1000,)}),
    }
    originals = {}
    for rel, (array, kwargs) in arrays.items():
        originals[rel] = put_array(client, data_dir / rel, f"{remote_dir}/{rel}", array, **kwargs)
    frame = _frame(data_dir / "frames/counts.b2frame")
    client.upload(frame, f"{remote_dir}/frames/counts.b2frame")
    originals["frames/counts.b2frame"] = frame
    scan = data_dir / "hdf5/scan.h5"
    scan.parent.mkdir()
    with h5py.File(scan, "w") as h5:
        h5["frames"] = np.arange(600, dtype="u2").reshape(6, 10, 10)
        h5["meta/temperature"] = np.linspace(290, 300, 11)
    client.upload(scan, f"{remote_dir}/hdf5/scan.h5")  # the server sees it as a folder
    originals["hdf5/scan.h5"] = scan
    text = "".join(f"line {i}: ünïcode ✓\n" for i in range(2000)).encode()
    originals["notes/readme.txt"] = put_bytes(
        client, data_dir / "notes/readme.txt", f"{remote_dir}/notes/readme.txt", text
    )
    doc = json.dumps({"run": 7, "sample": "Fe₂O₃", "temps": list(range(100))}).encode()
    originals["meta.json"] = put_bytes(
        client, data_dir / "meta.json", f"{remote_dir}/meta.json", doc
    )
    return originals


def test_folder_is_mirrored_exactly(
    subscription: Callable[..., Path], mirror_dir: Path, mixed_tree: dict[str, Path]
) -> None:
    with open_daemon(subscription()) as h:
        events = h.mirror_pass()

    assert [e for e in events if e.kind != EventKind.DOWNLOADED] == []
    assert sorted(e.path for e in events) == sorted(mixed_tree)
    local = files_below(mirror_dir)
    for event in events:  # each counts its own bytes, though they ran concurrently
        if Path(event.path).suffix not in (".txt", ".json"):  # those travel compressed
            assert event.bytes == local[event.path].stat().st_size, event
    assert sorted(local) == sorted(mixed_tree)  # nothing more (no temporary files left)
    for rel, original in mixed_tree.items():
        # Datasets arrive as the stored file, regular files as their original bytes.
        assert local[rel].read_bytes() == original.read_bytes(), rel
    records = blosc2.open(str(mirror_dir / "deep/er/still/records.b2nd"))[:]
    np.testing.assert_array_equal(records, _structured(5000))


def test_a_file_the_server_cannot_read_is_skipped(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    put_bytes(client, data_dir / "broken.b2nd", f"{remote_dir}/broken.b2nd", b"not blosc2" * 9)
    put_bytes(client, data_dir / "fine.json", f"{remote_dir}/fine.json", b"{}")
    with open_daemon(subscription()) as h:
        events = h.mirror_pass()

    assert {(e.kind, e.path) for e in events} == {
        (EventKind.SKIPPED, "broken.b2nd"),
        (EventKind.DOWNLOADED, "fine.json"),
    }
    assert sorted(files_below(mirror_dir)) == ["fine.json"]


def test_second_pass_moves_no_data(
    subscription: Callable[..., Path], mirror_dir: Path, mixed_tree: dict[str, Path]
) -> None:
    with open_daemon(subscription()) as h:
        h.mirror_pass()
        before = {
            rel: (p.stat().st_mtime_ns, p.stat().st_ino)
            for rel, p in files_below(mirror_dir).items()
        }
        received = h.received
        events = h.mirror_pass()
        received = h.received - received

    assert events == []
    assert received < INFO_BUDGET * len(mixed_tree), received
    after = {
        rel: (p.stat().st_mtime_ns, p.stat().st_ino) for rel, p in files_below(mirror_dir).items()
    }
    assert after == before  # not even rewritten


def test_no_change_pass_over_many_datasets(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    subscription: Callable[..., Path],
    mirror_dir: Path,
) -> None:
    count = 200
    source = put_array(
        client, data_dir / "small.b2nd", f"{remote_dir}/seed.b2nd", np.arange(64, dtype="i4")
    )
    for i in range(count - 1):
        client.upload(source, f"{remote_dir}/d{i // 50}/ds{i:03d}.b2nd")
    with open_daemon(subscription(concurrency=8)) as h:
        requests = h.client.stats.requests
        first = h.mirror_pass()
        assert sum(e.kind == EventKind.DOWNLOADED for e in first) == count
        # A dataset never mirrored costs one request: its fetch carries the ETag.
        assert h.client.stats.requests - requests == count + 1
        assert (mirror_dir / "d3/ds198.b2nd").read_bytes() == source.read_bytes()
        received, requests = h.received, h.client.stats.requests
        started = time.perf_counter()
        events = h.mirror_pass()
        elapsed = time.perf_counter() - started
        received, requests = h.received - received, h.client.stats.requests - requests

    print(
        f"\nno-change pass over {count} remote datasets: {elapsed:.2f} s, "
        f"{requests} requests, {received} bytes received (info JSON only)"
    )
    assert events == []
    assert requests == count + 1  # one list, one info per dataset
    assert received < INFO_BUDGET * count
    assert len(files_below(mirror_dir)) == count
