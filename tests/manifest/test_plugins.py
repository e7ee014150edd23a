"""The ``[plugins]`` table, free-form or checked against the plugins' settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from cat2sync.errors import ManifestError
from cat2sync.manifest import REQUIRED, SettingSpec, load_manifest
from tests.helpers.manifest import NOTIFY_SETTINGS, expect_error, load


def test_plugin_settings_are_validated_and_defaulted(workdir: Path) -> None:
    specs = {
        **NOTIFY_SETTINGS,
        "quota": {"ratio": SettingSpec(type=float, default=0.9)},
        "report": {"out": SettingSpec(type=Path, default=REQUIRED)},
    }
    text = '[plugins]\ndisable = ["quota"]\n[plugins.notify]\nfile = "e.jsonl"\n'
    plugins = load(text, plugin_settings=specs).plugins
    assert plugins.disable == ("quota",)
    assert dict(plugins.settings["notify"]) == {"file": "e.jsonl", "level": "info"}
    assert dict(plugins.settings["quota"]) == {"ratio": 0.9}
    assert "report" not in plugins.settings  # required setting, no table: not configured

    text = "[plugins.quota]\nratio = 1\n[plugins.report]\nout = 'r/out.txt'\n"
    plugins = load(text, plugin_settings=specs).plugins
    assert plugins.settings["quota"]["ratio"] == 1.0
    assert isinstance(plugins.settings["quota"]["ratio"], float)
    assert plugins.settings["report"]["out"] == workdir.resolve() / "r" / "out.txt"


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[plugins.other]\n", "plugins.other", "unknown plugin"),
        ('[plugins]\ndisable = ["nope"]\n', "plugins.disable[0]", 'unknown plugin "nope"'),
        (
            '[plugins.notify]\nfile = "x"\nfil = 1\n',
            "plugins.notify.fil",
            "unknown key (expected one of: file, level)",
        ),
        ("[plugins.notify]\nfile = 3\n", "plugins.notify.file", "expected a string, got 3"),
        ("[plugins.notify]\n", "plugins.notify.file", "missing required setting"),
        ("[plugins.quota]\nratio = true\n", "plugins.quota.ratio", "expected a number, got true"),
        (
            '[plugins.quota]\nratio = "x"\n',
            "plugins.quota.ratio",
            'expected a number, got "x"',
        ),
    ],
)
def test_plugin_setting_errors(workdir: Path, text: str, key: str, message: str) -> None:
    specs = {**NOTIFY_SETTINGS, "quota": {"ratio": SettingSpec(type=float, default=0.9)}}
    expect_error(text, key, message, plugin_settings=specs)


def test_plugin_tables_interpolate_environment_variables(tmp_path: Path) -> None:
    from cat2sync.manifest import SettingSpec

    path = tmp_path / "cat2sync.toml"
    path.write_text('[plugins.notify]\nwebhook = "https://hooks.example.org/${HOOK_TOKEN}"\n')
    specs = {"notify": {"webhook": SettingSpec(type=str, default=None)}}
    manifest = load_manifest(path, env={"HOOK_TOKEN": "t0k"}, plugin_settings=specs)
    assert manifest.plugins.settings["notify"]["webhook"] == "https://hooks.example.org/t0k"
    with pytest.raises(ManifestError) as err:
        load_manifest(path, env={}, plugin_settings=specs)
    assert str(err.value).endswith(
        "plugins.notify.webhook: environment variable HOOK_TOKEN is not set"
    )


ERRORS = [
    (
        '[plugins]\ndisable = "notify"\n',
        "plugins.disable",
        'expected an array of strings, got "notify"',
    ),
    ("[plugins]\nnotify = 3\n", "plugins.notify", "expected a table [plugins.notify], got 3"),
]


@pytest.mark.parametrize(("text", "key", "message"), ERRORS)
def test_one_line_errors(workdir: Path, text: str, key: str, message: str) -> None:
    expect_error(text, key, message)
