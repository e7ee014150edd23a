"""How a run treats failures: ``cat2sync run`` keeps trying, ``cat2sync once`` counts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

__all__ = ["ONCE", "RUN", "Mode", "backoff"]


@dataclass(frozen=True, slots=True)
class Mode:
    """The policy that differs between ``run`` and ``once``, in one place.

    :ivar retry: a failed file or expression is tried again later (``run``), or counted
        as a failure and left (``once``, which exits 1).
    :ivar wait_attempts: how many times a file still being written is tried before it
        counts as failed (None: as long as it takes).
    :ivar refresh_on_change: lazy expressions follow their operands as they change
        (``run``); ``once`` computes every expression at its end instead.
    """

    name: str
    retry: bool
    wait_attempts: int | None
    refresh_on_change: bool


RUN: Final = Mode("run", retry=True, wait_attempts=None, refresh_on_change=True)
ONCE: Final = Mode("once", retry=False, wait_attempts=3, refresh_on_change=False)


def backoff(attempts: int, *, base: float, cap: float) -> float:
    """Seconds before attempt ``attempts + 1``: exponential from ``base``, capped at
    ``cap``, with jitter so that many failed files do not come back at once."""
    delay = min(cap, base * 2 ** min(attempts - 1, 20))
    return float(delay * random.uniform(0.5, 1.0))
