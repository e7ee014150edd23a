"""cat2sync's plugin API: the ``hookimpl`` marker, the hook specifications and the manager."""

from .hookspecs import (
    Converter,
    ConverterContext,
    LazyExprRequest,
    Transform,
    TransformContext,
    hookimpl,
    hookspec,
)

__all__ = [
    "Converter",
    "ConverterContext",
    "LazyExprRequest",
    "Transform",
    "TransformContext",
    "hookimpl",
    "hookspec",
]
