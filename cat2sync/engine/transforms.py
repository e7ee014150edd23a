"""Running a rule's chain of plugin transforms over array rows, with the checks that
keep the remote array consistent: same number of rows, stable dtype and trailing shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from ..errors import TransformError
from ..manifest import TransformSpec
from ..plugins.hookspecs import Transform, TransformContext
from ..plugins.manager import OwnedTransform

__all__ = ["Chain"]

_SLAB_BYTES = 32 * 2**20  # rows transformed at a time when a whole array is rewritten


@dataclass(frozen=True, slots=True)
class Chain:
    """The transforms a rule lists, resolved to the registered functions."""

    steps: tuple[tuple[TransformSpec, Transform], ...]
    rule: str
    direction: str

    @classmethod
    def build(
        cls,
        specs: Sequence[TransformSpec],
        registry: dict[str, Transform],
        rule: str,
        direction: str,
    ) -> Chain | None:
        if not specs:
            return None
        missing = [s.name for s in specs if s.name not in registry]
        if missing:
            raise TransformError(f"{rule}: unknown transform(s): {', '.join(missing)}")
        return cls(tuple((s, registry[s.name]) for s in specs), rule, direction)

    def apply(
        self,
        rows: np.ndarray,
        *,
        path: str,
        start_row: int,
        expect: tuple[str, tuple[int, ...]] | None = None,
    ) -> np.ndarray:
        """Transform ``rows``; ``expect`` is the ``(dtype, trailing shape)`` they must have.

        :raises TransformError: a transform raised, changed the number of rows, or gave
            a dtype or trailing shape other than ``expect`` — before anything is sent.
        """
        out = rows
        for spec, func in self.steps:
            ctx = TransformContext(
                params=dict(spec.params),
                rule=self.rule,
                path=path,
                start_row=start_row,
                direction=self.direction,
            )
            try:
                out = np.asarray(func(out, ctx))
            except Exception as exc:
                raise TransformError(
                    f"transform {_named(spec, func)} failed on {path}: "
                    f"{exc.__class__.__name__}: {exc}"
                ) from exc
            if out.ndim == 0 or out.shape[0] != rows.shape[0]:
                raise TransformError(
                    f"transform {_named(spec, func)} changed the number of rows of {path} "
                    f"from {rows.shape[0]} to {out.shape[0] if out.ndim else 'a scalar'}"
                )
        if expect is not None and (str(out.dtype), tuple(out.shape[1:])) != expect:
            names = ", ".join(_named(spec, func) for spec, func in self.steps)
            raise TransformError(
                f"transform{'s' if len(self.steps) > 1 else ''} {names} gave {out.dtype} "
                f"rows of shape {tuple(out.shape[1:])} for {path}, but the remote array "
                f"holds {expect[0]} rows of shape {tuple(expect[1])}"
            )
        return out

    def rewrite(self, source: Any, dest: Path, *, path: str) -> tuple[str, tuple[int, ...]]:
        """Write the transform of the whole array ``source`` to ``dest`` (a ``.b2nd``),
        a slab of rows at a time; returns the result's ``(dtype, trailing shape)``."""
        if not source.shape:
            raise TransformError(
                f"{path}: transforms apply to rows, and this array is a scalar (0-d)"
            )
        rows = source.shape[0]
        row_bytes = max(1, source.dtype.itemsize * int(np.prod(source.shape[1:])))
        chunk_rows = max(1, source.chunks[0])  # an empty array may have empty chunks
        step = max(chunk_rows, _SLAB_BYTES // row_bytes // chunk_rows * chunk_rows)
        out: Any = None
        expect: tuple[str, tuple[int, ...]] | None = None
        for start in range(0, max(rows, 1), step):
            piece = self.apply(
                source[start : min(rows, start + step)], path=path, start_row=start, expect=expect
            )
            if out is None:
                expect = (str(piece.dtype), tuple(piece.shape[1:]))
                # The source's chunk layout when the trailing shape is kept: it was chosen
                # for how the array grows (an empty array must keep it to grow at all).
                # Otherwise Blosc2 chooses for the new shape.
                layout = (
                    {"chunks": tuple(source.chunks), "blocks": tuple(source.blocks)}
                    if expect[1] == tuple(source.shape[1:]) and source.chunks[0]
                    else {}
                )
                out = blosc2.empty(
                    (rows, *piece.shape[1:]),
                    dtype=piece.dtype,
                    urlpath=str(dest),
                    mode="w",
                    cparams=_cparams(source),
                    **layout,
                )
            if piece.shape[0]:
                out[start : start + piece.shape[0]] = piece
        assert expect is not None
        return expect


def _named(spec: TransformSpec, func: Transform) -> str:
    """``'scale'``, with the plugin that registered it when known: ``'scale' (plugin 'x')``."""
    plugin = func.plugin if isinstance(func, OwnedTransform) else None
    return f"{spec.name!r} (plugin {plugin!r})" if plugin else repr(spec.name)


def _cparams(source: Any) -> dict[str, Any]:
    """The source's codec settings, without its typesize (the dtype may change)."""
    cp = source.schunk.cparams
    return {
        "codec": cp.codec,
        "clevel": cp.clevel,
        "filters": cp.filters,
        "filters_meta": cp.filters_meta,
    }
