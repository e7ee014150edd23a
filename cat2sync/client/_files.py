"""Local-file helpers for transfers: atomic writes and Blosc2 frame decoding."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import blosc2

__all__ = [
    "NATIVE_SUFFIXES",
    "TEMP_PREFIX",
    "atomic_writer",
    "is_native",
    "is_partial",
    "unpack_frame",
]

#: Names cat2sync gives its temporaries, local and remote; readers skip them.
TEMP_PREFIX = ".cat2sync-"

#: Stored byte for byte by the server; anything else is compressed into ``<name>.b2``.
NATIVE_SUFFIXES = frozenset({".b2nd", ".b2frame", ".b2", ".b2z", ".h5", ".hdf5"})
_DECODE_STEP = 8 * 2**20  # bytes decoded at a time: keeps memory flat for one-chunk frames


#: The names :func:`atomic_writer` gives its temporaries (``tempfile`` adds 8 characters).
_PARTIAL = re.compile(r"\..+\.[a-z0-9_]{8}\.part", re.DOTALL)


_WRITEBACK_EVERY = 8 * 2**20
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):  # not Linux
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return cast(Callable[[int, int, int, int], int], func)


_sync_file_range = _load_sync_file_range()


class _WritebackFile(io.FileIO):
    """A file that asks the kernel to start writing each few MB to disk as soon as they
    are written (Linux ``sync_file_range``), so that the ``fsync`` of a durable download
    has almost nothing left to wait for: the disk works while the network does."""

    _started = 0  # bytes whose write-back was started
    _written = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = 0
        while n < len(view):  # a raw write may write less than it was given
            n += super().write(view[n:]) or 0
        self._written += n
        if _sync_file_range is not None and self._written - self._started >= _WRITEBACK_EVERY:
            _sync_file_range(
                self.fileno(), self._started, self._written - self._started, _SYNC_FILE_RANGE_WRITE
            )
            self._started = self._written
        return n


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
    cannot leave an empty file under the final name (the daemon's mirror wants that).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with _WritebackFile(fd, "wb") if durable else os.fdopen(fd, "wb") as fh:
            yield fh
            if durable:
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
