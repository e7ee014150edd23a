"""Hostile remote names are refused, and nothing is written outside the rule's folder."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from cat2sync import Client
from cat2sync.engine.names import collision_key, local_target
from cat2sync.errors import UnsafeName
from cat2sync.events import EventKind
from cat2sync.server import LocalServer
from tests.helpers.mirror import files_below, open_daemon, put_bytes, raw_upload

NFC_E = unicodedata.normalize("NFC", "é")
NFD_E = unicodedata.normalize("NFD", "é")


# -- names.py ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "../x.txt",
        "a/../../x.txt",
        "a/..",
        "/etc/passwd",
        "//srv/x",
        "a\\b.txt",
        "..\\..\\x.txt",
        "",
        "a//b.txt",
        "./a.txt",
        "a/./b.txt",
        "a/",
        "x\0y.txt",
        "x\ny.txt",
        "x\x1b[31my.txt",
        "x\x7fy.txt",
        "x\x9by.txt",
        "a/\ttab.txt",
        "x" * 241,
        "d/" + "é" * 121 + ".txt",
    ],
    ids=repr,
)
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeName):
        local_target(tmp_path, name)


@pytest.mark.parametrize(
    "name",
    [
        "x.b2nd",
        "a/b/c.txt",
        "..hidden",
        "a..b/c...d",
        "spaces in name.json",
        "日本語/データ.b2nd",
        "x" * 240,
    ],
)
def test_ordinary_names_map_below_the_root(tmp_path: Path, name: str) -> None:
    clean, target = local_target(tmp_path, name)
    assert clean == name
    assert target == tmp_path.joinpath(*name.split("/"))
    assert target.resolve().is_relative_to(tmp_path.resolve())


def test_names_are_normalised_to_nfc(tmp_path: Path) -> None:
    clean, target = local_target(tmp_path, f"caf{NFD_E}/r{NFD_E}sum{NFD_E}.txt")
    assert clean == f"caf{NFC_E}/r{NFC_E}sum{NFC_E}.txt"
    assert target == tmp_path / f"caf{NFC_E}" / f"r{NFC_E}sum{NFC_E}.txt"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (f"{NFC_E}.txt", f"{NFD_E}.txt"),
        ("Data/A.txt", "data/a.txt"),
        ("STRASSE", "straße"),
    ],
)
def test_collisions_share_a_key(one: str, other: str) -> None:
    assert collision_key(local_target(Path("/m"), one)[0]) == collision_key(
        local_target(Path("/m"), other)[0]
    )


def test_planted_symlinks_and_files_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "mirror", tmp_path / "outside"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (root / "sub").symlink_to(outside)
    (root / "real" / "deeper").symlink_to(outside)
    (root / "link.txt").symlink_to(outside / "target.txt")
    (root / "plain").write_text("a file")
    (root / "folder.txt").mkdir()
    for name in ("sub/x.txt", "real/deeper/x.txt", "link.txt", "plain/x.txt", "folder.txt"):
        with pytest.raises(UnsafeName):
            local_target(root, name)
    assert local_target(root, "real/x.txt")[1] == root / "real" / "x.txt"


# -- end to end ----------------------------------------------------------------


def _snapshot(folder: Path, *, skip: tuple[Path, ...]) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if not any(p == s or p.is_relative_to(s) for s in skip)
    }


def test_planted_symlink_is_not_followed(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    tmp_path: Path,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.txt").write_text("precious\n")
    for name in ("sub/x.txt", "link.txt", "ok.txt"):
        put_bytes(client, data_dir / name, f"{remote_dir}/{name}", b"from the server\n")
    mirror_dir.mkdir()
    (mirror_dir / "sub").symlink_to(outside, target_is_directory=True)
    (mirror_dir / "link.txt").symlink_to(outside / "target.txt")

    with open_daemon(subscription()) as h:
        events = h.mirror_pass()

    skipped = {e.remote: e.message for e in events if e.kind == EventKind.SKIPPED}
    assert set(skipped) == {f"{remote_dir}/sub/x.txt", f"{remote_dir}/link.txt"}
    assert "symlink" in (skipped[f"{remote_dir}/sub/x.txt"] or "")
    assert [e.path for e in events if e.kind == EventKind.DOWNLOADED] == ["ok.txt"]
    assert sorted(p.name for p in outside.iterdir()) == ["target.txt"]
    assert (outside / "target.txt").read_text() == "precious\n"


def test_hostile_remote_names_are_skipped(
    server: LocalServer,
    client: Client,
    data_dir: Path,
    remote_dir: str,
    tmp_path: Path,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    put_bytes(client, data_dir / "ok.txt", f"{remote_dir}/ok.txt", b"fine\n")
    put_bytes(client, data_dir / "clash", f"{remote_dir}/clash", b"a file...\n")
    put_bytes(client, data_dir / "inner.txt", f"{remote_dir}/clash/inner.txt", b"...and a dir\n")
    # The client refuses to send these names; the server takes them as multipart file
    # names of an upload into an existing folder.
    hostile = {
        "a\\b.txt": "backslash",
        "..": "'..'",
        "..\\..\\evil.txt": "backslash",
        f"{'n' * 245}.b2nd": "longer than",
    }
    colliding = (f"caf{NFC_E}.txt", f"caf{NFD_E}.txt", "Case.txt", "case.txt")
    raw_upload(
        server,
        remote_dir,
        {**dict.fromkeys(hostile, b"hostile\n"), **{name: name.encode() for name in colliding}},
    )
    listed = client.get_list(remote_dir)
    assert set(hostile) <= set(listed), listed
    manifest = subscription()
    before = _snapshot(tmp_path, skip=(mirror_dir, tmp_path / "state"))

    with open_daemon(manifest) as h:
        events = h.mirror_pass()
        assert [e for e in h.mirror_pass() if e.kind != EventKind.SKIPPED] == []

    skipped = {e.remote: e.message or "" for e in events if e.kind == EventKind.SKIPPED}
    for name, reason in hostile.items():
        assert reason in skipped.pop(f"{remote_dir}/{name}"), name
    assert "folder" in skipped.pop(f"{remote_dir}/clash")
    assert len(skipped) == 2 and all("collides" in m for m in skipped.values()), skipped
    assert [e for e in events if e.kind == EventKind.FAILED] == []
    mirrored = files_below(mirror_dir)
    assert sorted(mirrored) == sorted(
        [
            "ok.txt",
            "clash/inner.txt",
            f"caf{NFC_E}.txt",
            *(n for n in ("Case.txt", "case.txt") if f"{remote_dir}/{n}" not in skipped),
        ]
    )
    # Of two names that collide, the one already in NFC wins.
    assert f"{remote_dir}/caf{NFD_E}.txt" in skipped
    assert mirrored[f"caf{NFC_E}.txt"].read_bytes() == f"caf{NFC_E}.txt".encode()
    assert _snapshot(tmp_path, skip=(mirror_dir, tmp_path / "state")) == before
