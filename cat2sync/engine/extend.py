"""Extending a mirrored dataset that only grew: copy it, resize it, write the server's
new compressed chunks into it, prove the result equals the server's, rename it in.

The server keeps no content digest, so a dataset replaced by a longer one with the same
layout (not appended to) looks like growth; random data even keeps its sizes. A sample
of the rows mirrored before catches that: the last old chunk when the growth starts a
new row of chunks (one extra chunk), else the old rows of the partial row of chunks
that is fetched anyway. Any doubt raises, and the caller downloads the dataset whole.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from ..client import TEMP_PREFIX

__all__ = ["chunks_to_fetch", "extend_copy", "schunk_info"]

Fetch = Callable[[int], bytes]


def schunk_info(info: Mapping[str, Any]) -> Mapping[str, Any]:
    """The super-chunk fields of an ``info`` answer (nested for arrays, flat for files)."""
    schunk: Mapping[str, Any] = info.get("schunk", info)
    return schunk


def _chunks_per_row(shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    """Chunks in one row of chunks along the first axis (Blosc2 numbers them in C order)."""
    return math.prod(-(-size // chunk) for size, chunk in zip(shape[1:], chunks[1:], strict=True))


def _first_new_chunk(shape: tuple[int, ...], chunks: tuple[int, ...], old_rows: int) -> int:
    """The first chunk an append of rows after ``old_rows`` rewrites."""
    return (old_rows // chunks[0]) * _chunks_per_row(shape, chunks)


def chunks_to_fetch(info: Mapping[str, Any], old_rows: int) -> int:
    """How many chunk requests extending to ``info``'s shape costs (the sample included)."""
    shape, chunks = tuple(info["shape"]), tuple(info["chunks"])
    first = _first_new_chunk(shape, chunks, old_rows)
    total = math.prod(
        -(-int(size) // int(chunk)) for size, chunk in zip(shape, chunks, strict=True)
    )
    sample = 1 if old_rows % chunks[0] == 0 and first else 0
    return int(total - first + sample)


def extend_copy(target: Path, info: Mapping[str, Any], old_rows: int, fetch: Fetch) -> None:
    """Bring the local copy ``target`` of ``old_rows`` rows to ``info``'s shape.

    :param fetch: a compressed chunk of the server's dataset, by number.
    :raises ValueError: the dataset was replaced rather than grown, or the result is
        not the server's (nothing is renamed in then).
    """
    with tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=TEMP_PREFIX, suffix=".b2nd", delete=False
    ) as tmp:
        tmp_path = Path(tmp.name)
    try:
        shutil.copyfile(target, tmp_path)
        arr = blosc2.open(str(tmp_path), mode="a")
        _check_layout(arr, info)
        chunk_rows = arr.chunks[0]
        kept = old_rows // chunk_rows  # rows of chunks an append leaves untouched
        first = _first_new_chunk(tuple(arr.shape), tuple(arr.chunks), old_rows)
        if old_rows % chunk_rows == 0 and first:
            _check_kept_chunk(arr, first - 1, fetch)
        arr.resize(tuple(info["shape"]))
        for nchunk in range(first, arr.schunk.nchunks):
            arr.schunk.update_chunk(nchunk, fetch(nchunk))
        if old_rows % chunk_rows:
            _check_old_rows(arr, target, kept * chunk_rows, old_rows)
        _verify(arr, info)
        del arr
        tmp_path.replace(target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def _check_layout(arr: Any, info: Mapping[str, Any]) -> None:
    if (tuple(arr.chunks), tuple(arr.blocks), str(arr.dtype)) != (
        tuple(info["chunks"]),
        tuple(info["blocks"]),
        info["dtype"],
    ):
        raise ValueError("the dtype or the chunk layout changed")


def _check_kept_chunk(arr: Any, nchunk: int, fetch: Fetch) -> None:
    if fetch(nchunk) != arr.schunk.get_chunk(nchunk):
        raise ValueError("rows mirrored before differ remotely (replaced, not appended)")


def _check_old_rows(arr: Any, original: Path, start: int, stop: int) -> None:
    old = blosc2.open(str(original), mode="r")
    if _raw(old[start:stop]) != _raw(arr[start:stop]):
        raise ValueError("rows mirrored before differ remotely (replaced, not appended)")


def _verify(arr: Any, info: Mapping[str, Any]) -> None:
    """The extended copy must match the server's sizes exactly, or it is not used."""
    schunk = schunk_info(info)
    if (arr.schunk.nbytes, arr.schunk.cbytes) != (schunk.get("nbytes"), schunk.get("cbytes")):
        raise ValueError("the extended copy differs from the server's (replaced remotely?)")


def _raw(data: Any) -> bytes:
    return np.ascontiguousarray(data).tobytes()  # bytes, so that NaN equals NaN
