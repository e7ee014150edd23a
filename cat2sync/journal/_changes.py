"""From journal entries to what a subscriber does: one :class:`Change` per name.

Pure. Entries of one journal are in the order their writer made the changes, so the
last one about a name wins, and a chain of moves collapses to where the content came
from. Journals of different writers have no common order: a name that several of them
touched in one read becomes a :attr:`~Op.CHECK` (ask the server).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._format import Entry, Op

__all__ = ["Change", "coalesce"]


@dataclass(frozen=True, slots=True)
class Change:
    """What a subscriber must do about ``name``.

    ``op`` is one of:

    * :attr:`Op.SENT`: the name holds the version with ``etag`` (and ``info``), which
      replaced what was there: unchanged if the mirror's record has this ETag, else
      fetch it whole (never extend: earlier rows may differ);
    * :attr:`Op.APPENDED`: the dataset only grew (``info`` has its new shape): extend
      the mirror copy as a listing pass would, or fetch it whole;
    * :attr:`Op.MOVED`: the name holds what ``src`` held when this subscriber last saw
      it: rename the local copy of ``src`` when its record has ``etag`` and the file is
      intact (a move keeps the ETag), else fetch it; apply moves first, in order;
    * :attr:`Op.REMOVED`: the name is gone: delete the mirror copy (under the rule's
      deletion cap);
    * :attr:`Op.CHECK`: it may have changed in an unknown way: ask the server
      (``info``), and act on its answer.
    """

    name: str
    op: Op
    src: str | None = None
    etag: str | None = None
    info: Mapping[str, Any] | None = None

    def names(self) -> tuple[str, ...]:
        return (self.name,) if self.src is None else (self.src, self.name)


def _moved(entry: Entry, before: Change | None) -> Change:
    """Where ``entry.name``'s content came from, given what ``src`` had become."""
    assert entry.src is not None
    if before is None:
        origin: str | None = entry.src
    elif before.op is Op.MOVED:
        origin = before.src  # a chain of moves: the content is still the first one's
    else:
        origin = None  # src was written since the last read: its mirror copy is old
    if origin is None or origin == entry.name:
        return Change(entry.name, Op.SENT, etag=entry.etag, info=entry.info)
    return Change(entry.name, Op.MOVED, src=origin, etag=entry.etag, info=entry.info)


def _fold(entries: Sequence[Entry]) -> tuple[dict[str, Change], dict[str, int]]:
    """The last change per name in one journal, and the order each was last set in."""
    last: dict[str, Change] = {}
    order: dict[str, int] = {}
    puts = itertools.count()

    def put(change: Change) -> None:
        last[change.name] = change
        order[change.name] = next(puts)

    for entry in entries:
        if entry.op in (Op.SENT, Op.CONFLICT_COPY):
            put(Change(entry.name, Op.SENT, etag=entry.etag, info=entry.info))
        elif entry.op is Op.APPENDED:
            before = last.get(entry.name)
            replaced = before is not None and before.op in (Op.SENT, Op.MOVED)
            op = Op.SENT if replaced else Op.APPENDED
            put(Change(entry.name, op, etag=entry.etag, info=entry.info))
        elif entry.op is Op.MOVED:
            assert entry.src is not None
            put(_moved(entry, last.get(entry.src)))
            put(Change(entry.src, Op.REMOVED))
        else:  # REMOVED, CHECK
            put(Change(entry.name, entry.op))
    return last, order


def coalesce(journals: Mapping[str, Sequence[Entry]]) -> tuple[Change, ...]:
    """One change per name from the new entries of each journal (by writer): moves
    first, in the order they were made, then the rest."""
    folded = {writer: _fold(entries) for writer, entries in journals.items()}
    writers_of: dict[str, set[str]] = {}
    for writer, entries in journals.items():
        for entry in entries:
            for name in entry.names():
                writers_of.setdefault(name, set()).add(writer)
    shared = {name for name, writers in writers_of.items() if len(writers) > 1}
    ranked: dict[str, tuple[bool, int, Change]] = {}
    for last, order in folded.values():
        for name, change in last.items():
            if shared.intersection(change.names()):
                change = Change(name, Op.CHECK)
            ranked.setdefault(name, (change.op is not Op.MOVED, order[name], change))
    return tuple(change for _, _, change in sorted(ranked.values(), key=lambda r: r[:2]))
