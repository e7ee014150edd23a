"""Walking a watched folder: include/exclude globs and the symlink policy."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

from ..client import TEMP_PREFIX  # its own temporaries, locally and remotely: never synced

__all__ = ["TEMP_PREFIX", "Matcher", "is_inside", "scan"]


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` spans folders, ``*`` and ``?`` stay within one name."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class Matcher:
    """Decides whether a relative POSIX path is synced by a rule."""

    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        self._include = [_glob_regex(p) for p in include]
        self._exclude = [_glob_regex(p) for p in exclude]

    def __call__(self, relpath: str) -> bool:
        if any(part.startswith(TEMP_PREFIX) for part in relpath.split("/")):
            return False
        return any(r.match(relpath) for r in self._include) and not any(
            r.match(relpath) for r in self._exclude
        )


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (resolved) lies inside ``root`` (resolved)."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def scan(
    root: Path,
    matcher: Callable[[str], bool],
    *,
    follow_symlinks: bool = False,
) -> Iterator[tuple[str, os.stat_result]]:
    """Yield ``(relpath, stat)`` for every matching regular file below ``root``.

    Symlinks are skipped unless ``follow_symlinks``; even then, a link that leads
    outside ``root`` is followed only into files, never into folders, and a link back
    to a folder on its own path (a loop) is not followed at all.
    """
    stack = [(root, "", _folder_ids(root))]
    while stack:
        folder, prefix, above = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # vanished or unreadable: the next pass sees it again
        for entry in entries:
            rel = prefix + entry.name
            try:
                if entry.is_symlink() and not follow_symlinks:
                    continue
                if entry.is_dir(follow_symlinks=follow_symlinks):
                    if entry.is_symlink() and not is_inside(Path(entry.path), root):
                        continue
                    here = entry.stat(follow_symlinks=follow_symlinks)
                    if (here.st_dev, here.st_ino) not in above:
                        stack.append(
                            (Path(entry.path), rel + "/", above | {(here.st_dev, here.st_ino)})
                        )
                    continue
                if entry.is_file(follow_symlinks=follow_symlinks) and matcher(rel):
                    yield rel, entry.stat(follow_symlinks=follow_symlinks)
            except OSError:
                continue


def _folder_ids(folder: Path) -> frozenset[tuple[int, int]]:
    try:
        st = folder.stat()
    except OSError:
        return frozenset()
    return frozenset({(st.st_dev, st.st_ino)})
