"""Unit tests of the manifest loader (no server needed)."""

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
from cat2sync.manifest import (
    REQUIRED,
    Manifest,
    ServerConfig,
    SettingSpec,
    SubscribeRule,
    TransformSpec,
    UploadRule,
    load_manifest,
    parse_duration,
    starter_manifest,
)

NAME = "cat2sync.toml"
ENV = {"CAT2_PASSWORD": "s3cret-pw", "CAT2_HOST": "127.0.0.1"}

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

NOTIFY_SETTINGS = {
    "notify": {"file": SettingSpec(type=str), "level": SettingSpec(type=str, default="info")}
}

UPLOAD = '[[upload]]\nlocal = "acquisition"\nremote = "@personal/b7"\n'
SUBSCRIBE = '[[subscribe]]\nroot = "@public/x"\nlocal = "mirror"\n'
LAZYEXPR = '[[lazyexpr]]\nname = "c"\nexpression = "a + 1"\noperands = {a = "@public/a.b2nd"}\n'
SERVER = '[server]\nurl = "https://cat2.example.org"\nusername = "joe"\npassword = "pw"\n'
UPLOAD_KEYS = (
    "append, concurrency, delete, exclude, follow_symlinks, include, local, max_delete, name, "
    "remote, server, settle, transforms"
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with an ``acquisition`` subfolder, made the current directory."""
    (tmp_path / "acquisition").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(text: str, **kwargs: Any) -> Manifest:
    Path(NAME).write_text(text, encoding="utf-8")
    kwargs.setdefault("env", ENV)
    return load_manifest(NAME, **kwargs)


def error_of(text: str, **kwargs: Any) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(text, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{NAME}: ")
    return info.value


def expect_error(text: str, key: str, message: str, **kwargs: Any) -> None:
    err = error_of(text, **kwargs)
    assert str(err) == f"{NAME}: {key}: {message}"
    assert err.key == key


# --------------------------------------------------------------------------- valid manifests


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


def test_url_embedded_means_local_server(workdir: Path) -> None:
    manifest = load('[server]\nurl = "embedded"\n' + UPLOAD)
    assert manifest.servers["default"].url is None


def test_empty_manifest_is_valid(workdir: Path) -> None:
    manifest = load("")
    assert manifest.uploads == () and manifest.subscriptions == ()


def test_named_servers(workdir: Path) -> None:
    text = (
        '[servers.lab]\nurl = "http://lab:8000"\n'
        '[servers.cloud]\nurl = "https://cloud.example.org"\nverify = false\n'
        + UPLOAD
        + 'server = "lab"\n'
        + SUBSCRIBE
        + 'server = "cloud"\n'
    )
    manifest = load(text)
    assert list(manifest.servers) == ["lab", "cloud"]
    assert manifest.server_for(manifest.uploads[0]).url == "http://lab:8000"
    assert manifest.server_for(manifest.subscriptions[0]).verify is False


def test_verify_ca_bundle_is_resolved(workdir: Path) -> None:
    (workdir / "ca.pem").write_text("pem")
    manifest = load('[server]\nurl = "https://h"\nverify = "ca.pem"\n')
    assert manifest.servers["default"].verify == str(workdir.resolve() / "ca.pem")


def test_env_interpolation_and_escape(workdir: Path) -> None:
    (workdir / "ca.pem").write_text("pem")
    text = (
        '[server]\nurl = "http://${CAT2_HOST}:8000"\nusername = "$${USER}"\n'
        'password = "a$${b}${CAT2_PASSWORD}$x"\ntimeout = "${TIMEOUT}"\nverify = "${VERIFY}"\n'
    )
    server = load(text, env={**ENV, "TIMEOUT": "1m", "VERIFY": "ca.pem"}).servers["default"]
    assert (server.timeout, server.verify) == (60.0, str(workdir.resolve() / "ca.pem"))
    assert server.url == "http://127.0.0.1:8000"
    assert server.username == "${USER}"
    assert server.password == "a${b}s3cret-pw$x"


def test_env_defaults_to_process_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAT2_PASSWORD", "from-env")
    Path(NAME).write_text(SERVER.replace('"pw"', '"${CAT2_PASSWORD}"'))
    assert load_manifest(NAME).servers["default"].password == "from-env"


def test_password_file(workdir: Path) -> None:
    (workdir / "secrets").mkdir()
    (workdir / "secrets" / "pw.txt").write_text("file-pw\n")
    text = '[server]\nurl = "http://h"\nusername = "joe"\npassword_file = "secrets/pw.txt"\n'
    server = load(text).servers["default"]
    assert server.password == "file-pw"
    assert server.password_file == workdir.resolve() / "secrets" / "pw.txt"
    assert "file-pw" not in repr(server)


def test_check_paths_off_tolerates_missing_folders_and_files(workdir: Path) -> None:
    text = (
        '[server]\nurl = "https://h"\nusername = "joe"\npassword_file = "nope.txt"\n'
        'verify = "nope.pem"\n[[upload]]\nlocal = "elsewhere"\nremote = "@personal/x"\n'
    )
    manifest = load(text, check_paths=False)
    assert manifest.servers["default"].password is None
    assert manifest.servers["default"].password_file == workdir.resolve() / "nope.txt"
    assert manifest.uploads[0].local == workdir.resolve() / "elsewhere"


def test_subscribe_remote_alias_cron_and_names(workdir: Path) -> None:
    text = (
        '[[subscribe]]\nname = "examples"\nremote = "@public/examples"\nlocal = "m"\n'
        'cron = "*/5 * * * *"\n'
    )
    rule = load(text).subscriptions[0]
    assert (rule.name, rule.remote, rule.every, rule.cron) == (
        "examples",
        "@public/examples",
        None,
        "*/5 * * * *",
    )


def test_numbers_are_accepted_for_durations_and_fractions(workdir: Path) -> None:
    rule = load(UPLOAD + "settle = 0\nmax_delete = 1\n").uploads[0]
    assert (rule.settle, rule.max_delete) == (0.0, 1.0)


def test_absolute_and_home_paths(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(workdir))
    text = f'[daemon]\nstate_dir = "{workdir / "state"}"\n[[upload]]\nlocal = "~/acquisition"\n'
    manifest = load(text + 'remote = "@public"\n')
    assert manifest.daemon.state_dir == workdir.resolve() / "state"
    assert manifest.uploads[0].local == workdir.resolve() / "acquisition"


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (0, 0.0),
        (2, 2.0),
        (1.5, 1.5),
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1m30s", 90.0),
        ("1h2m3s4ms", 3723.004),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["soon", "", "2", "5 m", "1s1m", "1s1s", "1.s", ".5s", "ms", "1x", "2s ", "-1s"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r'^expected a duration like "2s", got '):
        parse_duration(text)


def test_parse_duration_rejects_negative_bool_and_nan() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(-1)
    with pytest.raises(ValueError, match="got true"):
        parse_duration(True)
    with pytest.raises(ValueError, match="got nan"):
        parse_duration(float("nan"))


# --------------------------------------------------------------------------- errors

REMOTE_EXPECTED = 'expected a remote path like "@personal/folder"'

ERROR_CASES = [
    # unknown keys
    (
        "bogus = 1\n",
        "bogus",
        "unknown key (expected one of: daemon, lazyexpr, plugins, server, servers, "
        "subscribe, upload)",
    ),
    (UPLOAD + 'setle = "2s"\n', "upload[0].setle", f"unknown key (expected one of: {UPLOAD_KEYS})"),
    (
        UPLOAD + '"odd key" = 1\n',
        'upload[0]."odd key"',
        f"unknown key (expected one of: {UPLOAD_KEYS})",
    ),
    (
        "[daemon]\nlevel = 1\n",
        "daemon.level",
        "unknown key (expected one of: log_format, log_level, rescan, retry_max, state_dir)",
    ),
    (
        SERVER + "port = 1\n",
        "server.port",
        "unknown key (expected one of: password, password_file, timeout, url, username, verify)",
    ),
    # [daemon]
    ("daemon = 3\n", "daemon", "expected a table, got 3"),
    ("[daemon]\nstate_dir = 3\n", "daemon.state_dir", "expected a string, got 3"),
    (
        '[daemon]\nlog_level = "verbose"\n',
        "daemon.log_level",
        'expected one of "debug", "info", "warning", "error", got "verbose"',
    ),
    (
        '[daemon]\nlog_format = "xml"\n',
        "daemon.log_format",
        'expected one of "text", "json", got "xml"',
    ),
    ('[daemon]\nrescan = "0s"\n', "daemon.rescan", 'must be greater than 0, got "0s"'),
    ("[daemon]\nretry_max = -5\n", "daemon.retry_max", "a duration must not be negative, got -5"),
    # types
    (UPLOAD + 'settle = "soon"\n', "upload[0].settle", 'expected a duration like "2s", got "soon"'),
    (UPLOAD + "settle = true\n", "upload[0].settle", 'expected a duration like "2s", got true'),
    (UPLOAD + "settle = [1]\n", "upload[0].settle", 'expected a duration like "2s", got an array'),
    (UPLOAD + 'append = "yes"\n', "upload[0].append", 'expected a boolean, got "yes"'),
    (UPLOAD + "delete = 1\n", "upload[0].delete", "expected a boolean, got 1"),
    (UPLOAD + "concurrency = true\n", "upload[0].concurrency", "expected an integer, got true"),
    (UPLOAD + "concurrency = 2.0\n", "upload[0].concurrency", "expected an integer, got 2.0"),
    (UPLOAD + "concurrency = 0\n", "upload[0].concurrency", "must be between 1 and 64, got 0"),
    (UPLOAD + "concurrency = 65\n", "upload[0].concurrency", "must be between 1 and 64, got 65"),
    (
        UPLOAD + "max_delete = 1.5\n",
        "upload[0].max_delete",
        'expected a fraction between 0 and 1 or a percentage like "50%", got 1.5',
    ),
    (
        UPLOAD + 'max_delete = "150%"\n',
        "upload[0].max_delete",
        'expected a fraction between 0 and 1 or a percentage like "50%", got "150%"',
    ),
    (
        UPLOAD + 'max_delete = "half"\n',
        "upload[0].max_delete",
        'expected a fraction between 0 and 1 or a percentage like "50%", got "half"',
    ),
    (
        UPLOAD + 'include = "**/*.h5"\n',
        "upload[0].include",
        'expected an array of strings, got "**/*.h5"',
    ),
    (UPLOAD + "include = []\n", "upload[0].include", "must not be empty"),
    (UPLOAD + 'exclude = ["*.tmp", ""]\n', "upload[0].exclude[1]", "must not be empty"),
    (UPLOAD + "exclude = [1]\n", "upload[0].exclude[0]", "expected a string, got 1"),
    (UPLOAD + 'name = ""\n', "upload[0].name", "must not be empty"),
    ("upload = 3\n", "upload", "expected an array of tables ([[upload]]), got 3"),
    (
        '[upload]\nlocal = "acquisition"\n',
        "upload",
        "expected an array of tables ([[upload]]), got a table",
    ),
    ("upload = [1]\n", "upload[0]", "expected a table, got 1"),
    # transforms
    (
        UPLOAD + 'transforms = "float32"\n',
        "upload[0].transforms",
        'expected an array of transforms, got "float32"',
    ),
    (
        UPLOAD + "transforms = [{factor = 1}]\n",
        "upload[0].transforms[0].name",
        "missing required key",
    ),
    (UPLOAD + 'transforms = [""]\n', "upload[0].transforms[0]", "must not be empty"),
    (
        UPLOAD + "transforms = [3]\n",
        "upload[0].transforms[0]",
        'expected a transform name or a table like {name = "scale"}, got 3',
    ),
    # remote paths
    ('[[upload]]\nlocal = "acquisition"\n', "upload[0].remote", "missing required key"),
    ('[[upload]]\nremote = "@public"\n', "upload[0].local", "missing required key"),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "personal/x"\n',
        "upload[0].remote",
        f'{REMOTE_EXPECTED} starting with a root (@public, @personal, @shared), got "personal/x"',
    ),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "@personal/../x"\n',
        "upload[0].remote",
        f"{REMOTE_EXPECTED} (no empty, '.' or '..' segments), got \"@personal/../x\"",
    ),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "@personal/./x"\n',
        "upload[0].remote",
        f"{REMOTE_EXPECTED} (no empty, '.' or '..' segments), got \"@personal/./x\"",
    ),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "@personal//x"\n',
        "upload[0].remote",
        f"{REMOTE_EXPECTED} (no empty, '.' or '..' segments), got \"@personal//x\"",
    ),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "@personal/x/"\n',
        "upload[0].remote",
        f"{REMOTE_EXPECTED} (no empty, '.' or '..' segments), got \"@personal/x/\"",
    ),
    (
        '[[upload]]\nlocal = "acquisition"\nremote = "/@personal/x"\n',
        "upload[0].remote",
        f"{REMOTE_EXPECTED} (no leading '/'), got \"/@personal/x\"",
    ),
    (
        "[[upload]]\nlocal = \"acquisition\"\nremote = '@personal\\x'\n",
        "upload[0].remote",
        f"{REMOTE_EXPECTED} with '/' separators, got \"@personal\\\\x\"",
    ),
    # servers
    (UPLOAD + 'server = "lab"\n', "upload[0].server", 'no server named "lab" (defined: default)'),
    (
        '[servers.lab]\nurl = "http://h"\n' + UPLOAD,
        "upload[0].server",
        'no server named "default" (defined: lab)',
    ),
    (
        '[server]\nurl = "ftp://h"\n',
        "server.url",
        'expected "embedded" or an http:// or https:// URL, got "ftp://h"',
    ),
    (
        '[server]\nurl = "${CAT2_HOST}"\n',
        "server.url",
        'expected "embedded" or an http:// or https:// URL, got "${CAT2_HOST}"',
    ),
    (
        '[server]\nurl = "localhost:8000"\n',
        "server.url",
        'expected "embedded" or an http:// or https:// URL, got "localhost:8000"',
    ),
    (
        '[server]\nurl = "http://h"\nusername = "joe"\n',
        "server.username",
        "needs a password or password_file",
    ),
    ('[server]\nurl = "http://h"\npassword = "pw"\n', "server.password", "needs a username"),
    (
        '[server]\nurl = "http://h"\npassword_file = "pw.txt"\n',
        "server.password_file",
        "needs a username",
    ),
    (
        SERVER + 'password_file = "pw.txt"\n',
        "server.password_file",
        "give either password or password_file, not both",
    ),
    (SERVER + 'timeout = "0s"\n', "server.timeout", 'must be greater than 0, got "0s"'),
    (
        SERVER + "verify = 3\n",
        "server.verify",
        "expected true, false or a CA bundle file path, got 3",
    ),
    (
        '[server]\nurl = "http://h"\nusername = 7\npassword = "x"\n',
        "server.username",
        "expected a string, got 7",
    ),
    (
        '[server]\nusername = "joe"\npassword = "${CAT2_MISSING}"\n',
        "server.password",
        "environment variable CAT2_MISSING is not set",
    ),
    (
        '[server]\nurl = "http://${NOPE}"\n',
        "server.url",
        "environment variable NOPE is not set",
    ),
    (
        '[server]\nusername = "joe"\npassword = "${CAT2_PASSWORD"\n',
        "server.password",
        'invalid "${...}" reference (write "$${" for a literal "${")',
    ),
    (
        '[server]\nusername = "${EMPTY}"\npassword = "x"\n',
        "server.username",
        "is empty after ${...} interpolation",
    ),
    (
        "[server]\n[servers.lab]\n",
        "servers",
        "cannot be combined with [server]; use [servers.default] instead",
    ),
    ("[servers]\n", "servers", "no servers defined (add a [servers.NAME] table)"),
    ("[servers]\nlab = 3\n", "servers.lab", "expected a table, got 3"),
    (
        '[servers."a/b"]\n',
        'servers."a/b"',
        "expected a plain name (letters, digits, '_', '-', '.'; no '/' or '..'), got \"a/b\"",
    ),
    (
        '[servers.lab]\nurl = "http://h"\nuser = "x"\n',
        "servers.lab.user",
        "unknown key (expected one of: password, password_file, timeout, url, username, verify)",
    ),
    # subscribe
    (
        SUBSCRIBE + 'remote = "@public/y"\n',
        "subscribe[0].remote",
        "give either root or remote (an alias), not both",
    ),
    ('[[subscribe]]\nlocal = "m"\n', "subscribe[0].root", "missing required key"),
    (
        SUBSCRIBE + 'every = "5m"\ncron = "* * * * *"\n',
        "subscribe[0].cron",
        "give either every or cron, not both",
    ),
    (SUBSCRIBE + 'every = "0s"\n', "subscribe[0].every", 'must be greater than 0, got "0s"'),
    (
        SUBSCRIBE + 'cron = "* * * *"\n',
        "subscribe[0].cron",
        'invalid crontab "* * * *" (like "*/5 * * * *"): Wrong number of fields; got 4, expected 5',
    ),
    (SUBSCRIBE + 'delete = "no"\n', "subscribe[0].delete", 'expected a boolean, got "no"'),
    (
        SUBSCRIBE + "concurrency = 100\n",
        "subscribe[0].concurrency",
        "must be between 1 and 64, got 100",
    ),
    # lazyexpr
    ('[[lazyexpr]]\nexpression = "a"\n', "lazyexpr[0].name", "missing required key"),
    (
        '[[lazyexpr]]\nname = "a/b"\n',
        "lazyexpr[0].name",
        "expected a plain name (letters, digits, '_', '-', '.'; no '/' or '..'), got \"a/b\"",
    ),
    (
        '[[lazyexpr]]\nname = "a..b"\n',
        "lazyexpr[0].name",
        "expected a plain name (letters, digits, '_', '-', '.'; no '/' or '..'), got \"a..b\"",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "  "\n',
        "lazyexpr[0].expression",
        "must not be empty",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "a"\n',
        "lazyexpr[0].operands",
        "missing required key",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "a"\noperands = {}\n',
        "lazyexpr[0].operands",
        "must not be empty",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "a + 1"\n'
        'operands = {a = "@p/a.b2nd", x = "@p/x.b2nd"}\n',
        "lazyexpr[0].operands.x",
        "not used in the expression",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "xa + 1"\noperands = {a = "@p/a.b2nd"}\n',
        "lazyexpr[0].operands.a",
        "not used in the expression",
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "a"\noperands = {a = "p/a.b2nd"}\n',
        "lazyexpr[0].operands.a",
        f'{REMOTE_EXPECTED} starting with a root (@public, @personal, @shared), got "p/a.b2nd"',
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "a"\noperands = {a = "@public"}\n',
        "lazyexpr[0].operands.a",
        'expected a remote path below a root like "@public/name", got "@public"',
    ),
    (
        '[[lazyexpr]]\nname = "c"\nexpression = "1"\noperands = {1x = "@p/a.b2nd"}\n',
        "lazyexpr[0].operands.1x",
        "operand names must be identifiers like raw or dark_1",
    ),
    (
        LAZYEXPR + 'path = "@personal/c.h5"\n',
        "lazyexpr[0].path",
        'expected a dataset path ending in ".b2nd", got "@personal/c.h5"',
    ),
    (
        LAZYEXPR + 'refresh = "sometimes"\n',
        "lazyexpr[0].refresh",
        'expected one of "on-change", "every", got "sometimes"',
    ),
    (
        LAZYEXPR + 'refresh = "every"\n',
        "lazyexpr[0].every",
        'missing required key (refresh = "every" needs it)',
    ),
    (
        LAZYEXPR + 'refresh = "on-change"\nevery = "1m"\n',
        "lazyexpr[0].every",
        'cannot be combined with refresh = "on-change"',
    ),
    (
        LAZYEXPR + 'every = "later"\n',
        "lazyexpr[0].every",
        'expected a duration like "2s", got "later"',
    ),
    (
        LAZYEXPR + 'server = "lab"\n',
        "lazyexpr[0].server",
        'no server named "lab" (defined: default)',
    ),
    (
        LAZYEXPR + LAZYEXPR.replace('"c"', '"d"') + 'path = "@personal/c.b2nd"\n',
        "lazyexpr[1].path",
        "@personal/c.b2nd is already written by lazyexpr[0]",
    ),
    # plugins (without plugin_settings: tables are free-form)
    (
        '[plugins]\ndisable = "notify"\n',
        "plugins.disable",
        'expected an array of strings, got "notify"',
    ),
    ("[plugins]\nnotify = 3\n", "plugins.notify", "expected a table [plugins.notify], got 3"),
    # duplicate names
    (
        UPLOAD + 'name = "a"\n' + SUBSCRIBE + 'name = "a"\n',
        "subscribe[0].name",
        'duplicate rule name "a" (also used by upload[0]); set a distinct name',
    ),
    (
        SUBSCRIBE + SUBSCRIBE.replace('"mirror"', '"mirror2"'),
        "subscribe[1].name",
        'duplicate rule name "subscribe:@public/x" (also used by subscribe[0]); '
        "set a distinct name",
    ),
    (
        UPLOAD + 'name = "c"\n' + LAZYEXPR,
        "lazyexpr[0].name",
        'duplicate rule name "c" (also used by upload[0]); set a distinct name',
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), ERROR_CASES)
def test_one_line_errors(workdir: Path, text: str, key: str, message: str) -> None:
    expect_error(text, key, message, env={**ENV, "EMPTY": ""})


def test_missing_and_wrong_kind_of_local_folder(workdir: Path) -> None:
    base = workdir.resolve()
    expect_error(
        '[[upload]]\nlocal = "nope"\nremote = "@public"\n',
        "upload[0].local",
        f"folder does not exist: {base / 'nope'}",
    )
    (workdir / "file.txt").write_text("x")
    expect_error(
        '[[upload]]\nlocal = "file.txt"\nremote = "@public"\n',
        "upload[0].local",
        f"not a folder: {base / 'file.txt'}",
    )
    expect_error(
        '[[subscribe]]\nroot = "@public"\nlocal = "file.txt"\n',
        "subscribe[0].local",
        f"not a folder: {base / 'file.txt'}",
    )


def test_unusable_local_path(workdir: Path) -> None:
    expect_error(
        '[[subscribe]]\nroot = "@public"\nlocal = "a\\u0000b"\n',
        "subscribe[0].local",
        'cannot resolve path "a\\u0000b": embedded null byte',
    )


def test_password_file_problems(workdir: Path) -> None:
    base = workdir.resolve()
    text = '[server]\nurl = "http://h"\nusername = "joe"\npassword_file = "pw.txt"\n'
    expect_error(
        text, "server.password_file", f"cannot read {base / 'pw.txt'}: No such file or directory"
    )
    (workdir / "pw.txt").write_text("\n")
    expect_error(text, "server.password_file", f"file is empty: {base / 'pw.txt'}")


def test_missing_ca_bundle(workdir: Path) -> None:
    expect_error(
        '[server]\nurl = "https://h"\nverify = "ca.pem"\n',
        "server.verify",
        f"CA bundle file not found: {workdir.resolve() / 'ca.pem'}",
    )


def test_secrets_never_appear_in_errors(workdir: Path) -> None:
    for text in [
        '[server]\nurl = "http://joe:hunter2@h"\n',
        '[server]\nusername = "joe"\npassword = "hunter2${"\n',
        '[server]\nusername = "joe"\npassword = "hunter2"\ntimeout = "x"\n',
        '[server]\nusername = 3\npassword = "hunter2"\n',
    ]:
        assert "hunter2" not in str(error_of(text))
    err = error_of('[server]\nusername = "joe"\npassword = 12345\n')
    assert str(err) == f"{NAME}: server.password: expected a string, got an integer"


@pytest.mark.parametrize(
    ("text", "key", "relation"),
    [
        (
            UPLOAD + '[[subscribe]]\nroot = "@public/x"\nlocal = "acquisition/sub"\n',
            "subscribe[0].local",
            "overlaps upload[0].local ({a} contains {a}/sub)",
        ),
        (
            UPLOAD + '[[subscribe]]\nroot = "@public/x"\nlocal = "./acquisition"\n',
            "subscribe[0].local",
            "overlaps upload[0].local (both are {a})",
        ),
        (
            '[[upload]]\nlocal = "acquisition/inner"\nremote = "@public/a"\n' + UPLOAD,
            "upload[1].local",
            "overlaps upload[0].local ({a} contains {a}/inner)",
        ),
    ],
)
def test_overlapping_local_folders(workdir: Path, text: str, key: str, relation: str) -> None:
    (workdir / "acquisition" / "inner").mkdir()
    expect_error(text, key, relation.format(a=workdir.resolve() / "acquisition"))


def test_state_dir_must_not_be_synced(workdir: Path) -> None:
    base = workdir.resolve()
    expect_error(
        '[[upload]]\nlocal = "."\nremote = "@public"\n',
        "daemon.state_dir",
        f"{base / '.cat2sync'} lies inside upload[0].local ({base}); move it elsewhere",
    )
    expect_error(
        '[daemon]\nstate_dir = "acquisition/state"\n' + UPLOAD,
        "daemon.state_dir",
        f"{base / 'acquisition' / 'state'} lies inside upload[0].local "
        f"({base / 'acquisition'}); move it elsewhere",
    )
    expect_error(
        '[daemon]\nstate_dir = "mirror"\n[[subscribe]]\nroot = "@public"\nlocal = "mirror/x"\n',
        "subscribe[0].local",
        f"lies inside daemon.state_dir ({base / 'mirror'})",
    )


def test_invalid_toml(workdir: Path) -> None:
    err = error_of("a = \n[[upload]\n")
    assert str(err) == f"{NAME}: invalid TOML: Invalid value (at line 1, column 5)"
    err = error_of("a = 1\na = 2\n")
    assert str(err).startswith(f"{NAME}: invalid TOML: Cannot overwrite a value")
    Path(NAME).write_bytes(b'a = "\xff"\n')
    with pytest.raises(ManifestError, match=r"invalid TOML: not UTF-8 text"):
        load_manifest(NAME)


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


# --------------------------------------------------------------------------- plugins


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


# --------------------------------------------------------------------------- starter manifest


def test_starter_manifest_round_trip(workdir: Path) -> None:
    text = starter_manifest(
        server="http://lab:8000",
        username="joe@example.com",
        uploads=[("acquisition", "@personal/beamline7"), ("my data", "@personal/x")],
        subscriptions=[("@public/examples", "mirror/examples")],
    )
    assert "[[upload]]" in text and "[[subscribe]]" in text
    (workdir / "my data").mkdir()
    manifest = load(text, env={"CAT2_PASSWORD": "pw"})
    assert manifest.servers["default"].url == "http://lab:8000"
    assert manifest.servers["default"].password == "pw"
    assert [rule.remote for rule in manifest.uploads] == ["@personal/beamline7", "@personal/x"]
    assert manifest.uploads[1].local == workdir.resolve() / "my data"
    assert manifest.subscriptions[0].local == workdir.resolve() / "mirror" / "examples"


def test_starter_manifest_minimal_and_escaped(workdir: Path) -> None:
    manifest = load(starter_manifest(server=None, username=None, uploads=[], subscriptions=[]))
    assert manifest.servers["default"].embedded
    text = starter_manifest(server="embedded", username="a${b}", uploads=[], subscriptions=[])
    assert load(text, env={"CAT2_PASSWORD": "pw"}).servers["default"].username == "a${b}"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server": "ftp://x"},
        {"username": ""},
        {"uploads": [("a", "nope")]},
        {"uploads": [("", "@public")]},
        {"subscriptions": [("@public/../x", "m")]},
    ],
)
def test_starter_manifest_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {
        "server": None,
        "username": None,
        "uploads": [],
        "subscriptions": [],
        **kwargs,
    }
    with pytest.raises(ValueError, match=r"^\w+ .*: |^username: "):
        starter_manifest(**arguments)


# --------------------------------------------------------------------------- property test

# A value is "wrong" for a leaf when the loader must reject it there; these kinds of value
# are acceptable for some keys, so they are not tried on those keys.
WRONG_VALUES: list[Any] = ["yes", True, 7, 2.5, [1], {"zz": 1}, datetime.date(2020, 1, 2)]
DURATION_KEYS = {"settle", "every", "rescan", "retry_max", "timeout"}
BAD_DURATIONS: list[Any] = ["soon", "5 m", "1s1m", "-1s", "1x", "", "ms", "1.s", -1, -0.5]
UNKNOWN_KEYS = ["setle", "zz_unknown", "Local", "every_x"]
KeyPath = tuple[str | int, ...]


def key_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


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


def set_in(document: Any, path: KeyPath, value: Any) -> None:
    for part in path[:-1]:
        document = document[part]
    document[path[-1]] = value


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


def test_unexpected_failures_become_one_line_manifest_errors(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise ValueError("boom\nline two")

    monkeypatch.setattr("cat2sync.manifest._loader.read_manifest", broken)
    err = error_of(UPLOAD)
    assert str(err) == f"{NAME}: cannot load (ValueError: boom line two)"


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
