"""Remote arrays that grew are extended with their new chunks; replaced ones are re-fetched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.events import Event, EventKind
from cat2sync.testing import read_b2nd
from tests.helpers.mirror import open_daemon, put_array

CHUNK_OVERHEAD = 32  # bytes of header a compressed Blosc2 chunk may add to its data


def _rows(start: int, stop: int, width: int = 64) -> np.ndarray:
    """Rows of a noisy signal: compresses, but not to nothing."""
    rng = np.random.default_rng(start)
    base = np.sin(np.arange(start, stop)[:, None] / 50.0 + np.arange(width) / 10.0)
    return base + rng.normal(0, 0.01, (stop - start, width)).round(3)


def _cbytes(client: Client, remote: str) -> int:
    info = client.get_info(remote)
    return int(info["schunk"]["cbytes"])


def _only_download(events: list[Event]) -> Event:
    assert [e.kind for e in events] == [EventKind.DOWNLOADED], events
    return events[0]


def test_appended_rows_are_pulled_incrementally(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    remote = f"{remote_dir}/run/frames.b2nd"
    put_array(
        client, data_dir / "frames.b2nd", remote, _rows(0, 1000), chunks=(50, 64), blocks=(10, 64)
    )
    chunk_bytes = 50 * 64 * 8 + CHUNK_OVERHEAD
    rows = 1000
    with open_daemon(subscription()) as h:
        _only_download(h.mirror_pass())
        for batch in ((70, 55, 40), (5,), (50, 120)):  # partial and whole chunks
            before = _cbytes(client, remote)
            for n in batch:
                client.append(remote, _rows(rows, rows + n))
                rows += n
            growth = _cbytes(client, remote) - before
            received = h.received
            event = _only_download(h.mirror_pass())
            received = h.received - received
            print(
                f"\ngrew by {sum(batch)} rows, {growth} compressed bytes: the pass "
                f"received {event.bytes} bytes of chunks ({received} with the info JSON)"
            )
            assert event.message == "new rows only"
            assert event.rows == sum(batch)
            assert event.bytes <= 1.5 * growth + chunk_bytes
            assert received - event.bytes < 2048  # the rest is the listing and one info
            local = read_b2nd(mirror_dir / "run/frames.b2nd")
            assert local.shape == (rows, 64)
            np.testing.assert_array_equal(local, client.fetch(remote))
        assert h.mirror_pass() == []  # and the extended copy counts as intact


def _replace(client: Client, data_dir: Path, remote: str, array: np.ndarray, **kwargs: Any) -> None:
    put_array(client, data_dir / "replacement.b2nd", remote, array, **kwargs)


def test_replacement_of_same_shape_is_downloaded_again(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    remote = f"{remote_dir}/cal.b2nd"
    put_array(
        client, data_dir / "cal.b2nd", remote, np.arange(4000.0).reshape(200, 20), chunks=(50, 20)
    )
    with open_daemon(subscription()) as h:
        _only_download(h.mirror_pass())
        etag = h.client.stat(remote)[1]
        _replace(client, data_dir, remote, -np.arange(4000.0).reshape(200, 20), chunks=(50, 20))
        assert h.client.stat(remote)[1] != etag
        event = _only_download(h.mirror_pass())

    assert event.message is None and event.rows is None  # a whole download
    local = read_b2nd(mirror_dir / "cal.b2nd")
    np.testing.assert_array_equal(local, -np.arange(4000.0).reshape(200, 20))
    assert (mirror_dir / "cal.b2nd").read_bytes() == (data_dir / "replacement.b2nd").read_bytes()


@pytest.mark.parametrize("old_rows", [200, 230], ids=["aligned", "partial-chunk"])
@pytest.mark.parametrize("clevel", [0, 5], ids=["stored", "compressed"])
def test_replacement_with_more_rows_is_not_extended(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
    old_rows: int,
    clevel: int,
) -> None:
    """Not an append: same layout, more rows, different data. Stored uncompressed, every
    chunk has the same size whatever its data, so sizes alone cannot tell."""
    remote = f"{remote_dir}/raw.b2nd"
    layout = {"chunks": (50, 16), "blocks": (10, 16), "cparams": {"clevel": clevel}}
    rng = np.random.default_rng(old_rows)
    put_array(client, data_dir / "raw.b2nd", remote, rng.random((old_rows, 16)), **layout)
    replacement = rng.random((old_rows + 120, 16))
    with open_daemon(subscription()) as h:
        _only_download(h.mirror_pass())
        _replace(client, data_dir, remote, replacement, **layout)
        _only_download(h.mirror_pass())
        assert h.mirror_pass() == []

    np.testing.assert_array_equal(read_b2nd(mirror_dir / "raw.b2nd"), replacement)


def test_growth_with_another_dtype_is_downloaded_whole(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    remote = f"{remote_dir}/typed.b2nd"
    put_array(client, data_dir / "typed.b2nd", remote, np.arange(300, dtype="i8"), chunks=(100,))
    replacement = np.arange(450, dtype="f8") / 7
    with open_daemon(subscription()) as h:
        _only_download(h.mirror_pass())
        _replace(client, data_dir, remote, replacement, chunks=(100,))
        event = _only_download(h.mirror_pass())

    assert event.message is None
    np.testing.assert_array_equal(read_b2nd(mirror_dir / "typed.b2nd"), replacement)
