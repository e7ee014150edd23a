"""Exact comparisons of local, remote and mirrored data, temporaries included."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import blosc2
import numpy as np

from cat2sync import Client
from cat2sync.errors import NotFound, ServerError
from cat2sync.testing import read_b2nd

from .remote import remote_bytes

TEMP_PREFIX = ".cat2sync-"

ARRAYS = (".b2nd",)


@dataclass
class Tally:
    """One comparison: what was compared and what was wrong."""

    files: int = 0
    rows: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    server_temporaries: int = 0

    def merge(self, other: Tally) -> Tally:
        return Tally(
            self.files + other.files,
            self.rows + other.rows,
            self.lost + other.lost,
            self.duplicated + other.duplicated,
            self.problems + other.problems,
            self.server_temporaries + other.server_temporaries,
        )

    @property
    def ok(self) -> bool:
        return not self.problems


def is_temporary(relpath: str) -> bool:
    """cat2sync's own temporaries: remote ``.cat2sync-*``, local ``*.part`` and ``.cat2sync-*``."""
    parts = relpath.split("/")
    return any(p.startswith(TEMP_PREFIX) for p in parts) or (
        parts[-1].startswith(".") and parts[-1].endswith(".part")
    )


def local_files(folder: Path) -> dict[str, Path]:
    """Regular files below ``folder`` by relative POSIX path (temporaries included)."""
    found: dict[str, Path] = {}
    # os.walk, not rglob: a temporary folder removed while it is listed is skipped.
    for parent, _, names in os.walk(folder):
        for name in names:
            path = Path(parent, name)
            if path.is_file():
                found[path.relative_to(folder).as_posix()] = path
    return found


def _rows_tally(name: str, ours: np.ndarray, theirs: np.ndarray) -> Tally:
    tally = Tally(files=1, rows=int(ours.shape[0]) if ours.ndim else 1)
    if ours.ndim and theirs.ndim and ours.shape[1:] == theirs.shape[1:]:
        tally.lost = max(0, ours.shape[0] - theirs.shape[0])
        tally.duplicated = max(0, theirs.shape[0] - ours.shape[0])
    if (
        ours.dtype != theirs.dtype
        or ours.shape != theirs.shape
        or not np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f")
    ):
        tally.problems.append(
            f"{name}: {theirs.dtype}{theirs.shape} differs from {ours.dtype}{ours.shape}"
        )
    return tally


def read_remote_file(client: Client, remote: str) -> bytes:
    """The original bytes of a remote regular file.

    The server answers 500 to a download whose file name is not Latin-1 (it cannot put
    it in its headers); such a file is read chunk by chunk instead (``/api/chunk``
    serves the compressed chunks of the frame it is stored as).
    """
    try:
        return remote_bytes(client, remote)
    except ServerError:
        if remote.isascii():
            raise
    info = client.get_info(remote)
    nchunks = int(info.get("schunk", info)["nchunks"])
    return b"".join(blosc2.decompress(client.get_chunk(remote, i)) for i in range(nchunks))


def compare_remote(
    client: Client,
    remote: str,
    source: Mapping[str, Path | bytes | np.ndarray],
) -> Tally:
    """The remote folder holds exactly ``source`` (relpath -> local file, bytes or array),
    content compared, and no temporary."""
    tally = Tally()
    try:
        listed = set(client.get_list(remote))
    except NotFound:
        listed = set()
    temporaries = sorted(n for n in listed if is_temporary(n))
    tally.server_temporaries = len(temporaries)
    if temporaries:
        tally.problems.append(f"temporaries left on the server: {temporaries}")
    missing, extra = set(source) - listed, listed - set(source) - set(temporaries)
    if missing or extra:
        tally.problems.append(f"remote listing: missing {sorted(missing)}, extra {sorted(extra)}")
    for name in sorted(set(source) & listed):
        want = _expected(source[name])
        if isinstance(want, np.ndarray):
            tally = tally.merge(_rows_tally(name, want, client.fetch(f"{remote}/{name}")))
        else:
            got = read_remote_file(client, f"{remote}/{name}")
            tally.files += 1
            if got != want:
                tally.problems.append(f"{name}: remote bytes differ ({len(got)} vs {len(want)})")
    return tally


def _expected(want: Path | bytes | np.ndarray) -> bytes | np.ndarray:
    """A source entry as content: a source file is read (arrays as their rows)."""
    if isinstance(want, Path):
        return read_b2nd(want) if want.suffix in ARRAYS else want.read_bytes()
    return want


def compare_local(
    folder: Path,
    source: Mapping[str, Path | bytes | np.ndarray],
    *,
    ignore_temporaries: bool = False,
) -> Tally:
    """The local folder holds exactly ``source``, content compared, and no temporary."""
    tally = Tally()
    found = local_files(folder)
    temporaries = sorted(n for n in found if is_temporary(n))
    if temporaries and not ignore_temporaries:
        tally.problems.append(f"temporaries left in {folder.name}: {temporaries}")
    names = set(found) - set(temporaries)
    missing, extra = set(source) - names, names - set(source)
    if missing or extra:
        tally.problems.append(f"{folder.name}: missing {sorted(missing)}, extra {sorted(extra)}")
    for name in sorted(set(source) & names):
        want = _expected(source[name])
        if isinstance(want, np.ndarray):
            try:
                got = read_b2nd(found[name])
            except Exception as exc:  # a partial array does not even open
                tally.files += 1
                tally.problems.append(f"{name}: does not open ({exc})")
                continue
            tally = tally.merge(_rows_tally(name, want, got))
        else:
            tally.files += 1
            if found[name].read_bytes() != want:
                tally.problems.append(f"{name}: local bytes differ")
    return tally


def mirror_temporaries(*folders: Path) -> list[str]:
    return sorted(
        f"{folder.name}/{n}" for folder in folders for n in local_files(folder) if is_temporary(n)
    )
