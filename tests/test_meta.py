"""The public surface stays curated, and every module imports cleanly."""

from __future__ import annotations

import importlib
import pkgutil
import warnings

import cat2sync


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
    for info in pkgutil.walk_packages(cat2sync.__path__, "cat2sync."):
        if info.name == "cat2sync.__main__":
            continue  # runs the CLI
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            importlib.import_module(info.name)
