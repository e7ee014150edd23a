"""Bad input: broken manifests and hostile local files.

Each problem is one line (no traceback), names what is wrong, and loses nothing: good
files next to bad ones are shipped exactly, and bad ones ship once they are fixed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import blosc2
import numpy as np
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cat2sync import Client
from cat2sync.daemon import Daemon
from cat2sync.durations import parse_duration
from cat2sync.events import EventKind
from cat2sync.manifest import load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, read_b2nd, running, wait_until, write_manifest
from tests.helpers.cli import cli, run_cli
from tests.helpers.compare import compare_remote
from tests.helpers.faults import STATS, FaultStats, array_file
from tests.helpers.remote import remote_files

pytestmark = pytest.mark.faults

PASSWORD = "Hyp0thesis-pw-5e1f"
PASSWORD_VAR = "C2S_FAULTS_PASSWORD"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR)\s")

# -- manifests: a CLI-level property test -------------------------------------------------

BASE: dict[str, Any] = {
    "daemon": {"state_dir": "state", "rescan": "10m", "retry_max": "1m", "log_level": "info"},
    "server": {
        "url": "http://127.0.0.1:9",
        "username": "joe@example.com",
        "password": f"${{{PASSWORD_VAR}}}",
        "timeout": "10s",
    },
    "upload": [
        {
            "name": "up",
            "local": "acq",
            "remote": "@personal/b7",
            "include": ["**/*.b2nd", "**/*.json"],
            "settle": "2s",
            "append": True,
            "delete": False,
            "max_delete": "25%",
            "concurrency": 2,
        }
    ],
    "subscribe": [{"name": "down", "root": "@public/x", "local": "mirror", "every": "5m"}],
}
#: Values each key must refuse (type or range), by key path.
WRONG: dict[tuple[str | int, ...], list[Any]] = {
    ("daemon",): [5, "x", [1]],
    ("daemon", "rescan"): [True, [1], {"a": 1}, "0s"],
    ("daemon", "log_level"): [3, True, "loud"],
    ("server",): [5, "x"],
    ("server", "url"): [5, True, ["x"], "ftp://x"],
    ("server", "timeout"): [True, [1], "0s"],
    ("upload",): ["x", 5, {"a": 1}],
    ("upload", 0, "settle"): [True, [1], {"a": 1}],
    ("upload", 0, "append"): ["yes", 1, 2.5],
    ("upload", 0, "delete"): ["no", 0],
    ("upload", 0, "concurrency"): ["two", 2.5, True, 0, -1, 1000],
    ("upload", 0, "include"): [5, True, "**/*", {"a": 1}],
    ("upload", 0, "remote"): [5, "personal/x", "@personal/../x", "@personal//x"],
    ("upload", 0, "max_delete"): ["lots", 2, -0.5, True],
    ("subscribe", 0, "every"): [True, [1], "0s"],
    ("subscribe", 0, "root"): [5, "noroot", "/@public/x"],
}
DURATIONS = [
    ("daemon", "rescan"),
    ("daemon", "retry_max"),
    ("server", "timeout"),
    ("upload", 0, "settle"),
    ("subscribe", 0, "every"),
]
TABLES: list[tuple[str | int, ...]] = [
    (),
    ("daemon",),
    ("server",),
    ("upload", 0),
    ("subscribe", 0),
]
VALID_KEYS = {
    "state_dir",
    "log_level",
    "log_format",
    "rescan",
    "retry_max",
    "url",
    "username",
    "password",
    "password_file",
    "timeout",
    "verify",
    "name",
    "local",
    "remote",
    "server",
    "include",
    "exclude",
    "settle",
    "append",
    "delete",
    "max_delete",
    "follow_symlinks",
    "concurrency",
    "transforms",
    "root",
    "every",
    "cron",
    "servers",
    "lazyexpr",
    "plugins",
    "daemon",
    "upload",
    "subscribe",
}


def key_path(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _set(doc: Any, path: tuple[str | int, ...], value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


def _bad_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return True
    return False


@st.composite
def broken_manifests(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str], str]:
    """``(document, environment, the key the error must name)``."""
    doc = tomllib.loads(tomli_w.dumps(BASE))  # a deep copy
    env = {PASSWORD_VAR: PASSWORD}
    kind = draw(
        st.sampled_from(["wrong type", "unknown key", "bad duration", "overlap", "missing env var"])
    )
    if kind == "wrong type":
        path = draw(st.sampled_from(sorted(WRONG, key=str)))
        _set(doc, path, draw(st.sampled_from(WRONG[path])))
        return doc, env, key_path(path)
    if kind == "unknown key":
        table = draw(st.sampled_from(TABLES))
        name = draw(
            st.from_regex(r"\A[a-z][a-z0-9_]{1,14}\Z").filter(lambda n: n not in VALID_KEYS)
        )
        _set(doc, (*table, name), draw(st.sampled_from([1, "x", True])))
        return doc, env, key_path((*table, name))
    if kind == "bad duration":
        path = draw(st.sampled_from(DURATIONS))
        text = draw(
            st.text(alphabet="0123456789.-+ smhdxµ", min_size=1, max_size=8).filter(_bad_duration)
        )
        _set(doc, path, text)
        return doc, env, key_path(path)
    if kind == "overlap":
        where = draw(st.sampled_from(["same", "inside", "contains", "second upload"]))
        if where == "second upload":
            doc["upload"].append({"name": "up2", "local": "acq/inner", "remote": "@personal/c"})
            return doc, env, "upload[1].local"
        local = {"same": "acq", "inside": "acq/inner", "contains": "."}[where]
        doc["subscribe"][0]["local"] = local
        return doc, env, "subscribe[0].local"
    field = draw(st.sampled_from(["password", "username", "url"]))
    variable = draw(st.from_regex(r"\AC2S_UNSET_[A-Z]{3,10}\Z"))
    doc["server"][field] = f"http://${{{variable}}}:8000" if field == "url" else f"${{{variable}}}"
    return doc, env, f"server.{field}"


@pytest.fixture(scope="module")
def manifest_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("manifests")
    (home / "acq" / "inner").mkdir(parents=True)
    (home / "mirror").mkdir()
    path = home / "cat2sync.toml"
    path.write_text(tomli_w.dumps(BASE))
    with mock.patch.dict(os.environ, {PASSWORD_VAR: PASSWORD}):
        assert cli("validate", str(path))[0] == 0  # the base is valid
    return home


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=broken_manifests())
def test_validate_broken_manifests(
    manifest_home: Path, case: tuple[dict[str, Any], dict[str, str], str]
) -> None:
    doc, env, key = case
    path = manifest_home / "cat2sync.toml"
    path.write_text(tomli_w.dumps(doc))
    with mock.patch.dict(os.environ, env):
        code, out, err = cli("validate", str(path))
    STATS.fault("broken manifest (cat2sync validate)")
    assert code == 2, (out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{path}: {key}: "), (key, lines[0])
    assert "Traceback" not in err
    assert PASSWORD not in err


# -- local files -----------------------------------------------------------------------------


def _frames(path: Path, rows: int = 100) -> Path:
    return array_file(path, np.arange(rows * 10.0).reshape(rows, 10), chunks=(25, 10))


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _upload_manifest(
    tmp_path: Path, server: LocalServer, data: Path, remote: str, **rule: Any
) -> Path:
    return write_manifest(
        tmp_path / "cat2sync.toml",
        url=server.url,
        username=ALICE[0],
        password=ALICE[1],
        upload=[{"name": "up", "local": str(data), "remote": remote, "settle": "0s", **rule}],
    )


ODD_NAMES = [
    "with space.json",
    "ünïcødé ✓ Fe₂O₃.json",
    "tab\there.json",
    "quote'\"s.json",
    "deep/sub folder/x y.json",
    "-leading-dash.json",
    "#hash%25percent.json",
]


def test_broken_and_odd_local_files(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    fault_stats: FaultStats,
) -> None:
    good = {"good.b2nd": _frames(data_dir / "good.b2nd"), "zero.json": data_dir / "zero.json"}
    (data_dir / "zero.json").write_bytes(b"")
    for i, name in enumerate(ODD_NAMES):
        path = data_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'{{"i": {i}}}')
        good[name] = path
    broken = {
        "truncated.b2nd": lambda p: (_frames(p), _truncate(p, 0.5)),
        "corrupt.b2nd": lambda p: (_frames(p), p.write_bytes(b"\xff" * 64 + p.read_bytes()[64:])),
        "zero.b2nd": lambda p: p.write_bytes(b""),
        "cut.b2frame": lambda p: (
            blosc2.SChunk(
                chunksize=4000,
                data=np.arange(5000, dtype="i4"),
                urlpath=str(p),
                mode="w",
                cparams={"typesize": 4},
            ),
            _truncate(p, 0.9),
        ),
        "garbage.b2": lambda p: p.write_bytes(b"not a blosc2 frame at all" * 10),
    }
    for name, make in broken.items():
        make(data_dir / name)
    fault_stats.fault("broken local file (corrupt, zero-byte, truncated)", len(broken) + 1)
    fault_stats.fault("odd local file name (spaces, unicode, quotes...)", len(ODD_NAMES))
    manifest = _upload_manifest(tmp_path, server, data_dir, remote_dir)

    done = run_cli("once", str(manifest))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    for line in output.splitlines():
        assert LOG_LINE.match(line) or line.startswith("cat2sync: "), line
    for name in broken:
        lines = [line for line in output.splitlines() if f"skipped: {name} " in line]
        assert len(lines) == 1, (name, output)
        assert "does not open" in lines[0]
    tally = compare_remote(client, remote_dir, good)
    fault_stats.add(tally)
    assert tally.ok, tally.problems

    # Nothing is lost: the broken files ship once they are complete.
    for name in broken:
        if name.endswith(".b2nd"):
            _frames(data_dir / name)
        else:
            (data_dir / name).unlink()
    done = run_cli("once", str(manifest))
    assert done.returncode == 0, done.stderr
    fixed = {**good, **{n: data_dir / n for n in broken if n.endswith(".b2nd")}}
    tally = compare_remote(client, remote_dir, fixed)
    fault_stats.add(tally)
    assert tally.ok, tally.problems


def test_name_with_a_newline_is_one_line(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    fault_stats: FaultStats,
) -> None:
    (data_dir / "new\nline.json").write_text('{"n": 1}')
    (data_dir / "fine.json").write_text('{"f": 1}')
    fault_stats.fault("odd local file name (newline)")
    done = run_cli("once", str(_upload_manifest(tmp_path, server, data_dir, remote_dir)))
    output = done.stdout + done.stderr
    assert remote_files(client, remote_dir) == ["fine.json"]
    assert "Traceback" not in output
    for line in output.splitlines():
        assert LOG_LINE.match(line) or line.startswith("cat2sync: "), f"{line!r} in:\n{output}"
    assert "new\\nline.json" in output  # named, escaped


def test_regular_file_with_a_non_latin1_name_is_mirrored(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    fault_stats: FaultStats,
) -> None:
    name, body = "Fe₂O₃ ✓ run.json", '{"sample": "Fe₂O₃"}'.encode()
    (data_dir / name).write_bytes(body)
    client.upload(data_dir / name, f"{remote_dir}/{name}")
    mirror = tmp_path / "mirror"
    manifest = write_manifest(
        tmp_path / "cat2sync.toml",
        url=server.url,
        username=ALICE[0],
        password=ALICE[1],
        subscribe=[{"name": "m", "root": remote_dir, "local": str(mirror)}],
    )
    fault_stats.fault("odd remote file name (not Latin-1)")
    daemon = Daemon(load_manifest(manifest))
    try:
        failures = daemon.once()
    finally:
        daemon.close()
    assert failures == 0
    assert (mirror / name).read_bytes() == body


@pytest.fixture
def vanishing(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Names (``gone*``) whose local file is deleted just before ``Client.upload`` reads
    it: listed and queued, gone when the transfer starts."""
    names: set[str] = set()
    real = Client.upload

    def upload(self: Client, local: str | os.PathLike[str], dataset: Any) -> Any:
        path = Path(local)
        if path.name.startswith("gone"):
            names.add(path.name)
            path.unlink(missing_ok=True)
        return real(self, local, dataset)

    monkeypatch.setattr(Client, "upload", upload)
    yield names


def _vanishing_folder(data_dir: Path) -> None:
    (data_dir / "stays.json").write_text('{"stays": true}')
    (data_dir / "gone.json").write_text('{"gone": true}')
    _frames(data_dir / "gone.b2nd")
    _frames(data_dir / "stays.b2nd")


def test_files_that_vanish_before_upload_in_the_daemon(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    vanishing: set[str],
    fault_stats: FaultStats,
) -> None:
    """The moment is made certain by a hook on ``Client.upload`` (see ``vanishing``); the
    server is the real one."""
    _vanishing_folder(data_dir)
    manifest = load_manifest(
        _upload_manifest(tmp_path, server, data_dir, remote_dir, settle="0.2s")
    )
    with running(manifest) as run:
        wait_until(
            lambda: run.settled() and len(run.of(EventKind.UPLOADED)) == 2,
            message="the daemon to settle",
            state=run.describe,
        )
        fault_stats.fault("local file vanished between listing and upload", len(vanishing))
        assert vanishing == {"gone.json", "gone.b2nd"}
        assert run.daemon.state.pending() == []
    tally = compare_remote(
        client,
        remote_dir,
        {"stays.json": data_dir / "stays.json", "stays.b2nd": data_dir / "stays.b2nd"},
    )
    fault_stats.add(tally)
    assert tally.ok, tally.problems


def test_files_that_vanish_before_upload_in_once(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    vanishing: set[str],
    fault_stats: FaultStats,
) -> None:
    """As above, in ``cat2sync once``: a vanished file is nothing to send, not a failure
    and not a backlog that ``status`` shows for ever."""
    _vanishing_folder(data_dir)
    manifest = load_manifest(_upload_manifest(tmp_path, server, data_dir, remote_dir))
    daemon = Daemon(manifest)
    try:
        failures = daemon.once()
        pending = daemon.state.pending()
    finally:
        daemon.close()
    fault_stats.fault("local file vanished between listing and upload", len(vanishing))
    assert sorted(remote_files(client, remote_dir)) == ["stays.b2nd", "stays.json"]
    assert vanishing == {"gone.json", "gone.b2nd"}
    assert [p.relpath for p in pending] == []
    assert failures == 0


def test_dtype_or_trailing_shape_change_is_a_whole_upload(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    fault_stats: FaultStats,
) -> None:
    path = data_dir / "frames.b2nd"
    remote = f"{remote_dir}/frames.b2nd"
    base = np.arange(1000, dtype=np.float64).reshape(100, 10)
    manifest = load_manifest(_upload_manifest(tmp_path, server, data_dir, remote_dir))
    steps: list[tuple[str, np.ndarray, tuple[int, ...], EventKind]] = [
        ("grown", np.concatenate([base, base[:30] + 1000]), (25, 10), EventKind.APPENDED),
        # Same values, more rows, another dtype: appending would be cast by the server.
        ("dtype", np.arange(1500, dtype=np.int64).reshape(150, 10), (25, 10), EventKind.UPLOADED),
        (
            "float32",
            np.arange(1600, dtype=np.float32).reshape(160, 10),
            (25, 10),
            EventKind.UPLOADED,
        ),
        (
            "trailing shape",
            np.arange(170 * 12, dtype=np.float32).reshape(170, 12),
            (25, 12),
            EventKind.UPLOADED,
        ),
        (
            "chunks",
            np.arange(180 * 12, dtype=np.float32).reshape(180, 12),
            (40, 12),
            EventKind.UPLOADED,
        ),
        (
            "rank",
            np.arange(190 * 12 * 2, dtype=np.float32).reshape(190, 12, 2),
            (40, 12, 2),
            EventKind.UPLOADED,
        ),
        (
            "grown again",
            np.concatenate(
                [
                    np.arange(190 * 12 * 2, dtype=np.float32).reshape(190, 12, 2),
                    np.ones((7, 12, 2), dtype=np.float32),
                ]
            ),
            (40, 12, 2),
            EventKind.APPENDED,
        ),
    ]
    array_file(path, base, chunks=(25, 10))
    with running(manifest) as run:
        wait_until(lambda: run.of(EventKind.UPLOADED) and run.settled(), state=run.describe)
        for label, data, chunks, kind in steps:
            seen = len(run.events)
            array_file(path, data, chunks=chunks)
            wait_until(
                lambda s=seen: len(run.events) > s and run.settled(),
                timeout=60,
                message=f"the {label} change to ship",
                state=run.describe,
            )
            new = [e.kind for e in run.events[seen:]]
            assert new == [kind], (label, new)
            theirs = client.fetch(remote)
            assert theirs.dtype == data.dtype and theirs.shape == data.shape, label
            assert np.array_equal(theirs, read_b2nd(path)), label
            fault_stats.add(compare_remote(client, remote_dir, {"frames.b2nd": path}))
    fault_stats.fault(
        "array changed dtype / trailing shape / chunks / rank between appends", len(steps) - 2
    )
