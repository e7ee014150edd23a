"""An uploader process that journals its changes, for the SIGKILL tests.

    python -m helpers.journal_worker URL FOLDER STATE_DB SEED OPERATIONS

It makes ``OPERATIONS`` random changes in ``FOLDER`` (whole uploads, appends, moves,
removals) the way the upload engine will: announced to the journal before, recorded
with the server's ``info`` and ETag after; it prints ``done <n>`` after each one and
exits cleanly (journal flushed) at the end. The test kills it at a random moment and
starts it again with the same state.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

import blosc2
import numpy as np

from cat2sync.client import Client
from cat2sync.journal import Entry, JournalWriter, is_journal_name
from cat2sync.testing import ALICE

from .journal import WriterStore

NAMES = [f"d{i:02d}.b2nd" for i in range(12)]


def _change(client: Client, writer: JournalWriter, rng: random.Random, scratch: Path) -> None:
    folder = writer.folder
    present = {n for n in client.get_list(folder) if not is_journal_name(n)}
    absent = [n for n in NAMES if n not in present]
    ops = ["send"] + (["append", "move", "remove"] if present else [])
    op = rng.choice(ops if absent else [o for o in ops if o != "move"])
    if op == "send":
        name = rng.choice(NAMES)
        local = scratch / "upload.b2nd"
        rows = np.arange(rng.randint(10, 40), dtype=np.int64) * rng.randint(1, 9)
        blosc2.asarray(rows, urlpath=str(local), mode="w", chunks=(10,))
        with writer.change(name) as change:
            client.upload(local, f"{folder}/{name}")
            info, etag = client.stat(f"{folder}/{name}")
            change.record(Entry.sent(name, info=info, etag=etag))
        return
    name = rng.choice(sorted(present))
    remote = f"{folder}/{name}"
    if op == "append":
        with writer.change(name) as change:
            before = client.get_info(remote)["shape"][0]
            after = client.append(remote, np.arange(5, dtype=np.int64))[0]
            info, etag = client.stat(remote)
            change.record(Entry.appended(name, (before, after), info=info, etag=etag))
    elif op == "move":
        to = rng.choice(absent)
        with writer.change(name, to) as change:
            client.move(remote, f"{folder}/{to}")
            info, etag = client.stat(f"{folder}/{to}")
            change.record(Entry.moved(name, to, info=info, etag=etag))
    else:
        with writer.change(name) as change:
            client.remove(remote)
            change.record(Entry.removed(name))


def main(argv: list[str]) -> int:
    url, folder, state_db, seed, operations = argv
    rng = random.Random(seed)
    store = WriterStore(Path(state_db))
    with Client(url, ALICE) as client, tempfile.TemporaryDirectory() as scratch:
        writer = JournalWriter(
            client,
            store,
            rule="up",
            folder=folder,
            identity="worker",
            quiet=0.02,
            max_delay=0.1,
        )
        writer.start()
        for n in range(int(operations)):
            _change(client, writer, rng, Path(scratch))
            print(f"done {n}", flush=True)
        writer.close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
