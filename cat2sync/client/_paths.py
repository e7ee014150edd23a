"""Remote paths as the client returns them."""

from __future__ import annotations

from pathlib import PurePosixPath

__all__ = ["RemotePath"]


class RemotePath(PurePosixPath):
    """A :class:`~pathlib.PurePosixPath` that also compares equal to its string form.

    The seed API returns paths and its examples compare them with strings
    (``client.remove(path) == path``); this keeps both working.
    """

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return str(self) == other.strip("/")
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __repr__(self) -> str:
        return f"PurePosixPath({str(self)!r})"
