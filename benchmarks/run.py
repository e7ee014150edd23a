#!/usr/bin/env python3
"""Benchmark cat2sync's client against the upstream ``caterva2.Client`` on a real server.

    python benchmarks/run.py [--size-mb 200] [--cases NAME ...] [--repeat 2] [--tiny]

Starts a local Caterva2 server in a temporary directory, generates its own test data,
runs every selected case for both clients in the same run (each case checks its result;
a wrong result fails the run), and prints a Markdown table with the best of
``--repeat`` runs. See benchmarks/README.md.
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

from cat2sync.errors import ServerStartError  # noqa: E402
from cat2sync.server import LocalServer  # noqa: E402

#: Modules that register cases with ``@case``; add new ones here.
CASE_MODULES = ("client_throughput",)
ADMIN = ("bench-admin@example.com", "benchadmin1")
USER = ("bench@example.com", "benchpass1")
TINY_MB = 5.0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=200.0,
                        help="size of the test files in MB (default: 200)")
    parser.add_argument("--tiny", action="store_true",
                        help=f"smoke mode: {TINY_MB:g} MB files (overrides --size-mb)")
    parser.add_argument("--cases", nargs="+", metavar="NAME",
                        help="run only these cases (default: all; see --list)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs per case and client; the best is reported (default: 2)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the results as JSON to FILE")
    parser.add_argument("--workdir", type=Path,
                        help="where to put the server and the data (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.size_mb = TINY_MB
    if args.repeat < 1 or args.size_mb <= 0:
        parser.error("--repeat and --size-mb must be positive")
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


def _fmt(fig: Figure | None) -> str:
    if fig is None:
        return "-"
    digits = 1 if abs(fig.value) >= 10 else 2
    return f"{fig.value:.{digits}f} {fig.unit}"


def _ratio(ref: Figure | None, ours: Figure | None) -> str:
    """cat2sync relative to the reference, as 'times better' (> 1: cat2sync wins)."""
    if ref is None or ours is None:
        return "-"
    num, den = (ours.value, ref.value) if ours.higher_is_better else (ref.value, ours.value)
    if den <= 0 or num <= 0:
        return "-"
    return f"{num / den:.2f}x"


def _run_cases(ctx: Context, names: list[str], sides: list[str], repeat: int,
               ) -> tuple[dict[tuple[str, str], dict[str, Figure]], list[str]]:
    """Run everything; return the best figure per (case, metric) and side, plus failures."""
    best: dict[tuple[str, str], dict[str, Figure]] = {}
    failures: list[str] = []
    for name in names:
        bench = CASES[name]
        case_sides = [s for s in sides if s in bench.sides]
        for run in range(repeat):
            order = case_sides if run % 2 == 0 else case_sides[::-1]  # alternate who goes first
            for side in order:
                label = f"{name} [{side}] run {run + 1}/{repeat}"
                try:
                    figures = bench.func(ctx, side)
                except VerificationError as exc:
                    failures.append(f"{name} [{side}]: WRONG RESULT: {exc}")
                    print(f"!! {label}: WRONG RESULT: {exc}", file=sys.stderr, flush=True)
                    continue
                except Exception as exc:
                    failures.append(f"{name} [{side}]: {type(exc).__name__}: {exc}")
                    print(f"!! {label}: failed:\n{traceback.format_exc()}", file=sys.stderr,
                          flush=True)
                    continue
                shown = ", ".join(f"{f.metric} {_fmt(f)}" for f in figures)
                print(f"   {label}: {shown}", file=sys.stderr, flush=True)
                for fig in figures:
                    slot = best.setdefault((name, fig.metric), {})
                    if side not in slot or fig.better(slot[side]):
                        slot[side] = fig
    return best, failures


def _table(best: dict[tuple[str, str], dict[str, Figure]]) -> str:
    lines = ["| case | reference | cat2sync | ratio |", "|---|--:|--:|--:|"]
    for (name, metric), by_side in best.items():
        ref, ours = by_side.get("reference"), by_side.get("cat2sync")
        lines.append(f"| {name}: {metric} | {_fmt(ref)} | {_fmt(ours)} | {_ratio(ref, ours)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    for module in CASE_MODULES:
        importlib.import_module(module)
    if args.list:
        for bench in CASES.values():
            print(f"{bench.name!r:24} {bench.description}")
        return 0
    names = args.cases or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(CASES)}",
              file=sys.stderr)
        return 2

    sides = list(SIDES)
    if not have_reference():
        print("NOTE: the reference client (caterva2.Client) is not importable, so only "
              "cat2sync is measured.\n      Install it to compare: "
              "pip install 'caterva2[clients]>=2026.9.2,<2027'", file=sys.stderr)
        sides.remove("reference")

    started = dt.datetime.now().astimezone()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cat2sync-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        server = LocalServer(workdir / "server", superuser=ADMIN)
        print(f"starting a Caterva2 server in {workdir} ...", file=sys.stderr, flush=True)
        try:
            server.start()
        except ServerStartError as exc:
            print(f"cannot start the Caterva2 server (pip install 'cat2sync[server]'):\n{exc}",
                  file=sys.stderr)
            return 2
        try:
            server.add_user(*USER)
            ctx = Context(url=server.url, user=USER, workdir=workdir,
                          server_state=server.state_dir / "state", size_mb=args.size_mb)
            best, failures = _run_cases(ctx, names, sides, args.repeat)
        finally:
            server.stop()

    print(f"\ncat2sync benchmark, {started:%Y-%m-%d %H:%M %Z}: {args.size_mb:g} MB files, "
          f"best of {args.repeat}\n{_machine()}; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after\nPython {platform.python_version()}, "
          f"caterva2 {_version('caterva2')}, blosc2 {_version('blosc2')}, "
          f"httpx {_version('httpx')}")
    print("ratio: cat2sync relative to the reference, > 1 means cat2sync is better\n")
    print(_table(best))
    if args.json:
        args.json.write_text(json.dumps({
            "date": started.isoformat(), "size_mb": args.size_mb, "repeat": args.repeat,
            "results": [
                {"case": name, "metric": metric,
                 **{side: _as_dict(fig) for side, fig in by_side.items()}}
                for (name, metric), by_side in best.items()
            ],
            "failures": failures,
        }, indent=2))
    if failures:
        print("\nFAILED (these figures are missing from the table):", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def _as_dict(fig: Figure) -> dict[str, Any]:
    return {"value": fig.value, "unit": fig.unit, "higher_is_better": fig.higher_is_better}


if __name__ == "__main__":
    sys.exit(main())
