"""Growing arrays: only the new rows travel; anything else falls back to a whole upload."""

from __future__ import annotations

from pathlib import Path

import blosc2
import numpy as np

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.testing import grow_b2nd, read_b2nd, run_once, write_b2nd
from tests.helpers.daemon import MakeManifest

COLS = 1000
MULTIPART_OVERHEAD = 4096  # per request: multipart framing, headers of the cframe


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    # Integers stored as float64 compress to roughly a sixth: the new rows' compressed
    # size is well apart from their raw size and from the whole file's.
    return rng.integers(0, 1000, (n, COLS)).astype(np.float64)


def _cbytes(path: Path) -> int:
    return int(blosc2.open(str(path), mode="r").schunk.cbytes)


def test_growing_array_sends_only_new_rows(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    rng = np.random.default_rng(1)
    path = write_b2nd(data_dir / "frames.b2nd", _rows(rng, 400), chunks=(100, COLS))
    manifest = make_manifest()
    remote = f"{remote_dir}/frames.b2nd"

    first = run_once(manifest)
    assert first.failures == 0
    assert first.kinds() == [EventKind.UPLOADED]
    assert np.array_equal(client.fetch(remote), read_b2nd(path))

    sent = new_cbytes = requests = whole = 0
    for growth in (100, 100, 50, 50, 100):  # the 50s leave a partial chunk row behind
        before = _cbytes(path)
        grow_b2nd(path, _rows(rng, growth))
        grown = _cbytes(path) - before
        done = run_once(manifest)
        assert done.failures == 0
        assert done.kinds() == [EventKind.APPENDED]
        assert done.events[0].rows == growth
        assert done.bytes_sent < 1.5 * grown + MULTIPART_OVERHEAD * done.requests
        assert np.array_equal(client.fetch(remote), read_b2nd(path))
        sent += done.bytes_sent
        new_cbytes += grown
        requests += done.requests
        whole += path.stat().st_size  # what re-uploading the whole file would have cost

    print(
        f"\nappends: {sent} bytes sent for {new_cbytes} bytes of new compressed rows "
        f"({sent / new_cbytes:.2f}x) in {requests} requests; whole-file uploads instead: "
        f"{whole} bytes"
    )
    assert sent < whole / 4


def test_changed_prefix_falls_back_to_whole_upload(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    rng = np.random.default_rng(2)
    path = write_b2nd(data_dir / "frames.b2nd", _rows(rng, 150), chunks=(100, COLS))
    manifest = make_manifest()
    remote = f"{remote_dir}/frames.b2nd"
    assert run_once(manifest).kinds() == [EventKind.UPLOADED]

    # An early row changes while the array also grows: appending would be wrong.
    arr = blosc2.open(str(path), mode="a")
    arr[5] = -1.0
    del arr
    grow_b2nd(path, _rows(rng, 100))
    done = run_once(manifest)
    assert done.failures == 0
    assert done.kinds() == [EventKind.UPLOADED]
    assert np.array_equal(client.fetch(remote), read_b2nd(path))

    # A change in the rows after the last complete chunk row (the "tail") counts too.
    arr = blosc2.open(str(path), mode="a")
    arr[210] = -2.0
    del arr
    grow_b2nd(path, _rows(rng, 10))
    done = run_once(manifest)
    assert done.kinds() == [EventKind.UPLOADED]
    assert np.array_equal(client.fetch(remote), read_b2nd(path))

    # And a clean growth after that appends again.
    grow_b2nd(path, _rows(rng, 40))
    done = run_once(manifest)
    assert done.kinds() == [EventKind.APPENDED]
    assert np.array_equal(client.fetch(remote), read_b2nd(path))


def test_append_with_several_chunks_per_row(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    # Partial chunks along every axis: a row of chunks is several chunks, the last ones short.
    rng = np.random.default_rng(5)
    block = rng.integers(0, 100, (30, 20, 50)).astype(np.int32)
    path = write_b2nd(data_dir / "cube.b2nd", block, chunks=(8, 7, 20))
    manifest = make_manifest()
    remote = f"{remote_dir}/cube.b2nd"
    assert run_once(manifest).kinds() == [EventKind.UPLOADED]
    for growth in (5, 17, 8):
        grow_b2nd(path, rng.integers(0, 100, (growth, 20, 50)).astype(np.int32))
        done = run_once(manifest)
        assert done.kinds() == [EventKind.APPENDED]
        remote_data = client.fetch(remote)
        assert remote_data.dtype == np.int32
        assert np.array_equal(remote_data, read_b2nd(path))


def test_append_to_a_series_and_to_an_empty_array(
    make_manifest: MakeManifest, client: Client, data_dir: Path, remote_dir: str
) -> None:
    series = write_b2nd(data_dir / "series.b2nd", np.arange(1000.0), chunks=(256,))
    empty = write_b2nd(data_dir / "empty.b2nd", np.zeros((0, 10)), chunks=(4, 10))
    manifest = make_manifest()
    assert run_once(manifest).kinds() == [EventKind.UPLOADED] * 2
    grow_b2nd(series, np.arange(500.0))
    grow_b2nd(empty, np.ones((6, 10)))
    done = run_once(manifest)
    assert sorted((e.path, e.kind, e.rows) for e in done.events) == [
        ("empty.b2nd", EventKind.APPENDED, 6),
        ("series.b2nd", EventKind.APPENDED, 500),
    ]
    for path in (series, empty):
        assert np.array_equal(client.fetch(f"{remote_dir}/{path.name}"), read_b2nd(path))
