"""``cat2sync verify`` proves what the server holds, against the real server: shipped
and mirrored files compared by their data (datasets) or bytes, one line per problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.manifest import load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, grow_b2nd, run_once, running, write_b2nd, write_manifest
from tests.helpers.cli import cli
from tests.helpers.daemon import upload_rule
from tests.helpers.mirror import subscribe_rule


@pytest.fixture
def synced(tmp_path: Path, server: LocalServer, data_dir: Path, remote_dir: str) -> Path:
    """A manifest with an upload rule and a subscription of what it uploads, both run."""
    write_b2nd(data_dir / "frames.b2nd", np.arange(4000.0).reshape(400, 10), chunks=(64, 10))
    (data_dir / "notes.txt").write_text("beam current stable\n")
    path = write_manifest(
        tmp_path / "cat2sync.toml",
        url=server.url,
        username=ALICE[0],
        password=ALICE[1],
        upload=[upload_rule(data_dir, remote_dir)],
        subscribe=[subscribe_rule(remote_dir, tmp_path / "mirror", name="down")],
    )
    manifest = load_manifest(path)
    assert run_once(manifest).failures == 0
    # The file grows: appended rows are recompressed by the server, the data is the same.
    grow_b2nd(data_dir / "frames.b2nd", np.ones((30, 10)))
    assert run_once(manifest).failures == 0
    return path


def test_everything_matches(synced: Path) -> None:
    code, out, _ = cli("verify", str(synced))
    assert code == 0, out
    assert out.splitlines() == ["4 files checked: 4 match, 0 do not"]


def test_one_line_per_problem(synced: Path, client: Client, remote_dir: str) -> None:
    other = synced.parent / "other.txt"
    other.write_text("tampered\n")
    client.upload(other, f"{remote_dir}/notes.txt")
    client.remove(f"{remote_dir}/frames.b2nd")
    code, out, _ = cli("verify", str(synced))
    assert code == 1
    lines = out.splitlines()
    assert lines[-1] == "4 files checked: 0 match, 4 do not"
    assert f"up: frames.b2nd: missing on the server ({remote_dir}/frames.b2nd)" in lines
    assert any(line.startswith("up: notes.txt: the bytes differ") for line in lines)
    assert any(line.startswith("down: notes.txt: the bytes differ") for line in lines)


def test_json_and_one_rule(synced: Path) -> None:
    code, out, _ = cli("verify", "--json", "--rule", "down", str(synced))
    assert code == 0
    assert json.loads(out) == {
        "checked": 2,
        "matching": 2,
        "bytes_compared": json.loads(out)["bytes_compared"],
        "problems": [],
    }
    assert json.loads(out)["bytes_compared"] > 4000 * 8
    code, _, err = cli("verify", "--rule", "nope", str(synced))
    assert code == 1 and "no rule named 'nope'" in err


def test_while_the_daemon_runs(synced: Path) -> None:
    with running(load_manifest(synced)):
        code, out, _ = cli("verify", str(synced))
    assert code == 0, out


def test_a_bad_manifest_is_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[upload]]\nsettle = 3\n")
    code, _, err = cli("verify", str(bad))
    assert code == 2 and len(err.strip().splitlines()) == 1
