"""Plugins made on the spot, and one test's folders with manifests for them.

The first-party plugins keep their configuration in module globals: the ``first_party``
fixture (tests/plugins/conftest.py) puts it back after each test that uses them.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cat2sync.events import Event, EventKind
from cat2sync.manifest import Manifest
from cat2sync.plugins import hookimpl
from cat2sync.plugins.manager import Plugins
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, load_with_plugins, write_manifest

from .daemon import upload_rule


def make_plugin(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    """A plugin module called ``name`` (its registered name, as in error messages) whose
    hooks are the given functions, keyword = hook name (``cat2sync_event=...``)."""
    module = types.ModuleType(name)
    for hook, func in hooks.items():
        assert hook.startswith("cat2sync_"), hook
        setattr(module, hook, hookimpl(func))
    return module


def transforms_plugin(
    name: str,
    **transforms: Callable[[np.ndarray, Any], np.ndarray],
) -> types.ModuleType:
    """A plugin that registers ``transforms`` (name -> function)."""

    def cat2sync_register_transforms(register: Callable[[str, Any], None]) -> None:
        for key, func in transforms.items():
            register(key, func)

    return make_plugin(name, cat2sync_register_transforms=cat2sync_register_transforms)


class Recorder:
    """A plugin that records every event it is told about (thread-safe)."""

    def __init__(self, name: str = "recorder") -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

        def cat2sync_event(event: Event) -> None:
            with self.lock:
                self.events.append(event)

        self.module = make_plugin(name, cat2sync_event=cat2sync_event)

    def of(self, kind: EventKind) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.kind == kind]


@dataclass
class Env:
    """One test's folders and the session server."""

    tmp_path: Path
    server: LocalServer
    remote_dir: str
    data_dir: Path

    def upload_rule(self, **keys: Any) -> dict[str, Any]:
        """An ``[[upload]]`` table: ``data_dir`` -> ``remote_dir`` (keys override)."""
        return upload_rule(self.data_dir, self.remote_dir, **keys)

    def subscribe_rule(self, **keys: Any) -> dict[str, Any]:
        """A ``[[subscribe]]`` table: ``remote_dir`` -> ``tmp_path/mirror``."""
        return {
            "name": "down",
            "remote": self.remote_dir,
            "local": str(self.tmp_path / "mirror"),
            "every": "1h",
            **keys,
        }

    def write(
        self,
        *,
        uploads: list[dict[str, Any]] | None = None,
        subscribes: list[dict[str, Any]] | None = None,
        tables: dict[str, Any] | None = None,
        name: str = "cat2sync",
    ) -> Path:
        """Write ``tmp_path/<name>.toml`` (state in ``tmp_path/state``, alice's login);
        ``tables`` is the ``[plugins]`` table (``{"notify": {...}, "disable": [...]}``)."""
        return write_manifest(
            self.tmp_path / f"{name}.toml",
            url=self.server.url,
            username=ALICE[0],
            password=ALICE[1],
            upload=uploads or (),
            subscribe=subscribes or (),
            plugins=tables,
        )

    def manifest(self, plugins: Plugins, **doc: Any) -> Manifest:
        """:meth:`write`, then load it the way the CLI does (plugin tables checked)."""
        return load_with_plugins(self.write(**doc), plugins)
