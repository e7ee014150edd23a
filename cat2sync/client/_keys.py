"""Turn NumPy-style indexing keys into the server's ``slice_`` query syntax."""

from __future__ import annotations

import ast
from typing import Any

import numpy as np

from ..errors import BadRequest

__all__ = ["Key", "field_names", "parse_dtype", "slice_param"]

Key = int | slice | tuple[int | slice, ...] | None


def _one(item: Any) -> str:
    if isinstance(item, bool | np.bool_):
        raise BadRequest(f"not a valid index: {item!r}")
    if isinstance(item, int | np.integer):  # NumPy ints too, as NumPy indexing allows
        return str(int(item))
    if isinstance(item, slice):
        if item.step is not None and item.step <= 0:
            raise BadRequest(f"slice steps must be positive, got {item.step}")
        start = "" if item.start is None else str(int(item.start))
        stop = "" if item.stop is None else str(int(item.stop))
        return f"{start}:{stop}" + ("" if item.step in (None, 1) else f":{int(item.step)}")
    raise BadRequest(f"not a valid index: {item!r} (use ints and slices)")


def slice_param(key: Any) -> str | None:
    """``key`` as the server's ``slice_`` parameter, or None for the whole dataset.

    A bare int or slice applies to the first axis; a tuple gives one entry per axis.
    A trailing ``...`` is dropped; ``...`` elsewhere is not supported.
    """
    if key is None or key is Ellipsis:
        return None
    if isinstance(key, list):
        key = tuple(key)
    items = key if isinstance(key, tuple) else (key,)
    if items and items[-1] is Ellipsis:
        items = items[:-1]
    if not items:
        return None
    return ",".join(_one(item) for item in items)


def parse_dtype(spec: Any) -> np.dtype[Any] | None:
    """The server's ``dtype`` string as a NumPy dtype, or None when it cannot be read.

    Structured dtypes arrive as the repr of their field list (``"[('a', '<f4'), ...]"``),
    which ``np.dtype`` does not accept as a string.
    """
    if spec is None:
        return None
    dtype: np.dtype[Any]
    try:
        dtype = np.dtype(spec)
    except TypeError:
        try:
            dtype = np.dtype(ast.literal_eval(str(spec)))
        except (ValueError, TypeError, SyntaxError):
            return None
    return dtype


def field_names(spec: Any) -> tuple[str, ...]:
    """The field names of a (structured) dtype as the server reports it; () for plain ones."""
    dtype = parse_dtype(spec)
    return tuple(dtype.names or ()) if dtype is not None else ()
