"""Journal writers on the session's real server, each with its state in ``tmp_path``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.journal import MakeWriter, WriterStore

from cat2sync.client import Client
from cat2sync.journal import JournalWriter


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WriterStore]:
    made = WriterStore(tmp_path / "journal.db")
    yield made
    made.close()


@pytest.fixture
def make_writer(client: Client, store: WriterStore, remote_dir: str) -> Iterator[MakeWriter]:
    """``make_writer(**kw)``: a writer of rule ``up`` into ``remote_dir``, closed at the
    end unless ``killed=True`` (a writer the test lets die: it is never closed, as a
    SIGKILL would leave it); a second call with the same store is a restart."""
    made: list[JournalWriter] = []

    def make(*, killed: bool = False, **kw: Any) -> JournalWriter:
        args: dict[str, Any] = {
            "client": client,
            "state": store,
            "rule": "up",
            "folder": remote_dir,
            "identity": "test-host:/state",
            "quiet": 60.0,  # tests flush explicitly unless they say otherwise
            "max_delay": 60.0,
            **kw,
        }
        writer = JournalWriter(args.pop("client"), args.pop("state"), **args)
        if not killed:
            made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.close()
