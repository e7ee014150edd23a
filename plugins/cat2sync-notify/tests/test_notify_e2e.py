"""End to end through the plugin manager: manifest -> configure -> events -> file + webhook."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cat2sync_notify as notify
import pytest

from cat2sync import Client
from cat2sync.events import Event, EventKind
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import plugin_manifest
from tests.helpers.webhook import Receiver


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    yield Plugins(entry_points=False, extra=[notify])
    notify.notifier().flush(timeout=5)
    notify.notifier().configure(notify.NotifyOptions())  # back to disabled


def test_events_reach_file_and_webhook(
    plugins: Plugins, tmp_path: Path, client: Client, remote_dir: str, data_dir: Path
) -> None:
    with Receiver() as receiver:
        table = f"""
file = "state/events.jsonl"
kinds = ["uploaded", "failed"]
webhook = "{receiver.url}/cat2sync"
webhook_timeout = 3
"""
        plugins.configure(plugin_manifest(tmp_path, plugins, table, section=notify.NAME))
        info = next(p for p in plugins.describe() if p.name == "cat2sync_notify")
        assert "cat2sync_event" in info.hooks

        # A real upload, reported the way the daemon reports it.
        local = data_dir / "notes.txt"
        local.write_text("hello")
        remote = str(client.upload(local, f"{remote_dir}/notes.txt"))
        plugins.event(
            Event(
                kind=EventKind.UPLOADED,
                rule="docs",
                path="notes.txt",
                remote=remote,
                bytes=local.stat().st_size,
            )
        )
        plugins.event(Event(kind=EventKind.SKIPPED, rule="docs", path="x", message="unsafe"))
        plugins.event(
            Event(kind=EventKind.FAILED, rule="docs", path="y.txt", message="Timeout: no answer")
        )
        bodies = receiver.wait_for(lambda got: len(got) >= 2)

    written = [
        json.loads(line) for line in (tmp_path / "state" / "events.jsonl").read_text().splitlines()
    ]
    assert written == bodies
    assert [(r["kind"], r["path"], r["remote"], r["bytes"]) for r in written] == [
        ("uploaded", "notes.txt", remote, 5),
        ("failed", "y.txt", None, 0),
    ]
    assert receiver.paths == ["/cat2sync", "/cat2sync"]


def test_disable_by_name_is_honoured_via_entry_point_name(tmp_path: Path) -> None:
    # Registered as a module here its name is the module's; through the entry point it
    # is "notify", which is what [plugins] disable = ["notify"] blocks.
    plugins = Plugins(entry_points=False, extra=[])
    plugins.pm.register(notify, name=notify.NAME)
    text = '[plugins]\ndisable = ["notify"]\n[plugins.notify]\nfile = "events.jsonl"\n'
    plugins.configure(plugin_manifest(tmp_path, plugins, text))
    plugins.event(Event(kind=EventKind.UPLOADED, rule="r", path="a"))
    assert not (tmp_path / "events.jsonl").exists()
    assert notify.NAME not in [p.name for p in plugins.describe()]
