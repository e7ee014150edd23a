"""``${VAR}`` from the environment and password files; secrets never in a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from cat2sync.manifest import load_manifest
from tests.helpers.manifest import ENV, NAME, SERVER, error_of, expect_error, load


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


def test_password_file_problems(workdir: Path) -> None:
    base = workdir.resolve()
    text = '[server]\nurl = "http://h"\nusername = "joe"\npassword_file = "pw.txt"\n'
    expect_error(
        text, "server.password_file", f"cannot read {base / 'pw.txt'}: No such file or directory"
    )
    (workdir / "pw.txt").write_text("\n")
    expect_error(text, "server.password_file", f"file is empty: {base / 'pw.txt'}")


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
