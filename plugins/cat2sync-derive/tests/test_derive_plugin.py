"""Unit tests of cat2sync-derive: rule validation, matching and templating."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

import cat2sync_derive as derive
import pytest

from cat2sync.errors import ManifestError
from cat2sync.manifest import UploadRule
from cat2sync.plugins import LazyExprRequest
from cat2sync.plugins.manager import Plugins
from cat2sync.testing import plugin_manifest

PLUGIN_DIR = Path(__file__).resolve().parents[1]
CALIBRATED = {
    "match": "run_*.b2nd",
    "name": "{stem}_calibrated",
    "expression": "(x - dark) * 0.5",
    "operands": {"dark": "{folder}/dark.b2nd"},
    "path": "{folder}/derived/{stem}_calibrated.b2nd",
}


@pytest.fixture(autouse=True)
def _restore_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(derive, "_rules", derive._rules)


def requests(
    tables: list[dict[str, Any]],
    remote: str,
    rule: str = "beam",
) -> list[LazyExprRequest]:
    return derive.requests_for(derive.parse_rules(tables), rule, remote)


def test_templates_render_every_field() -> None:
    tables = [
        {
            **CALIBRATED,
            "name": "{rule}-{stem}",
            "operands": {"dark": "{folder}/dark.b2nd", "flat": "@shared/flats/{name}"},
            "expression": "(x - dark) / flat",
        }
    ]
    [request] = requests(tables, "@shared/beam/day1/run_007.b2nd")
    assert request == LazyExprRequest(
        name="beam-run_007",
        expression="(x - dark) / flat",
        operands={
            "x": "@shared/beam/day1/run_007.b2nd",
            "dark": "@shared/beam/day1/dark.b2nd",
            "flat": "@shared/flats/run_007.b2nd",
        },
        path="@shared/beam/day1/derived/run_007_calibrated.b2nd",
    )


def test_match_is_on_the_basename_only() -> None:
    assert requests([CALIBRATED], "@shared/run_1/dark.b2nd") == []
    assert requests([CALIBRATED], "@shared/x/run_1.b2nd.old") == []
    assert len(requests([CALIBRATED], "@shared/x/run_1.b2nd")) == 1
    assert requests([CALIBRATED], "@shared/x/RUN_1.b2nd") == []  # case-sensitive


def test_every_matching_rule_in_order_with_default_variable_and_path() -> None:
    square = {"match": "*.b2nd", "name": "{stem}_sq", "expression": "x * x"}
    got = requests([CALIBRATED, square], "@personal/a/run_2.b2nd")
    assert [r.name for r in got] == ["run_2_calibrated", "run_2_sq"]
    assert got[1].path is None
    assert got[1].operands == {"x": "@personal/a/run_2.b2nd"}


def test_custom_variable_name() -> None:
    table = {"match": "*.b2nd", "name": "{stem}_log", "expression": "log(raw)", "variable": "raw"}
    [request] = requests([table], "@public/a.b2nd")
    assert request.operands == {"raw": "@public/a.b2nd"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"match": "*.b2nd", "name": "{stem} v2", "expression": "x"}, "not a plain dataset name"),
        (
            {"match": "*.b2nd", "name": "{stem}", "expression": "x + 1", "path": "{folder}/{name}"},
            "would overwrite an operand",
        ),
        (
            {"match": "*.b2nd", "name": "{stem}", "expression": "x + 1", "path": "{folder}/{stem}"},
            "does not end in .b2nd",
        ),
    ],
)
def test_unusable_results_are_skipped_with_a_warning(
    table: dict[str, Any], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cat2sync_derive"):
        assert requests([table], "@shared/a/b.b2nd") == []
    assert message in caplog.text
    assert "plugins.derive.rules[0]" in caplog.text


@pytest.mark.parametrize(
    ("value", "key", "message"),
    [
        ({"rules": "x"}, "rules", "expected an array of tables"),
        ([1], "rules[0]", "expected a table"),
        ([{**CALIBRATED, "when": 1}], "rules[0].when", "unknown key"),
        ([{"name": "a", "expression": "x"}], "rules[0].match", "missing required key"),
        ([{**CALIBRATED, "match": "a/*.b2nd"}], "rules[0].match", 'no "/"'),
        (
            [{**CALIBRATED, "name": "{stem}_{date}"}],
            "rules[0].name",
            "unknown template field {date} (expected {stem}, {name}, {folder}, {rule})",
        ),
        ([{**CALIBRATED, "name": "{}_x"}], "rules[0].name", "unknown template field {}"),
        ([{**CALIBRATED, "name": "{stem"}], "rules[0].name", "bad template"),
        ([{**CALIBRATED, "name": "{folder}_x"}], "rules[0].name", 'without "/" or {folder}'),
        ([{**CALIBRATED, "expression": ""}], "rules[0].expression", "non-empty string"),
        ([{**CALIBRATED, "variable": "2x"}], "rules[0].variable", "expected a variable name"),
        ([{**CALIBRATED, "variable": "y"}], "rules[0].variable", "y (the matched dataset) is not"),
        (
            [{**CALIBRATED, "operands": {"gain": "@a/g.b2nd"}}],
            "rules[0].operands.gain",
            "not used in the expression",
        ),
        (
            [{**CALIBRATED, "operands": {"x": "@a/g.b2nd"}}],
            "rules[0].operands.x",
            "the matched dataset's variable",
        ),
        (
            [{**CALIBRATED, "operands": {"dark": "dark.b2nd"}}],
            "rules[0].operands.dark",
            "expected a remote path",
        ),
        ([{**CALIBRATED, "operands": ["dark"]}], "rules[0].operands", "expected a table"),
        ([{**CALIBRATED, "path": "{folder}/out.b2"}], "rules[0].path", 'ending in ".b2nd"'),
        (
            [{**CALIBRATED, "path": "derived/{stem}.b2nd"}],
            "rules[0].path",
            "expected a remote path",
        ),
        ([CALIBRATED, {**CALIBRATED, "match": ""}], "rules[1].match", "expected a glob"),
    ],
)
def test_rule_validation(value: Any, key: str, message: str) -> None:
    with pytest.raises(derive.SettingError) as info:
        derive.parse_rules(value["rules"] if isinstance(value, dict) else value)
    assert info.value.key == key
    assert message in info.value.message


def test_configure_raises_one_line_manifest_errors(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[derive])
    manifest = plugin_manifest(
        tmp_path,
        plugins,
        """
[[plugins.derive.rules]]
match = "run_*.b2nd"
name = "{stem}_cal"
expression = "(x - dark) * 0.5"
operands = { dark = "{folder}/dark.b2nd", flat = "{folder}/flat.b2nd" }
""",
    )
    with pytest.raises(ManifestError) as info:
        derive.cat2sync_configure(manifest)
    assert str(info.value) == (
        f"{manifest.source}: plugins.derive.rules[0].operands.flat: not used in the expression"
    )
    assert derive.current_rules() == ()  # the previous rules stay in force


def test_manifest_checks_the_rules_type(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[derive])
    with pytest.raises(ManifestError, match=r"plugins\.derive\.rules: expected an array"):
        plugin_manifest(tmp_path, plugins, '[plugins.derive]\nrules = "run_*"\n')


def test_hook_through_the_manager(tmp_path: Path) -> None:
    plugins = Plugins(entry_points=False, extra=[derive])
    rule = UploadRule(name="beam", local=tmp_path, remote="@shared/beam")
    assert plugins.lazyexprs(rule, "@shared/beam/run_1.b2nd", {}) == []  # no rules yet
    plugins.configure(
        plugin_manifest(
            tmp_path,
            plugins,
            """
[[plugins.derive.rules]]
match = "run_*.b2nd"
name = "{rule}_{stem}"
expression = "x * 2"
""",
        )
    )
    info = {"shape": (10,), "dtype": "float64", "rows": 10}
    [request] = plugins.lazyexprs(rule, "@shared/beam/run_1.b2nd", info)
    assert (request.name, request.path) == ("beam_run_1", None)
    assert plugins.lazyexprs(rule, "@shared/beam/dark.b2nd", info) == []


def test_entry_point_in_pyproject() -> None:
    meta = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["cat2sync"] == {derive.NAME: "cat2sync_derive"}
