"""Roots, subscriptions and listings against the real server."""

from __future__ import annotations

from pathlib import Path

import blosc2
import numpy as np
import pytest

from cat2sync import Client, NotFound
from cat2sync.server import LocalServer


def test_get_roots_of_a_user(client: Client, server: LocalServer) -> None:
    roots = client.get_roots()
    assert {"@public", "@personal", "@shared"} <= set(roots)
    host_port = server.url.removeprefix("http://")
    for name, meta in roots.items():
        assert meta == {"name": name, "http": host_port, "subscribed": False}


def test_subscribe_marks_the_root_subscribed(client: Client) -> None:
    assert client.subscribe("@public") == "Ok"
    roots = client.get_roots()
    assert roots["@public"]["subscribed"] is True
    assert roots["@personal"]["subscribed"] is False


def test_subscribe_to_an_unknown_root_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as err:
        client.subscribe("no-such-root")
    assert err.value.path == "no-such-root"
    assert "no-such-root" not in client.get_roots()


def test_anonymous_roots_show_only_public(anon_client: Client) -> None:
    assert set(anon_client.get_roots()) == {"@public"}


def test_get_list_is_recursive_and_relative(
    client: Client, remote_dir: str, make_b2nd, data_dir: Path
) -> None:
    local = make_b2nd("a.b2nd", np.arange(10))
    (data_dir / "notes.txt").write_text("some notes\n")
    client.upload(local, f"{remote_dir}/a.b2nd")
    client.upload(local, f"{remote_dir}/sub/deeper/b.b2nd")
    client.upload(data_dir / "notes.txt", f"{remote_dir}/sub/notes.txt")

    assert sorted(client.get_list(remote_dir)) == ["a.b2nd", "sub/deeper/b.b2nd", "sub/notes.txt"]
    assert sorted(client.get_list(f"{remote_dir}/sub")) == ["deeper/b.b2nd", "notes.txt"]
    rel = remote_dir.removeprefix("@personal/")
    assert f"{rel}/sub/deeper/b.b2nd" in client.get_list("@personal")


def test_get_list_of_a_missing_folder_is_empty(client: Client, remote_dir: str) -> None:
    assert client.get_list(f"{remote_dir}/nothing-here") == []


@pytest.mark.needs_2026("writes a chunk (POST /api/chunk)")
def test_get_list_hides_lock_sidecars_after_an_append(
    client: Client, remote_dir: str, data_dir: Path
) -> None:
    # Writing a chunk into an uninitialised array makes the server leave an
    # ``x.b2nd.b2lock`` sidecar; the append must not make it show either.
    path = data_dir / "u.b2nd"
    blosc2.uninit((100,), dtype="i8", chunks=(50,), blocks=(10,), urlpath=str(path), mode="w")
    remote = f"{remote_dir}/u.b2nd"
    client.upload(path, remote)
    full = blosc2.asarray(np.arange(100), chunks=(50,), blocks=(10,))
    chunk = full.schunk.get_chunk(0)
    client._t.request(
        "POST", f"/api/chunk/{remote}", params={"nchunk": 0}, body=lambda: {"content": chunk}
    )
    assert client.append(remote, np.arange(5)) == (105,)

    raw = client._t.request("GET", f"/api/list/{remote_dir}").json()
    assert "u.b2nd.b2lock" in raw  # the server really leaks it (else this test proves nothing)
    assert client.get_list(remote_dir) == ["u.b2nd"]
    assert list(client.get(remote_dir)) == ["u.b2nd"]
