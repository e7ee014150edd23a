"""Comparing a local file with its remote copy, in bounded memory.

Datasets (``.b2nd``) are compared by their data, a slab of rows at a time, so a copy the
server recompressed (after an append) still matches; anything else by its bytes, as
the server serves them (the original bytes of a regular file). With transforms, the
transformed side is computed slab by slab, as it was when the file was synced.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import blosc2
import numpy as np

from ..client import Client
from ..errors import NotFound
from .conflicts import same_bytes
from .transforms import Chain

__all__ = ["compare"]

_SLAB_BYTES = 16 * 2**20  # data compared per request
Progress = Callable[[int], None]


def compare(
    client: Client,
    remote: str,
    local: Path,
    *,
    scratch: Path,
    chain: Chain | None = None,
    transformed: Literal["remote", "local"] = "remote",
    progress: Progress | None = None,
) -> str | None:
    """None when the server's ``remote`` holds what ``local`` holds; otherwise one line
    saying what differs.

    :param scratch: a folder for the server's copy of a file that is not a dataset.
    :param chain: the rule's transforms; ``transformed`` says which side is the
        transform of the other ("remote" for an upload rule, "local" for a mirror).
    :param progress: called with the bytes of data compared so far, as it goes.
    """
    try:
        info, _ = client.stat(remote)
    except NotFound:
        return "missing on the server"
    if info.get("shape") is not None and local.suffix.lower() == ".b2nd":
        return _compare_arrays(client, remote, local, info, chain, transformed, progress)
    return _compare_bytes(client, remote, local, scratch, progress)


def _compare_arrays(
    client: Client,
    remote: str,
    local: Path,
    info: dict[str, Any],
    chain: Chain | None,
    transformed: str,
    progress: Progress | None,
) -> str | None:
    arr = blosc2.open(str(local), mode="r")
    if not isinstance(arr, blosc2.NDArray):
        return "the server holds a dataset, the local file is not one"
    shape = tuple(info["shape"])
    if chain is None and (shape, info.get("dtype")) != (tuple(arr.shape), str(arr.dtype)):
        return (
            f"the server holds {info.get('dtype')} of shape {shape}, "
            f"the local file {arr.dtype} of shape {tuple(arr.shape)}"
        )
    if not arr.shape:
        return None if _same(client.fetch(remote), arr[()]) else "the data differs"
    if chain is not None and shape[0] != arr.shape[0]:
        return f"the server holds {shape[0]} rows, the local file {arr.shape[0]}"
    row_bytes = max(1, arr.dtype.itemsize * math.prod(arr.shape[1:]))
    step = max(1, _SLAB_BYTES // row_bytes)
    done = 0
    for start in range(0, arr.shape[0], step):
        stop = min(arr.shape[0], start + step)
        theirs, ours = client.fetch(remote, slice(start, stop)), arr[start:stop]
        if chain is not None and transformed == "remote":
            ours = chain.apply(ours, path=local.name, start_row=start)
        elif chain is not None:
            theirs = chain.apply(theirs, path=local.name, start_row=start)
        if not _same(theirs, ours):
            return f"the data differs from row {start}"
        done += (stop - start) * row_bytes
        if progress is not None:
            progress(done)
    return None


def _compare_bytes(
    client: Client, remote: str, local: Path, scratch: Path, progress: Progress | None
) -> str | None:
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        theirs = Path(tmp) / "remote"
        client.download_to(remote, theirs)
        size = theirs.stat().st_size
        if progress is not None:
            progress(size)
        with contextlib.suppress(FileNotFoundError):
            if same_bytes(theirs, local):
                return None
        return f"the bytes differ (server {size} bytes, local {_size(local)} bytes)"


def _size(path: Path) -> int | str:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return "no"


def _same(a: Any, b: Any) -> bool:
    """Equal data, bytes for bytes (so that NaN equals NaN)."""
    x, y = np.asarray(a), np.asarray(b)
    return (
        x.dtype == y.dtype
        and x.shape == y.shape
        and (np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes())
    )
