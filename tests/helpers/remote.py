"""What the server holds, read through the client."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cat2sync import Client
from cat2sync.errors import NotFound


def remote_files(client: Client, remote: str) -> list[str]:
    """The remote listing below ``remote`` (the client drops the server's sidecars)."""
    return sorted(client.get_list(remote))


def remote_bytes(client: Client, remote: str) -> bytes:
    """The original bytes of a remote regular file."""
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "file"
        client.download_to(remote, dest)
        return dest.read_bytes()


def remote_array(client: Client, remote: str) -> np.ndarray:
    return np.asarray(client.fetch(remote))


def remote_info(client: Client, remote: str) -> dict[str, Any] | None:
    """The server's metadata of ``remote``; ``None`` if there is no such dataset."""
    try:
        info, _ = client.stat(remote)
    except NotFound:
        return None
    return info


def remote_shape(client: Client, remote: str) -> tuple[int, ...] | None:
    info = remote_info(client, remote)
    shape = info.get("shape") if info else None
    return tuple(shape) if shape else None
