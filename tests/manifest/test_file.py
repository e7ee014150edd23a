"""The manifest file as a whole: valid manifests, TOML and reading errors, messages."""

from __future__ import annotations

import datetime
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from cat2sync.errors import ManifestError
from cat2sync.manifest import ServerConfig, SubscribeRule, TransformSpec, UploadRule, load_manifest
from tests.helpers.manifest import (
    ENV,
    NAME,
    NOTIFY_SETTINGS,
    UPLOAD,
    KeyPath,
    error_of,
    expect_error,
    key_path,
    load,
    set_in,
)

FULL = """
[daemon]
state_dir = ".cat2sync"
log_level = "debug"
log_format = "json"
rescan = "10m"
retry_max = 120

[server]
url = "http://${CAT2_HOST}:8000"
username = "joe@example.com"
password = "${CAT2_PASSWORD}"
timeout = "10s"

[[upload]]
local = "acquisition"
remote = "@personal/beamline7"
include = ["**/*.b2nd", "**/*.h5", "**/*.json"]
exclude = ["**/*.tmp"]
settle = "2s"
append = true
delete = false
max_delete = "25%"
concurrency = 2
transforms = ["float32", {name = "scale", factor = 0.5}]

[[subscribe]]
root = "@public/examples"
local = "mirror/examples"
every = "5m"
delete = false

[[lazyexpr]]
name = "calibrated"
expression = "(raw - dark) * 0.5"
operands = { raw = "@personal/beamline7/frames.b2nd", dark = "@public/calib/dark.b2nd" }
refresh = "on-change"

[[lazyexpr]]
name = "doubled"
expression = "2 * raw"
operands = { raw = "@personal/beamline7/frames.b2nd" }
path = "@shared/derived/doubled.b2nd"
every = "10m"

[plugins]
disable = ["notify"]

[plugins.notify]
file = "events.jsonl"
"""


def test_full_manifest_loads_into_typed_values(workdir: Path) -> None:
    manifest = load(FULL)
    assert manifest.source == NAME
    assert manifest.path == (workdir / NAME).resolve()
    assert manifest.base_dir == workdir.resolve()
    base = workdir.resolve()

    daemon = manifest.daemon
    assert daemon.state_dir == base / ".cat2sync"
    assert (daemon.log_level, daemon.log_format) == ("debug", "json")
    assert (daemon.rescan, daemon.retry_max) == (600.0, 120.0)

    server = manifest.servers["default"]
    assert list(manifest.servers) == ["default"]
    assert server == ServerConfig(
        name="default",
        url="http://127.0.0.1:8000",
        username="joe@example.com",
        password="s3cret-pw",
        timeout=10.0,
    )
    assert "s3cret-pw" not in repr(server)
    assert not server.embedded

    (upload,) = manifest.uploads
    assert upload == UploadRule(
        name="upload:acquisition",
        local=base / "acquisition",
        remote="@personal/beamline7",
        include=("**/*.b2nd", "**/*.h5", "**/*.json"),
        exclude=("**/*.tmp",),
        settle=2.0,
        max_delete=0.25,
        concurrency=2,
        transforms=(
            TransformSpec(name="float32"),
            TransformSpec(name="scale", params={"factor": 0.5}),
        ),
    )

    (subscription,) = manifest.subscriptions
    assert subscription == SubscribeRule(
        name="subscribe:@public/examples",
        remote="@public/examples",
        local=base / "mirror" / "examples",
        every=300.0,
    )

    calibrated, doubled = manifest.lazyexprs
    assert calibrated.name == "calibrated"
    assert dict(calibrated.operands) == {
        "raw": "@personal/beamline7/frames.b2nd",
        "dark": "@public/calib/dark.b2nd",
    }
    assert (calibrated.refresh, calibrated.every, calibrated.path) == ("on-change", None, None)
    assert calibrated.destination == "@personal/calibrated.b2nd"
    assert (doubled.refresh, doubled.every) == ("every", 600.0)
    assert doubled.destination == "@shared/derived/doubled.b2nd"

    assert manifest.plugins.disable == ("notify",)
    assert dict(manifest.plugins.settings["notify"]) == {"file": "events.jsonl"}
    assert list(manifest.rules()) == [upload, subscription]
    assert manifest.server_for(subscription) is server


def test_manifest_is_frozen(workdir: Path) -> None:
    manifest = load(UPLOAD)
    with pytest.raises(AttributeError):
        manifest.uploads[0].settle = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        manifest.servers["x"] = manifest.servers["default"]  # type: ignore[index]
    assert hash(manifest.uploads[0]) == hash(manifest.uploads[0])


def test_defaults_and_embedded_server(workdir: Path) -> None:
    manifest = load(UPLOAD)
    assert manifest.servers["default"] == ServerConfig(name="default")
    assert manifest.servers["default"].embedded
    assert manifest.daemon.state_dir == workdir.resolve() / ".cat2sync"
    assert (manifest.daemon.rescan, manifest.daemon.retry_max) == (600.0, 300.0)
    rule = manifest.uploads[0]
    assert (rule.include, rule.exclude, rule.settle, rule.concurrency) == (("**/*",), (), 2.0, 4)
    assert (rule.append, rule.delete, rule.max_delete, rule.follow_symlinks) == (
        True,
        False,
        0.5,
        False,
    )
    assert manifest.plugins.disable == ()
    assert manifest.lazyexprs == ()


def test_empty_manifest_is_valid(workdir: Path) -> None:
    manifest = load("")
    assert manifest.uploads == () and manifest.subscriptions == ()


def test_absolute_and_home_paths(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(workdir))
    text = f'[daemon]\nstate_dir = "{workdir / "state"}"\n[[upload]]\nlocal = "~/acquisition"\n'
    manifest = load(text + 'remote = "@public"\n')
    assert manifest.daemon.state_dir == workdir.resolve() / "state"
    assert manifest.uploads[0].local == workdir.resolve() / "acquisition"


def test_check_paths_off_tolerates_missing_folders_and_files(workdir: Path) -> None:
    text = (
        '[server]\nurl = "https://h"\nusername = "joe"\npassword_file = "nope.txt"\n'
        'verify = "nope.pem"\n[[upload]]\nlocal = "elsewhere"\nremote = "@personal/x"\n'
    )
    manifest = load(text, check_paths=False)
    assert manifest.servers["default"].password is None
    assert manifest.servers["default"].password_file == workdir.resolve() / "nope.txt"
    assert manifest.uploads[0].local == workdir.resolve() / "elsewhere"


def test_invalid_toml(workdir: Path) -> None:
    err = error_of("a = \n[[upload]\n")
    assert str(err) == f"{NAME}: invalid TOML: Invalid value (at line 1, column 5)"
    err = error_of("a = 1\na = 2\n")
    assert str(err).startswith(f"{NAME}: invalid TOML: Cannot overwrite a value")
    Path(NAME).write_bytes(b'a = "\xff"\n')
    with pytest.raises(ManifestError, match=r"invalid TOML: not UTF-8 text"):
        load_manifest(NAME)


def test_unknown_top_level_key(workdir: Path) -> None:
    expect_error(
        "bogus = 1\n",
        "bogus",
        "unknown key (expected one of: daemon, lazyexpr, plugins, server, servers, "
        "subscribe, upload)",
    )


def test_unreadable_file(workdir: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest("missing.toml")
    assert str(info.value) == "missing.toml: cannot read: No such file or directory"
    with pytest.raises(ManifestError) as info:
        load_manifest(Path("acquisition"))
    assert str(info.value) == "acquisition: cannot read: Is a directory"


def test_source_is_named_as_given(workdir: Path) -> None:
    (workdir / "examples" / "configs").mkdir(parents=True)
    relative = "examples/configs/x.toml"
    Path(relative).write_text("[daemon]\nrescan = 'soon'\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(relative)
    assert str(info.value) == (
        'examples/configs/x.toml: daemon.rescan: expected a duration like "2s", got "soon"'
    )
    # Relative paths are relative to the manifest's folder, not the current directory.
    Path(relative).write_text('[[subscribe]]\nroot = "@public"\nlocal = "m"\n')
    manifest = load_manifest(relative)
    assert manifest.subscriptions[0].local == workdir.resolve() / "examples" / "configs" / "m"


def test_long_and_multiline_values_stay_on_one_line(workdir: Path) -> None:
    err = error_of(UPLOAD + 'settle = """\nsoon\n' + "x" * 200 + '"""\n')
    assert err.key == "upload[0].settle"
    assert len(str(err)) < 150


def test_unexpected_failures_become_one_line_manifest_errors(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise ValueError("boom\nline two")

    monkeypatch.setattr("cat2sync.manifest._loader.read_manifest", broken)
    err = error_of(UPLOAD)
    assert str(err) == f"{NAME}: cannot load (ValueError: boom line two)"


# The smallest valid document with each table, and where the table is in it.
MINIMAL_TABLES: list[tuple[dict[str, Any], KeyPath]] = [
    ({"daemon": {}}, ("daemon",)),
    ({"server": {}}, ("server",)),
    ({"upload": [{"local": "acquisition", "remote": "@personal/b7"}]}, ("upload", 0)),
    ({"subscribe": [{"root": "@public/x", "local": "mirror"}]}, ("subscribe", 0)),
    (
        {"lazyexpr": [{"name": "c", "expression": "a", "operands": {"a": "@public/a.b2nd"}}]},
        ("lazyexpr", 0),
    ),
]


@pytest.mark.parametrize(("document", "table"), MINIMAL_TABLES)
def test_every_accepted_key_is_checked(
    workdir: Path, document: dict[str, Any], table: KeyPath
) -> None:
    # No key takes a date: a key that is accepted but never read would let this pass.
    with_unknown = tomllib.loads(tomli_w.dumps(document))  # a deep copy
    set_in(with_unknown, (*table, "zz"), 1)
    message = error_of(tomli_w.dumps(with_unknown)).message
    prefix = "unknown key (expected one of: "
    assert message.startswith(prefix)
    for key in message.removeprefix(prefix).removesuffix(")").split(", "):
        mutated = tomllib.loads(tomli_w.dumps(document))
        set_in(mutated, (*table, key), datetime.date(2020, 1, 2))
        assert error_of(tomli_w.dumps(mutated)).key == key_path((*table, key))


# --------------------------------------------------------------------------- property test

# A value is "wrong" for a leaf when the loader must reject it there; these kinds of value
# are acceptable for some keys, so they are not tried on those keys.
WRONG_VALUES: list[Any] = ["yes", True, 7, 2.5, [1], {"zz": 1}, datetime.date(2020, 1, 2)]
DURATION_KEYS = {"settle", "every", "rescan", "retry_max", "timeout"}
BAD_DURATIONS: list[Any] = ["soon", "5 m", "1s1m", "-1s", "1x", "", "ms", "1.s", -1, -0.5]
UNKNOWN_KEYS = ["setle", "zz_unknown", "Local", "every_x"]


def leaves(node: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    if isinstance(node, dict):
        if len(path) >= 2 and path[-2] == "transforms":
            yield from [((*path, "name"), node["name"])]  # params are free-form
            return
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, (*path, index))
    else:
        yield path, node


def tables(node: Any, path: KeyPath = ()) -> Iterator[KeyPath]:
    if isinstance(node, dict):
        if path[-1:] == ("operands",) or (len(path) >= 2 and path[-2] == "transforms"):
            return  # operand names and transform parameters are free-form
        yield path
        for key, value in node.items():
            yield from tables(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from tables(value, (*path, index))


def accepted_kinds(path: KeyPath, original: Any) -> tuple[type, ...]:
    """Types of WRONG_VALUES that would be valid at ``path``."""
    last = next(part for part in reversed(path) if isinstance(part, str))
    if path[-2:-1] == ("transforms",):
        return (str, dict)
    if last in DURATION_KEYS:
        return (int, float)
    if isinstance(original, bool):
        return (bool,)
    if isinstance(original, int | float):
        return (int, float)
    return (type(original),)


@pytest.fixture(scope="module")
def property_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("property")
    (folder / "acquisition").mkdir()
    document = tomllib.loads(FULL)
    manifest_path = folder / NAME
    manifest_path.write_text(FULL)
    load_manifest(manifest_path, env=ENV, plugin_settings=NOTIFY_SETTINGS)  # valid as is
    return manifest_path, document


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_mutated_manifests_fail_with_one_line_naming_the_key(
    property_base: tuple[Path, dict[str, Any]], data: st.DataObject
) -> None:
    manifest_path, base = property_base
    document = tomllib.loads(tomli_w.dumps(base))  # a deep copy
    env = dict(ENV)
    mutation = data.draw(st.sampled_from(["wrong type", "unknown key", "bad duration", "env"]))
    if mutation == "wrong type":
        path, original = data.draw(st.sampled_from(list(leaves(document))))
        accepted = accepted_kinds(path, original)
        candidates = [value for value in WRONG_VALUES if not isinstance(value, accepted)]
        set_in(document, path, data.draw(st.sampled_from(candidates)))
        expected = key_path(path)
    elif mutation == "unknown key":
        table = data.draw(st.sampled_from(list(tables(document))))
        name = data.draw(st.sampled_from(UNKNOWN_KEYS))
        set_in(document, (*table, name), 1)
        expected = key_path((*table, name))
    elif mutation == "bad duration":
        durations = [path for path, _ in leaves(document) if path[-1] in DURATION_KEYS]
        path = data.draw(st.sampled_from(durations))
        set_in(document, path, data.draw(st.sampled_from(BAD_DURATIONS)))
        expected = key_path(path)
    else:
        variable, expected = data.draw(
            st.sampled_from([("CAT2_PASSWORD", "server.password"), ("CAT2_HOST", "server.url")])
        )
        del env[variable]
    manifest_path.write_text(tomli_w.dumps(document))
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest_path, env=env, plugin_settings=NOTIFY_SETTINGS)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{manifest_path}: {expected}: ")
    assert info.value.key == expected
    assert ENV["CAT2_PASSWORD"] not in message
