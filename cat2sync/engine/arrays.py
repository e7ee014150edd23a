"""Blosc2 array files: validity, per-chunk digests, and the rows to append."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

__all__ = ["ARRAY_SUFFIXES", "Layout", "layout_of", "open_array", "rows_frame"]

#: Files that must open as Blosc2 containers before they are shipped.
ARRAY_SUFFIXES = frozenset({".b2nd", ".b2frame", ".b2"})


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Layout:
    """What proves that an array's first rows are unchanged since it was sent."""

    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    digests: tuple[str, ...]  # compressed bytes of each complete row of chunks
    tail_digest: str  # the data of the rows after the last complete row of chunks


def open_array(path: Path) -> Any:
    """Open a Blosc2 container, checking that it is complete (raises on damage)."""
    obj = blosc2.open(str(path), mode="r")
    schunk = obj.schunk if isinstance(obj, blosc2.NDArray) else obj
    if schunk.nchunks:
        schunk.get_chunk(schunk.nchunks - 1)  # the last chunk is written last
    return obj


def _chunks_per_row(arr: blosc2.NDArray) -> int:
    per_row = 1
    for size, chunk in zip(arr.shape[1:], arr.chunks[1:], strict=True):
        per_row *= max(1, -(-size // chunk))
    return per_row


def layout_of(arr: blosc2.NDArray, rows: int | None = None) -> Layout:
    """The layout of ``arr`` limited to its first ``rows`` rows (default: all)."""
    rows = arr.shape[0] if rows is None else rows
    chunk_rows = arr.chunks[0] if arr.ndim else 1
    complete = rows // chunk_rows if chunk_rows else 0
    per_row = _chunks_per_row(arr) if arr.ndim else 1
    schunk = arr.schunk
    digests = tuple(
        _digest(b"".join(schunk.get_chunk(r * per_row + k) for k in range(per_row)))
        for r in range(complete)
    )
    tail = arr[complete * chunk_rows : rows] if arr.ndim else arr[()]
    tail_digest = _digest(np.ascontiguousarray(tail).tobytes())
    return Layout(
        shape=(rows, *arr.shape[1:]),
        dtype=str(arr.dtype),
        chunks=tuple(arr.chunks),
        digests=digests,
        tail_digest=tail_digest,
    )


def rows_frame(arr: blosc2.NDArray, start: int, stop: int) -> blosc2.NDArray:
    """Rows ``start:stop`` as an in-memory NDArray compressed like the source."""
    rows = arr[start:stop]
    cparams = arr.schunk.cparams
    chunks = (min(max(1, stop - start), arr.chunks[0]), *arr.chunks[1:])
    return blosc2.asarray(rows, chunks=chunks, cparams=cparams)
