"""The docs stay honest: every hook is documented, and the documented plugin works."""

from __future__ import annotations

import inspect
import re
import types

import numpy as np

from cat2sync.events import Event, EventKind
from cat2sync.plugins import TransformContext, hookspecs
from cat2sync.plugins.manager import Plugins
from tests.helpers.paths import REPO

DOCS = REPO / "docs"
PLUGINS_MD = (DOCS / "plugins.md").read_text()


def _hooks() -> dict[str, list[str]]:
    return {
        name: list(inspect.signature(func).parameters)
        for name, func in vars(hookspecs).items()
        if name.startswith("cat2sync_") and callable(func)
    }


def test_every_hook_and_argument_is_documented() -> None:
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `(cat2sync_\w+)` \| ([^|]*) \|", PLUGINS_MD, re.M)
    }
    for name, args in _hooks().items():
        assert name in rows, f"{name} is missing from docs/plugins.md"
        documented = re.findall(r"`(\w+)`", rows[name])
        assert documented == args, f"{name}: docs say {documented}, hookspec says {args}"
    assert set(rows) == set(_hooks()), "docs/plugins.md names a hook that does not exist"


def test_every_hook_has_a_docstring_saying_how_results_combine() -> None:
    for name in _hooks():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Collect-all" in doc or "first non-None" in doc, name


def _twenty_line_plugin() -> types.ModuleType:
    code = re.search(r"`lab_plugin.py`.*?```python\n(.*?)```", PLUGINS_MD, re.S)
    assert code is not None
    assert len(code.group(1).strip().splitlines()) <= 26
    module = types.ModuleType("lab_plugin")
    exec(compile(code.group(1), "docs/plugins.md", "exec"), module.__dict__)
    return module


def test_the_documented_plugin_works() -> None:
    plugins = Plugins(entry_points=False, extra=[_twenty_line_plugin()])
    transform = plugins.transforms["subtract_dark"]
    rows = np.array([[50, 150], [300, 99]], dtype=np.uint16)
    out = transform(rows, TransformContext(params={"level": 100}))
    assert out.dtype == np.uint16
    assert out.tolist() == [[0, 50], [200, 0]]
    plugins.event(Event(kind=EventKind.FAILED, rule="r", path="x.b2nd", message="boom"))


def test_every_module_is_on_the_architecture_page() -> None:
    """A newcomer finds each module's concern in docs/architecture.md."""
    page = (DOCS / "architecture.md").read_text()
    package = REPO / "cat2sync"
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.name in ("__init__.py", "__main__.py") or rel.name.startswith("_"):
            continue  # packages and private modules are described by their folder
        if rel.parts[0] == "plugins" and len(rel.parts) > 2:
            continue  # the built-in plugins, under plugins/default/
        if len(rel.parts) > 2:  # a sub-package's modules: its folder is on the page
            assert f"`{rel.parent.as_posix()}/`" in page, f"{rel.parent}/ is not on the page"
            continue
        name = rel.as_posix() if len(rel.parts) > 1 else rel.name
        assert f"`{name}`" in page or f"`{rel.name}`" in page, f"{name} is not on the page"
