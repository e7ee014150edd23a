"""Local-file helpers for transfers: atomic writes and Blosc2 frame decoding."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import blosc2

__all__ = ["NATIVE_SUFFIXES", "atomic_writer", "is_native", "is_partial", "unpack_frame"]

#: Stored byte for byte by the server; anything else is compressed into ``<name>.b2``.
NATIVE_SUFFIXES = frozenset({".b2nd", ".b2frame", ".b2", ".b2z", ".h5", ".hdf5"})
_DECODE_STEP = 8 * 2**20  # bytes decoded at a time: keeps memory flat for one-chunk frames


#: The names :func:`atomic_writer` gives its temporaries (``tempfile`` adds 8 characters).
_PARTIAL = re.compile(r"\..+\.[a-z0-9_]{8}\.part", re.DOTALL)


def is_native(name: str) -> bool:
    return Path(name).suffix.lower() in NATIVE_SUFFIXES


def is_partial(name: str) -> bool:
    """Whether ``name`` is a temporary of :func:`atomic_writer` (left by a crash)."""
    return _PARTIAL.fullmatch(name) is not None


@contextlib.contextmanager
def atomic_writer(dest: Path, *, durable: bool = False) -> Iterator[BinaryIO]:
    """Write to a hidden temporary file beside ``dest``; rename into place on success.

    A reader never sees a partial file at ``dest``; a failure leaves ``dest`` untouched.
    ``durable`` also flushes the data to disk before the rename, so that a power cut
    cannot leave an empty file under the final name (the daemon's mirror wants that;
    it costs about a fifth of the download speed).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        Path(tmp).replace(dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


def unpack_frame(frame_path: Path, out: BinaryIO) -> None:
    """Write the original bytes of a one-file SChunk frame (a ``.b2`` file) to ``out``.

    Decodes a slice at a time, so memory stays flat even when the server stored the
    whole file as one huge chunk.
    """
    schunk = blosc2.open(str(frame_path), mode="r")
    typesize = schunk.typesize
    nitems = schunk.nbytes // typesize
    step = max(1, _DECODE_STEP // typesize)
    for start in range(0, nitems, step):
        out.write(schunk.get_slice(start, min(nitems, start + step)))
