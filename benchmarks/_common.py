"""Shared machinery for the benchmarks: figures, the case registry and the run context.

A *case* is a function ``case(ctx, side) -> list[Figure]`` registered with :func:`case`.
``run.py`` calls it ``--repeat`` times for each side (``"reference"``, the upstream
``caterva2.Client``, and ``"cat2sync"``), keeps the best value of each figure and prints
one table row per figure. A case must check what it measured (the bytes that arrived,
the file the server stored) and raise :class:`VerificationError` when it is wrong, so
that a fast but wrong result can never end up in the table.

To add cases, write a module next to this one that uses ``@case(...)`` and list it in
``CASE_MODULES`` in ``run.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import multiprocessing
import resource
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CASES",
    "SIDES",
    "Case",
    "Context",
    "Figure",
    "Target",
    "VerificationError",
    "case",
    "have_reference",
    "make_client",
    "peak_rss_tracker",
    "run_isolated",
    "sha256_file",
]

#: The two implementations every case is run for, in table order.
SIDES = ("reference", "cat2sync")
MB = 1e6  # figures use decimal megabytes, as network rates usually do


class VerificationError(AssertionError):
    """A case produced a wrong result (its figure must not be trusted)."""


@dataclass(frozen=True, slots=True)
class Target:
    """The value a figure has to reach, shown in the table's last column.

    ``limit`` applies to the figure's own value (at least ``limit`` when higher is
    better, at most ``limit`` otherwise), or, with ``on_ratio``, to the table's ratio
    column (cat2sync relative to the reference, "times better"): ``on_ratio`` with
    ``limit=2`` means "at most half the reference's time".
    """

    text: str
    limit: float
    on_ratio: bool = False

    def met(self, fig: Figure, ratio: float | None) -> bool | None:
        """Whether ``fig`` (with the row's ``ratio``) reaches the target; None if unknown."""
        if self.on_ratio:
            return None if ratio is None else ratio >= self.limit
        if fig.higher_is_better:
            return fig.value >= self.limit
        return fig.value <= self.limit


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number: a table row is ``<case> <metric>``."""

    metric: str
    value: float
    unit: str
    higher_is_better: bool
    target: Target | None = None  # set on cat2sync's figures that have a goal

    def better(self, other: Figure) -> bool:
        """True when this figure beats ``other`` (same metric)."""
        if self.higher_is_better:
            return self.value > other.value
        return self.value < other.value


CaseFunc = Callable[["Context", str], list[Figure]]


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    func: CaseFunc
    description: str
    sides: tuple[str, ...] = SIDES


#: Registered cases by name, in registration order.
CASES: dict[str, Case] = {}


def case(
    name: str,
    description: str,
    *,
    sides: tuple[str, ...] = SIDES,
) -> Callable[[CaseFunc], CaseFunc]:
    """Register ``func`` as the benchmark case ``name``."""

    def register(func: CaseFunc) -> CaseFunc:
        if name in CASES:
            raise ValueError(f"benchmark case {name!r} registered twice")
        CASES[name] = Case(name, func, description, sides)
        return func

    return register


# -- clients -----------------------------------------------------------------------


def have_reference() -> bool:
    """Whether the upstream client (``caterva2.Client``) can be imported."""
    try:
        importlib.import_module("caterva2")
    except ImportError:
        return False
    return True


def make_client(side: str, url: str, user: tuple[str, str]) -> Any:
    """A logged-in client of ``side``; both support ``with`` and ``close()``."""
    if side == "reference":
        import caterva2  # only the benchmarks import the upstream client

        return caterva2.Client(url, user)
    if side == "cat2sync":
        from cat2sync import Client

        return Client(url, user)
    raise ValueError(f"unknown side {side!r}")


# -- the run context ---------------------------------------------------------------


@dataclass
class Context:
    """What a case needs: the server, the user, scratch space and cached test data."""

    url: str
    user: tuple[str, str]
    workdir: Path
    server_state: Path  # the server's state directory, to check stored files directly
    server_pid: int | None  # the server's process, to read the CPU time it spends
    size_mb: float
    # Sizes of the daemon cases (run.py's --small-files, --large-mb, --scale-files, --tiny).
    small_files: int = 1000
    large_mb: float = 1000.0
    scale_files: int = 100_000
    tiny: bool = False
    # The fleet case (fleet.py): subscriber processes, and "off", "on" or "both" journal.
    fleet_subscribers: int = 20
    fleet_journal: str = "off"
    _cache: dict[str, Any] = field(default_factory=dict)

    def client(self, side: str) -> Any:
        return make_client(side, self.url, self.user)

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per run (test data, uploads that several cases share)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def scratch(self, name: str) -> Path:
        """An empty local directory ``<workdir>/scratch/<name>``."""
        path = self.workdir / "scratch" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def stored_file(self, remote: str) -> Path:
        """Where the server keeps ``remote`` (``@shared``/``@public`` only) on disk."""
        root, _, rel = remote.strip("/").partition("/")
        areas = {"@shared": "shared", "@public": "public"}
        if root not in areas:
            raise ValueError(f"cannot locate {remote} in the server's state directory")
        path = self.server_state / areas[root] / rel
        return path if path.exists() else path.with_name(path.name + ".b2")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


# -- isolation and memory ----------------------------------------------------------


def run_isolated(func: Callable[..., Any], *args: Any) -> Any:
    """Call ``func(*args)`` in a fresh interpreter and return its (picklable) result.

    Used for measurements that must not share a heap with the benchmark runner, such
    as peak memory. ``func`` must be a module-level function of an importable module.
    """
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(func, *args).result()


def _status_kib(key: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB; None if absent."""
    try:
        with Path("/proc/self/status").open() as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


@contextlib.contextmanager
def peak_rss_tracker() -> Iterator[dict[str, float]]:
    """Measure how far the resident set grows inside the ``with`` block.

    Yields a dict that gets ``rss_before_mb``, ``rss_peak_mb`` and ``rss_growth_mb``
    on exit. On Linux the process's high-water mark (``VmHWM``) is reset first through
    ``/proc/self/clear_refs``, so the peak belongs to the block alone. Elsewhere the
    lifetime peak from ``getrusage`` is used, which can include the start-up (and, after
    a fork, even the parent's peak), so the growth figure is then only an upper bound.
    """
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    if before is None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result: dict[str, float] = {}
    yield result
    peak = _status_kib("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result["rss_before_mb"] = before * 1024 / MB
    result["rss_peak_mb"] = peak * 1024 / MB
    result["rss_growth_mb"] = max(0, peak - before) * 1024 / MB
