"""Local copies are removed only with ``delete = true``, under the cap, and if untouched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cat2sync import Client
from cat2sync.events import EventKind
from tests.helpers.mirror import files_below, open_daemon, put_bytes


def _seed(client: Client, data_dir: Path, remote_dir: str, count: int) -> list[str]:
    names = [f"logs/day{i:02d}.txt" for i in range(count)]
    for name in names:
        put_bytes(client, data_dir / name, f"{remote_dir}/{name}", f"{name}\n".encode())
    return names


def test_without_delete_local_copies_stay(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    names = _seed(client, data_dir, remote_dir, 3)
    with open_daemon(subscription()) as h:
        h.mirror_pass()
        client.remove(f"{remote_dir}/{names[0]}")
        events = h.mirror_pass()

    assert events == []
    assert sorted(files_below(mirror_dir)) == names


def test_with_delete_vanished_copies_go(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    names = _seed(client, data_dir, remote_dir, 3)
    with open_daemon(subscription(delete=True)) as h:
        h.mirror_pass()
        client.remove(f"{remote_dir}/{names[0]}")
        events = h.mirror_pass()
        assert h.mirror_pass() == []  # said once

    assert [(e.kind, e.path) for e in events] == [(EventKind.DELETED, names[0])]
    assert sorted(files_below(mirror_dir)) == names[1:]


def test_deleting_more_than_the_cap_removes_nothing(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    names = _seed(client, data_dir, remote_dir, 10)
    with open_daemon(subscription(delete=True, max_delete=0.5)) as h:
        h.mirror_pass()
        for name in names[:8]:
            client.remove(f"{remote_dir}/{name}")
        events = h.mirror_pass()

    assert [e.kind for e in events] == [EventKind.SKIPPED]
    assert "8 of 10" in (events[0].message or "")
    assert sorted(files_below(mirror_dir)) == names


def test_an_emptied_remote_folder_removes_nothing(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    names = _seed(client, data_dir, remote_dir, 1)
    with open_daemon(subscription(delete=True, max_delete=1.0)) as h:
        h.mirror_pass()
        client.remove(f"{remote_dir}/{names[0]}")  # the folder disappears with it
        events = h.mirror_pass()

    assert [e.kind for e in events] == [EventKind.SKIPPED]
    assert sorted(files_below(mirror_dir)) == names


def test_a_locally_modified_copy_is_kept(
    client: Client,
    data_dir: Path,
    remote_dir: str,
    mirror_dir: Path,
    subscription: Callable[..., Path],
) -> None:
    names = _seed(client, data_dir, remote_dir, 4)
    with open_daemon(subscription(delete=True)) as h:
        h.mirror_pass()
        edited = mirror_dir / names[1]
        edited.write_text("my own notes\n")
        client.remove(f"{remote_dir}/{names[1]}")
        client.remove(f"{remote_dir}/{names[2]}")
        events = h.mirror_pass()

    kinds = {e.path: e.kind for e in events}
    assert kinds == {names[1]: EventKind.SKIPPED, names[2]: EventKind.DELETED}
    assert edited.read_text() == "my own notes\n"
    assert sorted(files_below(mirror_dir)) == [names[0], names[1], names[3]]
