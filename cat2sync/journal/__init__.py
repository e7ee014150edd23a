"""The change journal: uploaders say what they changed, subscribers read only that.

A subscription pass without a journal costs one ``list`` plus one ``info`` per remote
file. An upload rule knows exactly what it changed, so it writes that down on the
server, in its remote folder, and a subscription reads the new lines in one request
per writer. Full passes still happen (the first one, every ``verify_every``, and
whenever a journal cannot be trusted): they catch writers that keep no journal.

Format (version 1)
------------------

*Where.* ``<remote folder>/.cat2sync/j1-<writer>-<segment>.b2nd``: one journal per
writer (an upload rule of one state folder; its id is 16 random hex digits kept in
that state folder), cut into segments numbered 1, 2, ... (six digits or more). The
``j1`` is the format version, so a reader knows it from the listing alone. Any other
name in the folder is ignored (``.cat2sync-*`` are a writer's temporaries).

*What.* Each segment is a 1-D ``uint8`` Blosc2 array (chunks of 64 KiB): text lines,
each ``<crc32 of the JSON, 8 lowercase hex digits> <JSON object>\\n``, the JSON in UTF-8
with sorted keys and no spaces, a line at most 16 KiB. The first line is the header::

    {"created":1764606000.0,"epoch":"9f2c01ab","folder":"@shared/b7","kind":"cat2sync-journal",
     "seq":1,"segment":1,"v":1,"writer":"4b1e0c9d2a7f6e35"}

``seq`` is the number of the first entry after it; ``epoch`` is random per segment
file. Every other line is one entry, numbered ``seq`` 1, 2, ... without gaps across
segments::

    {"at":1764606001.25,"etag":"\\"u-7cb-18ed2e3bca399b69\\"","info":{"blocks":[100],
     "chunks":[100],"dtype":"int64","mtime":"2026-12-01T16:31:00.721417Z","schunk":
     {"cbytes":1745,"nbytes":8000,"nchunks":10},"shape":[1000]},"name":"run/a.b2nd",
     "op":"sent","seq":7}

``op`` is ``sent`` (uploaded whole), ``appended`` (``rows``: ``[before, after]``),
``moved`` (``src``: the old name), ``removed``, ``conflict-copy`` (``of``: the name it
is a copy of) or ``check`` (may have changed: ask the server). Names are relative to
the folder, as the server lists them. ``etag`` and ``info`` are optional: the server's
answers right after the change (``info`` keeps only what a mirror needs: shape,
chunks, blocks, dtype, mtime and the sizes), so a subscriber skips its own ``info``.
Unknown keys are ignored; an unknown ``op`` makes the journal untrusted.

*Order and positions.* A writer appends whole lines only (one ``append`` per batch),
and only to its newest segment. A reader's position in a journal is the segment, the
byte offset after the last line it read, that line's length and checksum, and the
next ``seq``. "Everything since" is one ``fetch`` of the slice starting at that last
line, which must come back byte for byte: if it does not, the journal was rewritten,
truncated or moved back. A newer segment is read from its first byte; its header must
continue the ``seq``.

*Size.* A writer starts a new segment once the current one would pass 4 MiB (about
15,000 entries), and then removes its segments older than the previous one: a
journal is at most two segments (well under 1 MB stored, compressed). A subscriber
whose position is in a removed segment does a full pass.

*Trust.* An entry is written only after its change is visible under its final name;
a writer announces a change before making it, so one killed in between journals the
names as ``check`` at its next start. A reader that finds anything it cannot trust (a
bad checksum, a gap, an unsafe name, a newer version, a journal gone or moved back)
answers "full pass", with the reason in one line.

The API: :class:`JournalWriter` (the upload side), :class:`JournalReader` (the
subscription side), :class:`Entry`, :class:`Change` and :class:`Position`; the
modules: ``_format`` (the bytes, pure), ``_changes`` (entries to changes, pure),
``_writer`` and ``_reader``.
"""

from ._changes import Change, coalesce
from ._format import (
    FORMAT_VERSION,
    JOURNAL_FOLDER,
    Entry,
    Op,
    Position,
    dump_positions,
    entry_info,
    is_journal_name,
    load_positions,
)
from ._reader import FullPass, Incremental, JournalReader, NoJournal
from ._writer import JournalWriter, PendingChange, PendingRow, WriterState

__all__ = [
    "FORMAT_VERSION",
    "JOURNAL_FOLDER",
    "Change",
    "Entry",
    "FullPass",
    "Incremental",
    "JournalReader",
    "JournalWriter",
    "NoJournal",
    "Op",
    "PendingChange",
    "PendingRow",
    "Position",
    "WriterState",
    "coalesce",
    "dump_positions",
    "entry_info",
    "is_journal_name",
    "load_positions",
]
