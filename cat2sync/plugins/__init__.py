"""cat2sync's plugin API: the ``hookimpl`` marker, the hook specifications, the types
the hooks pass, and :func:`read_settings` for a plugin's own manifest table."""

from .hookspecs import (
    Converter,
    ConverterContext,
    LazyExprRequest,
    Transform,
    TransformContext,
    hookimpl,
    hookspec,
)
from .settings import read_settings

__all__ = [
    "Converter",
    "ConverterContext",
    "LazyExprRequest",
    "Transform",
    "TransformContext",
    "hookimpl",
    "hookspec",
    "read_settings",
]
