#!/usr/bin/env python3
"""Benchmark cat2sync against the upstream ``caterva2`` client and agent on a real server.

    python benchmarks/run.py [--size-mb 200] [--cases NAME ...] [--repeat 2] [--tiny]
                             [--caterva2-2025 [BINDIR]]

Starts a local Caterva2 server in a temporary directory, generates its own test data,
runs every selected case for cat2sync and the reference in the same run (each case
checks its result; a wrong result fails the run), and prints a Markdown table with the
best of ``--repeat`` runs and, where the project set one, the target. See
benchmarks/README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import cat2sync  # noqa: F401  (installed, or importable from the current directory)
except ImportError:  # running from a source checkout
    sys.path.insert(1, str(HERE.parent))

from _common import CASES, SIDES, Context, Figure, VerificationError, have_reference  # noqa: E402
from _profile import format_breakdown, have_py_spy, server_profile  # noqa: E402

from cat2sync.errors import ServerStartError  # noqa: E402
from cat2sync.server import LocalServer, LocalServer2025  # noqa: E402

#: Modules that register cases with ``@case``; add new ones here.
CASE_MODULES = ("client_throughput", "daemon_cases", "server_cases", "fleet")
ADMIN = ("bench-admin@example.com", "benchadmin1")
USER = ("bench@example.com", "benchpass1")
TINY_MB = 5.0
TINY_SMALL_FILES = 50
TINY_LARGE_MB = 20.0
TINY_SCALE_FILES = 2000
#: Where ``make caterva2-2025`` puts the 2025.8.7 server (``cat2sub``).
OLD_SERVER_BIN = HERE.parent / ".venv-c2-2025" / "bin"
#: The cases that ``--caterva2-2025`` runs: the client's own throughput.
OLD_SERVER_MODULE = "client_throughput"
TINY_FLEET_SUBSCRIBERS = 3


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size-mb", type=float, default=200.0, help="size of the test files in MB (default: 200)"
    )
    parser.add_argument(
        "--small-files",
        type=int,
        default=1000,
        metavar="N",
        help="datasets in the many-small-files mirror cases (default: 1000)",
    )
    parser.add_argument(
        "--large-mb",
        type=float,
        default=1000.0,
        metavar="N",
        help="size of the large mirrored datasets in MB (default: 1000)",
    )
    parser.add_argument(
        "--scale-files",
        type=int,
        default=100_000,
        metavar="N",
        help="files in the watched tree of the scale case (default: 100000)",
    )
    parser.add_argument(
        "--fleet-subscribers",
        type=int,
        default=20,
        metavar="N",
        help="subscriber daemons (processes) of the fleet case (default: 20)",
    )
    parser.add_argument(
        "--fleet-journal",
        choices=("off", "on", "both"),
        default="both",
        help="the fleet case without the change journal, with it, or both (default: both)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help=f"smoke mode: {TINY_MB:g} MB files, {TINY_SMALL_FILES} small "
        f"datasets, {TINY_LARGE_MB:g} MB large ones, a "
        f"{TINY_SCALE_FILES}-file tree, {TINY_FLEET_SUBSCRIBERS} fleet subscribers "
        "(overrides the size options)",
    )
    parser.add_argument(
        "--cases", nargs="+", metavar="NAME", help="run only these cases (default: all; see --list)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs per case and client; the best is reported (default: 2)",
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--caterva2-2025",
        nargs="?",
        const=OLD_SERVER_BIN,
        type=Path,
        metavar="BINDIR",
        help="run the client cases, for cat2sync alone, against a Caterva2 2025.8.7 "
        "server started from BINDIR (default: .venv-c2-2025/bin, see make caterva2-2025)",
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE"
    )
    parser.add_argument(
        "--workdir", type=Path, help="where to put the server and the data (default: a temp dir)"
    )
    parser.add_argument(
        "--profile-server",
        type=Path,
        metavar="DIR",
        help="sample the server with py-spy during every run; write the "
        "stacks to DIR and print where its CPU went",
    )
    args = parser.parse_args(argv)
    if args.profile_server and not have_py_spy():
        parser.error("--profile-server needs py-spy on PATH (pip install py-spy)")
    if args.tiny:
        args.size_mb = TINY_MB
        args.small_files = TINY_SMALL_FILES
        args.large_mb = TINY_LARGE_MB
        args.scale_files = TINY_SCALE_FILES
        args.fleet_subscribers = TINY_FLEET_SUBSCRIBERS
    sizes = (
        args.size_mb,
        args.small_files,
        args.large_mb,
        args.scale_files,
        args.fleet_subscribers,
    )
    if min(args.repeat, *sizes) <= 0:
        parser.error("--repeat and the size options must be positive")
    return args


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _machine() -> str:
    memory = "? GB RAM"
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]  # MemTotal: <KiB> kB
        memory = f"{int(first.split()[1]) / 2**20:.0f} GiB RAM"
    return f"{platform.node()}: {platform.machine()}, {os.cpu_count()} CPUs, {memory}"


def _fmt(fig: Figure | None, missing: str = "-") -> str:
    if fig is None:
        return missing
    value = abs(fig.value)
    counted = fig.unit in ("B", "req") and float(fig.value).is_integer()
    digits = 0 if value >= 1000 or counted else 1 if value >= 10 else 2
    return f"{fig.value:.{digits}f} {fig.unit}"


def _ratio_value(ref: Figure | None, ours: Figure | None) -> float | None:
    """cat2sync relative to the reference, as 'times better' (> 1: cat2sync wins)."""
    if ref is None or ours is None:
        return None
    num, den = (ours.value, ref.value) if ours.higher_is_better else (ref.value, ours.value)
    if den <= 0 or num <= 0:
        return None
    return num / den


def _ratio(ref: Figure | None, ours: Figure | None) -> str:
    value = _ratio_value(ref, ours)
    return "-" if value is None else f"{value:.2f}x"


def _target(ref: Figure | None, ours: Figure | None) -> tuple[str, bool | None]:
    """The target cell ("≤ 1.1x: met") and whether it was met (None: no target)."""
    if ours is None or ours.target is None:
        return "", None
    met = ours.target.met(ours, _ratio_value(ref, ours))
    verdict = "?" if met is None else "met" if met else "**MISSED**"
    return f"{ours.target.text}: {verdict}", met


Best = dict[tuple[str, str], dict[str, Figure]]


def _run_cases(
    ctx: Context,
    names: list[str],
    sides: list[str],
    repeat: int,
    profile: Path | None = None,
) -> tuple[Best, list[str], set[tuple[str, str]]]:
    """Run everything; return the best figure per (case, metric) and side, the
    failures, and the (case, side) pairs that produced figures at least once.

    With ``profile``, the server is sampled during each run into
    ``<profile>/<case>-<side>-<run>.txt`` and a breakdown is printed after it."""
    best: Best = {}
    failures: list[str] = []
    ran: set[tuple[str, str]] = set()
    for name in names:
        bench = CASES[name]
        case_sides = [s for s in sides if s in bench.sides]
        for run in range(repeat):
            order = case_sides if run % 2 == 0 else case_sides[::-1]  # alternate who goes first
            for side in order:
                label = f"{name} [{side}] run {run + 1}/{repeat}"
                began = time.perf_counter()
                stacks = profile / f"{name}-{side}-{run + 1}.txt" if profile else None
                try:
                    with server_profile(ctx.server_pid, stacks):
                        figures = bench.func(ctx, side)
                except VerificationError as exc:
                    failures.append(f"{name} [{side}]: WRONG RESULT: {exc}")
                    print(f"!! {label}: WRONG RESULT: {exc}", file=sys.stderr, flush=True)
                    continue
                except Exception as exc:
                    failures.append(f"{name} [{side}]: {type(exc).__name__}: {exc}")
                    print(
                        f"!! {label}: failed:\n{traceback.format_exc()}",
                        file=sys.stderr,
                        flush=True,
                    )
                    continue
                shown = ", ".join(f"{f.metric} {_fmt(f)}" for f in figures)
                print(
                    f"   {label} ({time.perf_counter() - began:.0f} s): {shown}",
                    file=sys.stderr,
                    flush=True,
                )
                if stacks is not None and stacks.exists():
                    print(
                        f"   server profile ({stacks.name}): {format_breakdown(stacks)}",
                        file=sys.stderr,
                        flush=True,
                    )
                ran.add((name, side))
                for fig in figures:
                    slot = best.setdefault((name, fig.metric), {})
                    if side not in slot or fig.better(slot[side]):
                        slot[side] = fig
    return best, failures, ran


def _table(best: Best, ran: set[tuple[str, str]]) -> tuple[str, list[str]]:
    """The Markdown table, and the rows whose target was missed.

    The reference column says ``n/a`` where the reference does not apply (a case that
    only cat2sync runs, or a figure the reference has no counterpart for), and ``-``
    where it should be but is not (it failed, or is not installed).
    """
    lines = ["| case | reference | cat2sync | ratio | target |", "|---|--:|--:|--:|---|"]
    missed: list[str] = []
    for (name, metric), by_side in best.items():
        ref, ours = by_side.get("reference"), by_side.get("cat2sync")
        applies = "reference" in CASES[name].sides and (
            (name, "reference") not in ran or ref is not None
        )
        target, met = _target(ref, ours)
        if met is False:
            missed.append(f"{name}: {metric}")
        lines.append(
            f"| {name}: {metric} | {_fmt(ref, '-' if applies else 'n/a')} | "
            f"{_fmt(ours)} | {_ratio(ref, ours)} | {target} |"
        )
    return "\n".join(lines), missed


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    for module in CASE_MODULES:
        importlib.import_module(module)
    old = args.caterva2_2025
    known = [n for n, c in CASES.items() if not old or c.func.__module__ == OLD_SERVER_MODULE]
    if args.list:
        for name in known:
            print(f"{name!r:24} {CASES[name].description}")
        return 0
    names = args.cases or known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2

    sides = list(SIDES)
    if old:
        sides.remove("reference")  # the reference client of 2026 is not the 2025 one
    elif not have_reference():
        print(
            "NOTE: the reference client (caterva2.Client) is not importable, so only "
            "cat2sync is measured.\n      Install it to compare: "
            "pip install 'caterva2[clients]>=2026.9.2,<2027'",
            file=sys.stderr,
        )
        sides.remove("reference")

    started = dt.datetime.now().astimezone()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cat2sync-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        server = (
            LocalServer2025(workdir / "server", bindir=old, superuser=ADMIN)
            if old
            else LocalServer(workdir / "server", superuser=ADMIN)
        )
        print(f"starting a Caterva2 server in {workdir} ...", file=sys.stderr, flush=True)
        try:
            server.start()
        except ServerStartError as exc:
            print(
                f"cannot start the Caterva2 server (pip install 'cat2sync[server]'):\n{exc}",
                file=sys.stderr,
            )
            return 2
        try:
            server.add_user(*USER)
            ctx = Context(
                url=server.url,
                user=USER,
                workdir=workdir,
                server_state=server.state_dir / "state",
                server_pid=server.pid,
                size_mb=args.size_mb,
                small_files=args.small_files,
                large_mb=args.large_mb,
                scale_files=args.scale_files,
                tiny=args.tiny,
                fleet_subscribers=args.fleet_subscribers,
                fleet_journal=args.fleet_journal,
            )
            best, failures, ran = _run_cases(ctx, names, sides, args.repeat, args.profile_server)
        finally:
            server.stop()

    finished = dt.datetime.now().astimezone()
    table, missed = _table(best, ran)
    print(
        f"\ncat2sync benchmark, {started:%Y-%m-%d %H:%M %Z} "
        f"({(finished - started).total_seconds() / 60:.1f} min): {args.size_mb:g} MB files, "
        f"{args.small_files} small datasets, {args.large_mb:g} MB large ones, "
        f"{args.scale_files} files in the scale tree; best of {args.repeat}\n"
        f"{_machine()}; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after\nPython {platform.python_version()}, "
        f"cat2sync {_version('cat2sync')}, caterva2 {_version('caterva2')}, "
        f"blosc2 {_version('blosc2')}, httpx {_version('httpx')}"
        + (f"\nserver: Caterva2 2025.8.7 (cat2sub) from {old}" if old else "")
    )
    print("ratio: cat2sync relative to the reference, > 1 means cat2sync is better\n")
    print(table)
    if missed:
        print(f"\n{len(missed)} target(s) missed: {'; '.join(missed)}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": started.isoformat(),
                    "size_mb": args.size_mb,
                    "repeat": args.repeat,
                    "small_files": args.small_files,
                    "large_mb": args.large_mb,
                    "scale_files": args.scale_files,
                    "machine": _machine(),
                    "results": [
                        {
                            "case": name,
                            "metric": metric,
                            **{side: _as_dict(fig) for side, fig in by_side.items()},
                        }
                        for (name, metric), by_side in best.items()
                    ],
                    "failures": failures,
                    "targets_missed": missed,
                },
                indent=2,
            )
        )
    if failures:
        print("\nFAILED (these figures are missing from the table):", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def _as_dict(fig: Figure) -> dict[str, Any]:
    out: dict[str, Any] = {
        "value": fig.value,
        "unit": fig.unit,
        "higher_is_better": fig.higher_is_better,
    }
    if fig.target is not None:
        out["target"] = fig.target.text
    return out


if __name__ == "__main__":
    sys.exit(main())
