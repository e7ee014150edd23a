"""Unit tests of cat2sync-notify: records, the JSON-lines file, settings and the webhook
thread (against a loopback receiver only)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import cat2sync_notify as notify
import pytest

from cat2sync.errors import ManifestError
from cat2sync.events import Event, EventKind
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import plugin_manifest
from tests.helpers.webhook import Receiver

PLUGIN_DIR = Path(__file__).resolve().parents[1]
UPLOADED = Event(
    kind=EventKind.UPLOADED,
    rule="camera",
    path="run_1.b2nd",
    remote="@shared/camera/run_1.b2nd",
    rows=100,
    bytes=81920,
    seconds=0.5,
)
FAILED = Event(
    kind=EventKind.FAILED,
    rule="camera",
    path="bad.npy",
    remote="@shared/camera/bad.b2nd",
    message="ValueError: objects",
)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def notifier() -> Iterator[notify.Notifier]:
    n = notify.Notifier()
    yield n
    n.close(timeout=2)


def test_record() -> None:
    now = dt.datetime(2025, 1, 31, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert notify.event_record(UPLOADED, now) == {
        "time": "2025-01-31T12:00:00.123Z",
        "kind": "uploaded",
        "rule": "camera",
        "path": "run_1.b2nd",
        "remote": "@shared/camera/run_1.b2nd",
        "rows": 100,
        "bytes": 81920,
        "message": None,
    }
    record = notify.event_record(FAILED)
    assert record["message"] == "ValueError: objects" and record["rows"] is None
    stamp = dt.datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 5


def test_json_lines_appended(tmp_path: Path, notifier: notify.Notifier) -> None:
    path = tmp_path / "logs" / "events.jsonl"
    path.parent.mkdir()
    path.write_text('{"earlier": true}\n')
    notifier.configure(notify.NotifyOptions(file=path))
    notifier.handle(UPLOADED)
    notifier.handle(FAILED)
    got = lines(path)
    assert got[0] == {"earlier": True}
    assert [(r["kind"], r["path"]) for r in got[1:]] == [
        ("uploaded", "run_1.b2nd"),
        ("failed", "bad.npy"),
    ]
    assert set(got[1]) == {"time", "kind", "rule", "path", "remote", "rows", "bytes", "message"}


def test_kinds_filter(tmp_path: Path, notifier: notify.Notifier) -> None:
    notifier.configure(
        notify.NotifyOptions(file=tmp_path / "e.jsonl", kinds=frozenset({"failed", "skipped"}))
    )
    for event in (UPLOADED, FAILED, UPLOADED):
        notifier.handle(event)
    assert [r["kind"] for r in lines(tmp_path / "e.jsonl")] == ["failed"]


def test_concurrent_events_give_whole_lines(tmp_path: Path, notifier: notify.Notifier) -> None:
    path = tmp_path / "e.jsonl"
    notifier.configure(notify.NotifyOptions(file=path))

    def burst(worker: int) -> None:
        for i in range(200):
            notifier.handle(
                Event(
                    kind=EventKind.APPENDED,
                    rule=f"r{worker}",
                    path=f"{i}.b2nd",
                    rows=i,
                    message="x" * 500,
                )
            )

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = lines(path)
    assert len(got) == 1600
    assert {(r["rule"], r["path"]) for r in got} == {
        (f"r{w}", f"{i}.b2nd") for w in range(8) for i in range(200)
    }


def test_disabled_by_default(tmp_path: Path, notifier: notify.Notifier) -> None:
    notifier.handle(UPLOADED)
    assert notifier._worker is None
    assert list(tmp_path.iterdir()) == []


def test_webhook_gets_the_same_json(tmp_path: Path, notifier: notify.Notifier) -> None:
    with Receiver() as receiver:
        notifier.configure(
            notify.NotifyOptions(file=tmp_path / "e.jsonl", webhook=receiver.url + "/hook/s3cr3t")
        )
        notifier.handle(UPLOADED)
        notifier.handle(FAILED)
        bodies = receiver.wait_for(lambda got: len(got) >= 2)
    assert bodies == lines(tmp_path / "e.jsonl")
    assert receiver.paths == ["/hook/s3cr3t", "/hook/s3cr3t"]


def test_slow_webhook_never_blocks(
    notifier: notify.Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]

    parked, let_go, went_on = threading.Event(), threading.Event(), threading.Event()

    def park_the_webhook_thread(record: logging.LogRecord) -> bool:
        # The webhook thread reports its first failed POST here and waits to be let go:
        # what is handed to the notifier meanwhile cannot have waited for a POST.
        if "failed" in record.getMessage() and not parked.is_set():
            parked.set()
            let_go.wait(20)
            went_on.set()
        return True

    logger = logging.getLogger("cat2sync_notify")
    logger.addFilter(park_the_webhook_thread)
    try:
        with caplog.at_level(logging.WARNING, "cat2sync_notify"):
            with Receiver(hold=True) as receiver:  # never answers in time
                notifier.configure(
                    notify.NotifyOptions(webhook=receiver.url + "/s3cr3t", webhook_timeout=0.2)
                )
                notifier.handle(UPLOADED)
                assert parked.wait(20), "the first POST did not fail"
                for _ in range(notify.QUEUE_SIZE * 3 - 1):
                    notifier.handle(UPLOADED)
                assert not went_on.is_set()  # handed over while the webhook thread was parked
                let_go.set()
            assert notifier.flush(timeout=20)  # the rest fail fast: nobody listens any more
    finally:
        logger.removeFilter(park_the_webhook_thread)
    behind = [r for r in caplog.records if "is behind" in r.getMessage()]
    assert len(behind) == 1  # one warning per burst, not one per dropped event
    assert "ReadTimeout" in failures()[0]
    assert len(failures()) < notify.QUEUE_SIZE * 2  # the dropped events were not sent
    assert "s3cr3t" not in caplog.text


def test_unreachable_webhook_is_one_warning(
    notifier: notify.Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # a loopback port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    notifier.configure(
        notify.NotifyOptions(webhook=f"http://127.0.0.1:{port}/x", webhook_timeout=1)
    )
    with caplog.at_level(logging.WARNING, "cat2sync_notify"):
        notifier.handle(UPLOADED)  # does not raise
        assert notifier.flush()
    [record] = caplog.records
    assert record.getMessage().startswith(
        f"notify: webhook POST to http://127.0.0.1:{port} failed: ConnectError"
    )


def test_http_error_status_is_a_warning(
    notifier: notify.Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    with Receiver(status=500) as receiver, caplog.at_level(logging.WARNING, "cat2sync_notify"):
        notifier.configure(notify.NotifyOptions(webhook=receiver.url + "/token"))
        notifier.handle(FAILED)
        assert notifier.flush()
    [record] = caplog.records
    assert record.getMessage() == (
        f"notify: webhook POST to {receiver.url} failed: HTTP 500 Internal Server Error"
    )


@pytest.mark.parametrize(
    ("settings", "key", "message"),
    [
        ({"kinds": ["uploaded", "sent"]}, "kinds[1]", "unknown event kind 'sent'"),
        ({"kinds": "failed"}, "kinds", "expected an array"),
        ({"webhook": "ftp://example.org/x"}, "webhook", "expected an http:// or https:// URL"),
        ({"webhook": "https:///nohost"}, "webhook", "expected an http:// or https:// URL"),
        ({"webhook_timeout": 0}, "webhook_timeout", "positive number"),
    ],
)
def test_bad_settings(settings: dict[str, object], key: str, message: str) -> None:
    with pytest.raises(notify.SettingError, match=message) as info:
        notify.NotifyOptions.from_settings(settings)
    assert info.value.key == key


def test_settings_from_the_manifest(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[notify])
    manifest = plugin_manifest(
        tmp_path,
        plugins,
        'file = "logs/events.jsonl"\nkinds = ["failed"]\nwebhook_timeout = 2',
        section=notify.NAME,
    )
    options = notify.NotifyOptions.from_settings(manifest.plugins.settings["notify"])
    assert options.file == tmp_path.resolve() / "logs" / "events.jsonl"
    assert options.kinds == frozenset({"failed"})
    assert options.webhook_timeout == 2.0 and options.webhook is None
    defaults = plugin_manifest(tmp_path, plugins, "", section=notify.NAME)
    assert (
        notify.NotifyOptions.from_settings(defaults.plugins.settings["notify"])
        == notify.NotifyOptions()
    )


def test_configure_errors_are_one_line_and_hide_the_url(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[notify])
    manifest = plugin_manifest(
        tmp_path, plugins, 'webhook = "hooks.example.org/s3cr3t"', section=notify.NAME
    )
    with pytest.raises(ManifestError) as info:
        notify.cat2sync_configure(manifest)
    assert str(info.value) == (
        f"{manifest.source}: plugins.notify.webhook: expected an http:// or https:// URL"
    )
    with pytest.raises(
        ManifestError,
        match=r"plugins\.notify\.webhook_timeout: expected a "
        "number",
    ):
        plugin_manifest(tmp_path, plugins, 'webhook_timeout = "5s"', section=notify.NAME)
    (tmp_path / "adir").mkdir()
    with pytest.raises(ManifestError, match=r"plugins\.notify\.file: is a folder"):
        notify.cat2sync_configure(
            plugin_manifest(tmp_path, plugins, 'file = "adir"', section=notify.NAME)
        )


def test_entry_point_in_pyproject() -> None:
    meta = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["cat2sync"] == {notify.NAME: "cat2sync_notify"}
