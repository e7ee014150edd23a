"""The server alone: what one request costs it, whatever the client.

The mirror-small cases are bound by the server's CPU (one uvicorn process, so one core
at most). This case measures the floor under them with bare httpx, no client library:
the server CPU per request of each endpoint the mirror cases use, four requests at a
time over kept-alive connections, on the same datasets, and the upload and move that
a watched file costs. One logged-in request per dataset costs at least
``small_files`` x the cheapest logged-in request, whoever sends it.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from _common import Context, Figure, VerificationError, case
from daemon_cases import _process_cpu, _small_tree

CONCURRENCY = 4
PUBLIC_COPY = "@public/bench-floor/one.b2nd"
WRITES = "@shared/bench-floor"


def _logged_in(ctx: Context) -> httpx.Client:
    http = _anonymous(ctx)
    http.post(
        "/auth/jwt/login", data={"username": ctx.user[0], "password": ctx.user[1]}
    ).raise_for_status()
    return http


def _anonymous(ctx: Context) -> httpx.Client:
    return httpx.Client(
        base_url=ctx.url, timeout=60, limits=httpx.Limits(max_connections=CONCURRENCY)
    )


def _server_ms(ctx: Context, paths: list[str], send: Callable[[str], None]) -> tuple[float, float]:
    """Server CPU per request (ms) and its share of the wall time for ``send`` on each path."""
    cpu0, start = _process_cpu(ctx.server_pid), time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(send, paths))
    wall = time.perf_counter() - start
    cpu = _process_cpu(ctx.server_pid) - cpu0
    return 1e3 * cpu / len(paths), cpu / wall


def _poster(http: httpx.Client, **kwargs: Any) -> Callable[[str], None]:
    def send(path: str) -> None:
        answer = http.post(path, **kwargs)
        if answer.status_code != 200:
            raise VerificationError(f"POST {path}: {answer.status_code} {answer.text[:100]}")

    return send


def _write_costs(
    ctx: Context,
    http: httpx.Client,
    body: bytes,
    count: int,
) -> tuple[float, float]:
    """Server CPU (ms) of an upload of ``body`` as a new dataset, and of a move: the two
    requests a watched file costs (uploaded beside its name, then moved onto it)."""
    names = [f"{WRITES}/d{i:05d}.b2nd" for i in range(count)]
    upload, _ = _server_ms(
        ctx, [f"/api/upload/{n}" for n in names], _poster(http, files={"file": ("d.b2nd", body)})
    )
    moves = iter(names)

    def move(_: str) -> None:
        src = next(moves)
        _poster(http, json={"src": src, "dst": src.replace("/d", "/m")})("/api/move/")

    move_ms, _ = _server_ms(ctx, ["/api/move/"] * count, move)
    listed = http.get(f"/api/list/{WRITES}").json()
    if sorted(listed) != sorted(n.rsplit("/", 1)[1].replace("d", "m", 1) for n in names):
        raise VerificationError(f"{WRITES}: {len(listed)} files after {count} uploads and moves")
    http.post(f"/api/remove/{WRITES}").raise_for_status()
    return upload, move_ms


def _getter(
    http: httpx.Client,
    expect: Callable[[str, bytes], None] | None = None,
) -> Callable[[str], None]:
    def send(path: str) -> None:
        answer = http.get(path)
        if answer.status_code != 200:
            raise VerificationError(f"GET {path}: {answer.status_code} {answer.text[:100]}")
        if expect is not None:
            expect(path, answer.content)

    return send


@case(
    "server-floor",
    "the server alone (bare httpx, 4 at a time): CPU per request of each "
    "endpoint the mirror cases use",
    sides=("cat2sync",),
)
def server_floor(ctx: Context, side: str) -> list[Figure]:
    root, digests = _small_tree(ctx)
    names = sorted(digests)

    def same_bytes(path: str, body: bytes) -> None:
        rel = path.split(f"{root}/", 1)[1]
        if hashlib.sha256(body).hexdigest() != digests[rel]:
            raise VerificationError(f"{path}: the body differs from the stored dataset")

    with contextlib.closing(_logged_in(ctx)) as http, _anonymous(ctx) as anon:
        http.post(
            "/api/copy/",
            json={"src": f"{root}/{names[0]}", "dst": PUBLIC_COPY},
        ).raise_for_status()
        try:
            roots, _ = _server_ms(ctx, ["/api/roots"] * len(names), _getter(http))
            info, busy = _server_ms(ctx, [f"/api/info/{root}/{n}" for n in names], _getter(http))
            fetch, _ = _server_ms(
                ctx, [f"/api/fetch/{root}/{n}" for n in names], _getter(http, same_bytes)
            )
            download, _ = _server_ms(
                ctx, [f"/api/download/{root}/{n}" for n in names], _getter(http, same_bytes)
            )
            public, _ = _server_ms(ctx, [f"/api/info/{PUBLIC_COPY}"] * len(names), _getter(anon))
            upload, move = _write_costs(
                ctx, http, http.get(f"/api/fetch/{root}/{names[0]}").content, len(names)
            )
        finally:
            http.post(f"/api/remove/{PUBLIC_COPY}")
    return [
        Figure(
            "server CPU per request: GET /api/roots, logged in (the cheapest)", roots, "ms", False
        ),
        Figure("server CPU per request: info, logged in", info, "ms", False),
        Figure("server CPU per request: fetch (whole dataset), logged in", fetch, "ms", False),
        Figure("server CPU per request: download, logged in", download, "ms", False),
        Figure("server CPU per request: info on @public, anonymous", public, "ms", False),
        Figure(
            "server CPU per request: upload of a new dataset (a few KB), logged in",
            upload,
            "ms",
            False,
        ),
        Figure("server CPU per request: move, logged in", move, "ms", False),
        Figure("server busy during the info requests", 100 * busy, "%", True),
        Figure(
            f"floor: {len(names)} x the cheapest logged-in request",
            roots * len(names) / 1e3,
            "s",
            False,
        ),
    ]
