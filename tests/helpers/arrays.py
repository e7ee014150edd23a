"""Local ``.b2nd`` files as an instrument writes them."""

from __future__ import annotations

from pathlib import Path

import blosc2
import numpy as np


def write_b2nd(path: Path, array: np.ndarray, chunks: tuple[int, ...]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    blosc2.asarray(array, urlpath=str(path), mode="w", chunks=chunks)
    return path


def grow_b2nd(path: Path, rows: np.ndarray) -> None:
    """Append ``rows`` to a ``.b2nd`` in place, as an instrument would."""
    arr = blosc2.open(str(path), mode="a")
    start = arr.shape[0]
    arr.resize((start + rows.shape[0], *arr.shape[1:]))
    arr[start : start + rows.shape[0]] = rows
    del arr  # flushes the frame
