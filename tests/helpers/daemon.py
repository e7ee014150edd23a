"""Upload rules of the daemon tests: one local folder to one remote folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cat2sync.manifest import Manifest

#: Short, so that tests do not wait; long enough that a file being written is not sent.
SETTLE = "0.2s"

#: The ``make_manifest`` fixture: keyword arguments -> a loaded manifest.
MakeManifest = Callable[..., Manifest]


def upload_rule(local: Path, remote: str, /, **keys: Any) -> dict[str, Any]:
    """An ``[[upload]]`` table named "up": ``local`` -> ``remote`` (``keys`` override)."""
    return {"name": "up", "local": str(local), "remote": remote, "settle": SETTLE, **keys}
