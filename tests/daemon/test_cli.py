"""The ``cat2sync`` command: exit codes, one-line errors, status, and no password leaks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.testing import ALICE, write_b2nd
from tests.helpers.cli import run_cli
from tests.helpers.daemon import MakeManifest
from tests.helpers.remote import remote_files

PASSWORD_VAR = "C2S_TEST_PASSWORD"


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda t: t.replace('settle = "0.2s"', 'settle = "soon"'), "upload[0].settle"),
        (lambda t: t.replace('settle = "0.2s"', 'setle = "2s"'), "upload[0].setle"),
        (lambda t: t.replace('remote = "@personal/', 'remote = "personal/'), "upload[0].remote"),
        (lambda t: t.replace(f"${{{PASSWORD_VAR}}}", "${C2S_UNSET_VARIABLE}"), "server.password"),
        (
            lambda t: t + "\n[[upload]]\nlocal = 'missing-folder'\nremote = '@personal/x'\n",
            "upload[1].local",
        ),
    ],
    ids=["duration", "unknown-key", "remote-root", "unset-variable", "missing-folder"],
)
def test_validate_broken_manifest_is_one_line(
    make_manifest: MakeManifest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    edit: object,
    key: str,
) -> None:
    monkeypatch.setenv(PASSWORD_VAR, ALICE[1])
    good = make_manifest(password=f"${{{PASSWORD_VAR}}}").path
    broken = tmp_path / "broken.toml"
    broken.write_text(edit(good.read_text()))  # type: ignore[operator]
    done = run_cli("validate", str(broken))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert str(broken) in lines[0] and f"{key}:" in lines[0]
    assert "Traceback" not in done.stderr
    assert ALICE[1] not in done.stderr


def test_once_and_status(
    make_manifest: MakeManifest,
    client: Client,
    data_dir: Path,
    remote_dir: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_VAR, ALICE[1])
    manifest = make_manifest(password=f"${{{PASSWORD_VAR}}}")
    outputs: list[str] = []

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = run_cli(*args)
        outputs.extend([done.stdout, done.stderr])
        return done

    assert run("validate", str(manifest.path)).returncode == 0
    status = run("status", "--json", str(manifest.path))
    assert status.returncode == 0
    assert json.loads(status.stdout)["rules"]["up"]["pending"] == 0

    write_b2nd(data_dir / "good.b2nd", np.ones((10, 10)), chunks=(5, 10))
    done = run("--log-level", "debug", "once", str(manifest.path))
    assert done.returncode == 0, done.stderr
    assert remote_files(client, remote_dir) == ["good.b2nd"]

    (data_dir / "broken.b2nd").write_bytes(b"b2frame, but cut short")
    done = run("--log-level", "debug", "once", str(manifest.path))
    assert done.returncode == 1
    assert "broken.b2nd" in done.stderr
    assert "Traceback" not in done.stderr
    assert remote_files(client, remote_dir) == ["good.b2nd"]

    status = run("status", "--json", str(manifest.path))
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert list(report["rules"]) == ["up"]
    rule = report["rules"]["up"]
    assert rule["pending"] == 1
    assert rule["pending_files"] == ["broken.b2nd"]
    assert "Blosc2" in rule["last_error"]
    assert run("status", str(manifest.path)).stdout.startswith("up: last pass ")

    for text in outputs:
        assert ALICE[1] not in text
