"""The fault-injection suite's knobs, its session tally, and what its tests write.

Knobs (environment):

* ``CAT2SYNC_FAULT_TRIALS`` -- random SIGKILL trials (default 4; the full run uses 50);
* ``CAT2SYNC_FAULT_SEED``   -- base seed of the trials (default below), for replaying.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cat2sync.server import LocalServer
from cat2sync.testing import write_b2nd

from .compare import Tally

TRIALS = int(os.environ.get("CAT2SYNC_FAULT_TRIALS", "4"))
SEED = int(os.environ.get("CAT2SYNC_FAULT_SEED", "20251127"))
#: Generous: other test sessions share this 2-core machine.
CONVERGE = 120.0
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")


@dataclass
class FaultStats:
    """What the suite did and found; printed as a table at the end of the session."""

    trials: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    files_compared: int = 0
    rows_compared: int = 0
    versions_watched: int = 0  # file versions the SIGKILL watchdog read at final names
    lost: int = 0
    duplicated: int = 0
    conflicts: int = 0  # conflict copies made (and checked: one per conflict)
    local_bytes_lost: int = 0  # local files gone without their verified copy on the server
    foreign_bytes_lost: int = 0  # bytes another writer put on the server, gone
    journal_passes: int = 0  # a subscriber's passes that followed the change journal
    untrusted_journals: int = 0  # journals a killed uploader left that a reader refused
    leaked: Counter[str] = field(default_factory=Counter)

    def fault(self, kind: str, count: int = 1) -> None:
        self.faults[kind] += count

    def add(self, tally: Tally) -> None:
        self.files_compared += tally.files
        self.rows_compared += tally.rows
        self.lost += tally.lost
        self.duplicated += tally.duplicated
        self.leak("temporary left on the server after convergence", tally.server_temporaries)

    def leak(self, kind: str, count: int = 1) -> None:
        """Count what leaked; a zero count still lists the kind (it was looked for)."""
        self.leaked[kind] += count

    @property
    def empty(self) -> bool:
        return not (self.trials or self.faults or self.files_compared)

    def table(self) -> list[str]:
        rows = [("SIGKILL trials run", str(self.trials))]
        rows += [(f"fault injected: {kind}", str(n)) for kind, n in sorted(self.faults.items())]
        rows += [
            ("files compared", str(self.files_compared)),
            ("rows compared", str(self.rows_compared)),
            ("file versions read at a final name during the trials", str(self.versions_watched)),
            ("rows lost", str(self.lost)),
            ("rows duplicated", str(self.duplicated)),
            ("conflicts created (one copy each)", str(self.conflicts)),
            ("local bytes lost", str(self.local_bytes_lost)),
            ("remote bytes of other writers lost", str(self.foreign_bytes_lost)),
            ("subscriber passes that followed the journal", str(self.journal_passes)),
            ("journals left untrusted by a kill", str(self.untrusted_journals)),
            ("leaked (total)", str(sum(self.leaked.values()))),
        ]
        rows += [(f"leaked: {kind}", str(n)) for kind, n in sorted(self.leaked.items())]
        width = max(len(name) for name, _ in rows)
        lines = [f"| {'figure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {name:<{width}} | {value:>5} |" for name, value in rows]
        return lines


STATS = FaultStats()


# -- where the real server keeps a file (for fast, read-only observation) ------------------


def server_storage(server: LocalServer, remote: str) -> Path | None:
    """The folder or file the server stores ``remote`` in, when it already exists.

    Only ever read, to notice cheaply that the server holds a temporary (a test
    trigger); what a client sees is always checked through the API.
    """
    root, _, rest = remote.partition("/")
    state = server.state_dir / "state"
    if root == "@personal":
        first = rest.split("/", 1)[0]
        for home in sorted((state / "personal").glob("*")):
            if (home / first).exists():
                return home / rest
        return None
    base = state / root.lstrip("@")
    return base / rest if (base / rest).exists() else None


# -- files written the way careful instruments write them ------------------------------


def array_file(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> Path:
    """Write ``data`` as a ``.b2nd`` (atomically, as a careful instrument would)."""
    write_b2nd(path.with_name(f"~{path.name}"), data, chunks=chunks).replace(path)
    return path


def write_atomic(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"~{path.name}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
