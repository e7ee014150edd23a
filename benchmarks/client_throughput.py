"""Client throughput cases: upload and download of a large dataset and a large plain file.

Every transfer runs in a fresh interpreter (:func:`_common.run_isolated`), so that its
peak memory can be measured on its own and no connection pool or cache carries over
from an earlier run. Logging in happens before the clock starts.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import blosc2
import httpx
import numpy as np
from _common import (
    MB,
    Context,
    Figure,
    VerificationError,
    case,
    make_client,
    peak_rss_tracker,
    run_isolated,
    sha256_file,
)

REMOTE_DIR = "@shared/bench"
_GEN_STEP = 16 << 20  # generate the plain file this many bytes at a time


# -- test data (generated once per run, on first use) ---------------------------------


def walk_dataset(ctx: Context) -> Path:
    """A float64 random walk rounded to 0.01 (like a sensor's resolution).

    Moderately compressible with Blosc2's defaults: ``2 * size_mb`` MB raw become a
    ``.b2nd`` of about ``size_mb`` MB. Generated a chunk at a time, with the running sum
    carried over, so the runner never holds the whole array.
    """

    def make() -> Path:
        path = ctx.workdir / "data" / "walk.b2nd"
        path.parent.mkdir(parents=True, exist_ok=True)
        n = int(ctx.size_mb * MB * 2 / 8)
        array = blosc2.empty((n,), dtype=np.float64, urlpath=str(path), mode="w")
        rng = np.random.default_rng(20260902)
        step, carry = array.chunks[0], 0.0
        for start in range(0, n, step):
            walk = carry + np.cumsum(rng.standard_normal(min(step, n - start)))
            carry = float(walk[-1])
            array[start : start + len(walk)] = np.round(walk, 2)
        return path

    path: Path = ctx.cached("walk.b2nd", make)
    return path


def lowentropy_file(ctx: Context) -> Path:
    """``size_mb`` of low-entropy bytes under a suffix the server compresses (``.bin``)."""

    def make() -> Path:
        path = ctx.workdir / "data" / "lowent.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(7)
        left = int(ctx.size_mb * MB)
        with path.open("wb") as out:
            while left > 0:
                n = min(left, _GEN_STEP)
                out.write(np.rint(rng.standard_normal(n) * 2).astype(np.int8).tobytes())
                left -= n
        return path

    path: Path = ctx.cached("lowent.bin", make)
    return path


def _digest(ctx: Context, path: Path) -> str:
    digest: str = ctx.cached(f"sha256:{path}", lambda: sha256_file(path))
    return digest


def _remote_copy(ctx: Context, local: Path) -> str:
    """Upload ``local`` once (with cat2sync, untimed) for the download cases."""

    def make() -> str:
        remote = f"{REMOTE_DIR}/{local.name}"
        with make_client("cat2sync", ctx.url, ctx.user) as client:
            client.upload(local, remote)
        stored = ctx.stored_file(remote)
        if not stored.exists():
            raise VerificationError(f"set-up upload of {local.name}: nothing stored")
        if local.suffix == ".b2nd" and sha256_file(stored) != _digest(ctx, local):
            raise VerificationError(f"set-up upload of {local.name} stored different bytes")
        return remote

    remote: str = ctx.cached(f"remote:{local}", make)
    return remote


# -- the isolated transfer ------------------------------------------------------------


class _CountedStream(httpx.SyncByteStream):
    def __init__(self, inner: Any, counter: _WireCounter) -> None:
        self._inner = inner
        self._counter = counter

    def __iter__(self) -> Any:
        for part in self._inner:
            self._counter.received += len(part)
            yield part

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class _WireCounter(httpx.BaseTransport):
    """Counts response body bytes as they come off the wire (before any decoding)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner
        self.received = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        response.stream = _CountedStream(response.stream, self)
        return response

    def close(self) -> None:
        self._inner.close()


def transfer_worker(
    op: str, side: str, url: str, user: tuple[str, str], src: str, dst: str
) -> dict[str, Any]:
    """Run one upload or download in this (fresh) process; return time, bytes, memory."""
    client = make_client(side, url, user)  # logs in: not part of the measurement
    counter = None
    if side == "reference":  # the upstream client keeps one httpx.Client
        counter = _WireCounter(client.httpx_client._transport)
        client.httpx_client._transport = counter
    base = counter.received if counter else client.stats.bytes_received
    os.sync()  # earlier runs' dirty pages must not be written back during this one
    try:
        with peak_rss_tracker() as mem:
            start = time.perf_counter()
            if op == "upload":
                client.upload(Path(src), dst)
                result = dst
            else:
                result = str(client.download(src, Path(dst)))
            seconds = time.perf_counter() - start
        wire = (counter.received if counter else client.stats.bytes_received) - base
    finally:
        client.close()
    return {"seconds": seconds, "wire_bytes": wire, "result": result, **mem}


def _remove_quietly(ctx: Context, remote: str) -> None:
    from cat2sync.errors import NotFound

    with make_client("cat2sync", ctx.url, ctx.user) as client, contextlib.suppress(NotFound):
        client.remove(remote)


# -- cases ----------------------------------------------------------------------------


@case("upload-b2nd", "upload the random-walk .b2nd from disk (stored byte for byte)")
def upload_b2nd(ctx: Context, side: str) -> list[Figure]:
    local = walk_dataset(ctx)
    run = ctx.cached(f"upload-runs:{side}", lambda: [0])
    run[0] += 1
    remote = f"{REMOTE_DIR}/upload-{side}-{run[0]}.b2nd"  # every run creates a new file
    out = run_isolated(transfer_worker, "upload", side, ctx.url, ctx.user, str(local), remote)
    stored = ctx.stored_file(remote)
    if not stored.exists() or sha256_file(stored) != _digest(ctx, local):
        raise VerificationError(f"{side}: the server stored different bytes for {remote}")
    _remove_quietly(ctx, remote)  # the next run's sync() writes the deletion back
    size = local.stat().st_size
    return [
        Figure("MB/s", size / out["seconds"] / MB, "MB/s", True),
        Figure("extra RSS", out["rss_growth_mb"], "MB", False),
    ]


def _download(ctx: Context, side: str, local: Path) -> tuple[dict[str, Any], int]:
    remote = _remote_copy(ctx, local)
    dest = ctx.scratch(f"download-{side}") / local.name
    out = run_isolated(transfer_worker, "download", side, ctx.url, ctx.user, remote, str(dest))
    got = Path(out["result"])
    if not got.is_file():
        raise VerificationError(f"{side}: download of {remote} produced no file at {got}")
    if sha256_file(got) != _digest(ctx, local):
        raise VerificationError(f"{side}: download of {remote} has different content")
    size = got.stat().st_size
    got.unlink()
    return out, size


@case("download-b2nd", "download the random-walk .b2nd to a local file (stored bytes)")
def download_b2nd(ctx: Context, side: str) -> list[Figure]:
    out, size = _download(ctx, side, walk_dataset(ctx))
    return [
        Figure("MB/s", size / out["seconds"] / MB, "MB/s", True),
        Figure("extra RSS", out["rss_growth_mb"], "MB", False),
    ]


@case("download-bin", "download a plain low-entropy file that the server keeps compressed")
def download_bin(ctx: Context, side: str) -> list[Figure]:
    out, size = _download(ctx, side, lowentropy_file(ctx))
    return [
        Figure("MB/s", size / out["seconds"] / MB, "MB/s", True),
        Figure("on the wire", out["wire_bytes"] / MB, "MB", False),
        Figure("extra RSS", out["rss_growth_mb"], "MB", False),
    ]
