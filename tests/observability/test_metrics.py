"""``/metrics`` follows a scripted run on the real server: counts per event kind, bytes
as the events report them, the backlog up and back to 0, requests per endpoint; the
text parses with prometheus-client's own parser and names no file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cat2sync import Client, __version__
from cat2sync.events import EventKind
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, grow_b2nd, wait_until, write_b2nd
from tests.helpers.observe import Observed, observe, observed_manifest, sample

FILES = [f"run_{i:03d}.b2nd" for i in range(5)]


def _frames(seed: int, rows: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, (rows, 30)).astype(np.float64)


def _bytes_of(observed: Observed, *kinds: EventKind) -> int:
    return sum(e.bytes for kind in kinds for e in observed.events(kind))


def test_five_uploads_and_an_append(
    tmp_path: Path, server: LocalServer, remote_dir: str, data_dir: Path
) -> None:
    # A settle time long enough to see the backlog before the files are shipped; no
    # change journal, whose own requests would blur the count of each file's.
    rule = {
        "name": "up",
        "local": str(data_dir),
        "remote": remote_dir,
        "settle": "1.5s",
        "journal": False,
    }
    manifest = observed_manifest(tmp_path, url=server.url, login=ALICE, uploads=[rule])
    with observe(manifest) as obs:
        for i, name in enumerate(FILES):
            write_b2nd(data_dir / name, _frames(i), chunks=(10, 30))
        wait_until(
            lambda: obs.value("cat2sync_pending_files", rule="up") == len(FILES),
            message="the backlog to hold the five files",
        )
        wait_until(
            lambda: len(obs.events(EventKind.UPLOADED)) == len(FILES),
            message="five uploads",
        )
        grow_b2nd(data_dir / FILES[0], _frames(99, rows=20))
        wait_until(lambda: obs.events(EventKind.APPENDED), message="the append")
        wait_until(obs.settled, message="the backlog to empty")
        text = obs.metrics_text()
        m = obs.metrics()

    assert sample(m, "cat2sync_files_total", rule="up", event="uploaded") == 5
    assert sample(m, "cat2sync_files_total", rule="up", event="appended") == 1
    assert sample(m, "cat2sync_files_total", rule="up", event="failed") is None
    sent = _bytes_of(obs, EventKind.UPLOADED, EventKind.APPENDED)
    assert sent > 0
    assert sample(m, "cat2sync_bytes_total", rule="up", direction="up") == sent
    assert sample(m, "cat2sync_pending_files", rule="up") == 0
    assert sample(m, "cat2sync_oldest_pending_age_seconds", rule="up") == 0
    assert sample(m, "cat2sync_in_flight_files", rule="up") == 0
    assert (sample(m, "cat2sync_last_pass_timestamp_seconds", rule="up") or 0) > 0
    assert (sample(m, "cat2sync_last_success_timestamp_seconds", rule="up") or 0) > 0
    assert (sample(m, "cat2sync_pass_duration_seconds_count", rule="up") or 0) >= 1
    assert sample(m, "cat2sync_rule_interval_seconds", rule="up") == 600
    assert sample(m, "cat2sync_rule_state", rule="up", state="idle") == 1
    # Each new file: an upload under a temporary name, then a move; the growth: an append.
    requests = {"server": "default", "outcome": "ok"}
    assert sample(m, "cat2sync_requests_total", endpoint="upload", **requests) == 5
    assert sample(m, "cat2sync_requests_total", endpoint="move", **requests) == 5
    assert sample(m, "cat2sync_requests_total", endpoint="append", **requests) == 1
    assert sample(m, "cat2sync_requests_total", endpoint="login", **requests) == 1
    assert sample(m, "cat2sync_server_up", server="default") == 1
    assert sample(m, "cat2sync_build_info", version=__version__) == 1
    # No file or remote path in any label.
    for _, labels in m:
        for _, value in labels:
            assert "run_" not in value and "@" not in value, value
    assert remote_dir not in text and "run_000" not in text


def test_the_backlog_age_grows_while_a_file_waits(
    tmp_path: Path, server: LocalServer, remote_dir: str, data_dir: Path
) -> None:
    rule = {"name": "slow", "local": str(data_dir), "remote": remote_dir, "settle": "1h"}
    manifest = observed_manifest(tmp_path, url=server.url, login=ALICE, uploads=[rule])
    with observe(manifest) as obs:
        write_b2nd(data_dir / "waiting.b2nd", _frames(1), chunks=(10, 30))
        wait_until(
            lambda: obs.value("cat2sync_pending_files", rule="slow") == 1,
            message="the file in the backlog",
        )
        first = obs.value("cat2sync_oldest_pending_age_seconds", rule="slow") or 0.0
        wait_until(
            lambda: (obs.value("cat2sync_oldest_pending_age_seconds", rule="slow") or 0) > first,
            message="the age of the oldest file to grow",
        )
        doc = obs.status()["rules"]["slow"]
    assert doc["pending"] == 1
    assert doc["pending_files"] == ["waiting.b2nd"]
    assert doc["oldest_pending_age"] > 0


def test_a_mirror_counts_downloads_and_extensions(
    tmp_path: Path, server: LocalServer, remote_dir: str, client: Client
) -> None:
    remote = f"{remote_dir}/series.b2nd"
    source = write_b2nd(tmp_path / "series.b2nd", _frames(5, rows=100), chunks=(10, 30))
    client.upload(source, remote)
    rule = {"name": "mirror", "root": remote_dir, "local": str(tmp_path / "mirror"), "every": "1s"}
    manifest = observed_manifest(tmp_path, url=server.url, login=ALICE, subscribe=[rule])
    with observe(manifest) as obs:
        wait_until(lambda: obs.events(EventKind.DOWNLOADED), message="the first download")
        client.append(remote, _frames(6, rows=20))
        wait_until(
            lambda: obs.value("cat2sync_files_total", rule="mirror", event="extended") == 1,
            message="the extension counted as extended",
        )
        m = obs.metrics()
        doc = obs.status()["rules"]["mirror"]
    downloads = obs.events(EventKind.DOWNLOADED)
    assert [e.rows is not None for e in downloads] == [False, True]  # whole, then new rows
    assert (
        m[("cat2sync_files_total", frozenset({("rule", "mirror"), ("event", "downloaded")}))] == 1
    )
    received = sum(e.bytes for e in downloads)
    assert m[("cat2sync_bytes_total", frozenset({("rule", "mirror"), ("direction", "down")}))] == (
        received
    )
    assert m[("cat2sync_rule_interval_seconds", frozenset({("rule", "mirror")}))] == 1
    # The state's running totals (cat2sync status) count the extension as a download.
    assert doc["moved"]["downloaded"]["files"] == 2
    assert doc["bytes_down"] == received
