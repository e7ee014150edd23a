"""The endpoint is read-only, shows no secret, answers 404 to what it does not serve,
survives slow and hostile clients, and its address is checked: a busy one is a
one-line error at start and on hot reload (which keeps the old listener)."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tomli_w

from cat2sync.events import EventKind
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, wait_until, write_b2nd
from cat2sync.web import _CLIENT_TIMEOUT
from tests.helpers.observe import SETTLE, Observed, observe, observed_manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def obs(tmp_path: Path, server: LocalServer, remote_dir: str, data_dir: Path) -> Iterator[Observed]:
    rule = {"name": "up", "local": str(data_dir), "remote": remote_dir, "settle": SETTLE}
    with observe(observed_manifest(tmp_path, url=server.url, login=ALICE, uploads=[rule])) as o:
        yield o


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_paths_and_methods(obs: Observed) -> None:
    page = obs.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("/page.js", "/page.css", "/metrics", "/status.json", "/?refresh=1"):
        assert obs.get(path).status_code == 200, path
    for path in ("/nope", "/metrics/x", "/status", "/../state/state.db", "/index.html"):
        assert obs.get(path).status_code == 404, path
    head = httpx.head(obs.url + "metrics")
    assert head.status_code == 200 and head.content == b""
    for method in ("POST", "PUT", "DELETE"):
        assert httpx.request(method, obs.url + "status.json").status_code == 501


def test_no_secret_is_shown(obs: Observed, data_dir: Path) -> None:
    write_b2nd(data_dir / "a.b2nd", np.ones((10, 10)), chunks=(5, 10))
    wait_until(lambda: obs.events(EventKind.UPLOADED), message="an upload")
    for path in ("/", "/page.js", "/metrics", "/status.json"):
        body = obs.get(path).text
        assert ALICE[1] not in body, path
        assert "eyJ" not in body, path  # a JWT (the login cookie) starts so
        assert "c2subauth" not in body, path


def test_slow_and_hostile_clients_cannot_stall_the_daemon(obs: Observed, data_dir: Path) -> None:
    host, port = obs.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    # More silent connections than the endpoint has workers and room to queue.
    silent = [socket.create_connection((host, int(port))) for _ in range(16)]
    try:
        write_b2nd(data_dir / "meanwhile.b2nd", np.ones((10, 10)), chunks=(5, 10))
        wait_until(lambda: obs.events(EventKind.UPLOADED), message="the daemon to go on shipping")
        # The endpoint closes each without an answer: at once when every worker is busy
        # and the queue is full, else once it has been silent too long.
        deadline = time.monotonic() + _CLIENT_TIMEOUT + 20
        for sock in silent:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(1024) == b""
        wait_until(lambda: obs.get("/metrics").status_code == 200, message="the endpoint back")
    finally:
        for sock in silent:
            sock.close()


def test_a_busy_address_is_one_line_at_start(
    tmp_path: Path, server: LocalServer, data_dir: Path, busy_port: int
) -> None:
    doc = {
        "daemon": {"state_dir": "state", "http": f"127.0.0.1:{busy_port}"},
        "server": {"url": server.url, "username": ALICE[0], "password": "${CAT2_PW}"},
        "upload": [{"local": str(data_dir), "remote": "@personal/busy"}],
    }
    path = tmp_path / "cat2sync.toml"
    path.write_text(tomli_w.dumps(doc))
    done = _cli("run", str(path), timeout=120)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"cat2sync: cannot serve the status page on 127.0.0.1:{busy_port}: Address already in use"
    )
    assert "Traceback" not in done.stderr


def test_a_bad_http_flag_is_a_usage_error(tmp_path: Path) -> None:
    done = _cli("run", "--http", "localhost", str(tmp_path / "none.toml"), timeout=60)
    assert done.returncode == 2
    assert 'expected "host:port"' in done.stderr


def test_run_http_serves_the_page_and_logs_its_url(
    tmp_path: Path, server: LocalServer, data_dir: Path
) -> None:
    doc = {
        "daemon": {"state_dir": "state"},  # no http: the flag turns it on
        "server": {"url": server.url, "username": ALICE[0], "password": "${CAT2_PW}"},
        "upload": [{"local": str(data_dir), "remote": "@personal/flag"}],
    }
    path = tmp_path / "cat2sync.toml"
    path.write_text(tomli_w.dumps(doc))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cat2sync", "run", "--http", "127.0.0.1:0", str(path)],
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        ready = ""
        for line in proc.stderr:
            if "ready:" in line:
                ready = line
                break
        found = re.search(r"status page (http://127\.0\.0\.1:\d+/)", ready)
        assert found, ready
        assert f"server {server.url}" in ready  # the page's URL next to the server's
        assert httpx.get(found.group(1) + "metrics").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_reload_to_a_busy_address_keeps_the_old_listener(
    obs: Observed, busy_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = obs.daemon.manifest
    old = obs.url
    text = manifest.path.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{busy_port}"')
    with caplog.at_level(logging.ERROR, logger="cat2sync"):
        _rewrite(manifest.path, text)
        obs.daemon.check_manifest()
    assert obs.url == old
    assert obs.get("/metrics").status_code == 200
    (record,) = [r for r in caplog.records if "not reloaded" in r.getMessage()]
    assert "\n" not in record.getMessage()
    assert f"cannot serve the status page on 127.0.0.1:{busy_port}" in record.getMessage()
    # A free address moves the listener.
    port = _free_port()
    _rewrite(manifest.path, text.replace(f"127.0.0.1:{busy_port}", f"127.0.0.1:{port}"))
    obs.daemon.check_manifest()
    assert obs.url == f"http://127.0.0.1:{port}/"
    assert obs.get("/metrics").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(old + "metrics")


def _rewrite(path: Path, text: str) -> None:
    """Write ``text`` with a new mtime, as an editor would."""
    path.write_text(text)
    later = time.time() + 2
    os.utime(path, (later, later))


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CAT2_PW": ALICE[1]}
    env.pop("NOTIFY_SOCKET", None)
    return env


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cat2sync", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
