"""Built-in array transforms: dtype casts and simple arithmetic.

``transforms = ["float32", {name = "scale", factor = 0.5}, {name = "offset", value = -100}]``
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..hookspecs import Transform, TransformContext, hookimpl


def _cast(dtype: str) -> Transform:
    def cast(rows: np.ndarray, ctx: TransformContext) -> np.ndarray:
        return rows.astype(dtype, copy=False)

    return cast


def scale(rows: np.ndarray, ctx: TransformContext) -> np.ndarray:
    """Multiply by ``factor`` (the dtype follows NumPy's rules: ints become floats)."""
    return np.asarray(rows * float(ctx.params.get("factor", 1.0)))


def offset(rows: np.ndarray, ctx: TransformContext) -> np.ndarray:
    """Add ``value``."""
    return np.asarray(rows + ctx.params.get("value", 0))


def clip(rows: np.ndarray, ctx: TransformContext) -> np.ndarray:
    """Limit values to ``[min, max]`` (either may be omitted); keeps the dtype."""
    clipped: np.ndarray = np.clip(rows, ctx.params.get("min"), ctx.params.get("max"))
    return clipped.astype(rows.dtype)


@hookimpl
def cat2sync_register_transforms(register: Callable[[str, Transform], None]) -> None:
    for dtype in (
        "float16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
    ):
        register(dtype, _cast(dtype))
    register("scale", scale)
    register("offset", offset)
    register("clip", clip)
