"""The ``[server]`` and ``[servers.NAME]`` tables, and rules naming a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.manifest import ENV, SERVER, SUBSCRIBE, UPLOAD, expect_error, load


def test_url_embedded_means_local_server(workdir: Path) -> None:
    manifest = load('[server]\nurl = "embedded"\n' + UPLOAD)
    assert manifest.servers["default"].url is None


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


def test_missing_ca_bundle(workdir: Path) -> None:
    expect_error(
        '[server]\nurl = "https://h"\nverify = "ca.pem"\n',
        "server.verify",
        f"CA bundle file not found: {workdir.resolve() / 'ca.pem'}",
    )


ERRORS = [
    # unknown keys
    (
        SERVER + "port = 1\n",
        "server.port",
        "unknown key (expected one of: password, password_file, timeout, url, username, verify)",
    ),
    # rules naming a server
    (UPLOAD + 'server = "lab"\n', "upload[0].server", 'no server named "lab" (defined: default)'),
    (
        '[servers.lab]\nurl = "http://h"\n' + UPLOAD,
        "upload[0].server",
        'no server named "default" (defined: lab)',
    ),
    # [server]
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
    # [servers.NAME]
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
]


@pytest.mark.parametrize(("text", "key", "message"), ERRORS)
def test_one_line_errors(workdir: Path, text: str, key: str, message: str) -> None:
    expect_error(text, key, message, env={**ENV, "EMPTY": ""})
