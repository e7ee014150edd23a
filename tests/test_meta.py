"""The public surface stays curated, and every module imports cleanly."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import cat2sync
from tests.helpers import fresh_imports


def test_all_is_sorted_and_exported() -> None:
    names = [n for n in cat2sync.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in cat2sync.__all__:
        assert hasattr(cat2sync, name), name


def test_public_members_are_in_all() -> None:
    public = {n for n in vars(cat2sync) if not n.startswith("_")}
    modules = {n for n, v in vars(cat2sync).items() if type(v).__name__ == "module"}
    assert public - modules <= set(cat2sync.__all__)


def test_every_module_imports_without_warnings() -> None:
    # In fresh processes: this one imported most modules already (the conftests did), and
    # a module imported again runs nothing, so a warning at import could not show.
    modules = [
        info.name
        for info in pkgutil.walk_packages(cat2sync.__path__, "cat2sync.")
        if info.name != "cat2sync.__main__"  # runs the CLI
    ]
    done = subprocess.run(
        [sys.executable, "-P", "-W", "error", fresh_imports.__file__, *modules],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (done.returncode, done.stdout.split()) == (0, []), done.stderr
