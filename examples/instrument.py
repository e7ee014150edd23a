"""A simulated instrument for the quickstart: writes and grows ``.b2nd`` frame stacks.

Each run is a ``run_NNN.b2nd`` stack of 64x64 detector frames that grows by a few frames
every ``--interval`` seconds (in place, as acquisition software does), then gets a
``run_NNN.json`` sidecar when it is complete. A scratch ``.tmp`` file is written and
renamed along the way, as many instruments do.

    python examples/instrument.py examples/quickstart-data/acquisition --runs 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import blosc2
import numpy as np

FRAME = (64, 64)


def _frames(rng: np.random.Generator, count: int, start: int) -> np.ndarray:
    """Noisy frames with a bright spot drifting across the detector."""
    frames = rng.poisson(10, size=(count, *FRAME)).astype(np.uint16)
    for i in range(count):
        y, x = (start + i) % FRAME[0], (2 * (start + i)) % FRAME[1]
        frames[i, y, x] += 1000
    return frames


def acquire(folder: Path, run: int, steps: int, per_step: int, interval: float) -> None:
    rng = np.random.default_rng(run)
    path = folder / f"run_{run:03d}.b2nd"
    stack = blosc2.zeros(
        (0, *FRAME), dtype=np.uint16, urlpath=str(path), mode="w", chunks=(per_step, *FRAME)
    )
    for _ in range(steps):
        n = stack.shape[0]
        stack.resize((n + per_step, *FRAME))
        stack[n:] = _frames(rng, per_step, n)
        print(f"instrument: {path.name} now has {n + per_step} frames", flush=True)
        time.sleep(interval)
    scratch = folder / f"run_{run:03d}.json.tmp"
    scratch.write_text(
        json.dumps(
            {
                "run": run,
                "frames": steps * per_step,
                "detector": list(FRAME),
                "finished": time.time(),
            }
        )
    )
    scratch.rename(folder / f"run_{run:03d}.json")  # complete files appear atomically


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--frames-per-step", type=int, default=8)
    parser.add_argument("--interval", type=float, default=3.0)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    first = 1 + len(list(args.folder.glob("run_*.b2nd")))
    for run in range(first, first + args.runs):
        acquire(args.folder, run, args.steps, args.frames_per_step, args.interval)
    print("instrument: done", flush=True)


if __name__ == "__main__":
    main()
