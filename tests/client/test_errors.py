"""Error paths against the real server: the right exception, one line, path and detail."""

from __future__ import annotations

from pathlib import Path

import blosc2
import numpy as np
import pytest

from cat2sync import (
    AuthenticationError,
    BadRequest,
    Client,
    NotFound,
    RemoteError,
    ServerError,
    TransportError,
)
from cat2sync.server import LocalServer

ALICE = ("alice@example.com", "alicepass1")  # as created by tests/conftest.py


def test_missing_path_is_not_found_with_the_path(client: Client, remote_dir: str) -> None:
    missing = f"{remote_dir}/nope/missing.b2nd"
    for call in (client.get_info, client.fetch, client.get, client.remove):
        with pytest.raises(NotFound) as err:
            call(missing)
        assert err.value.path == missing
        assert missing in str(err.value)
        assert err.value.detail
        assert err.value.status == 404
        assert isinstance(err.value, RemoteError)
        assert isinstance(err.value, LookupError)


def test_unknown_root_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as err:
        client.get_info("@nowhere/x.b2nd")
    assert err.value.path == "@nowhere/x.b2nd"


def test_wrong_password_at_construction(server: LocalServer) -> None:
    secret = "not-the-password-42"
    with pytest.raises(AuthenticationError) as err:
        Client(server.url, (ALICE[0], secret))
    message = str(err.value)
    assert "\n" not in message
    assert ALICE[0] in message
    assert secret not in message
    assert secret not in repr(err.value)
    assert all(secret not in str(arg) for arg in err.value.args)


def test_password_is_not_shown(client: Client) -> None:
    assert ALICE[1] not in repr(client)
    assert ALICE[1] not in repr(client._t.credentials)


def test_unknown_user_at_construction(server: LocalServer) -> None:
    with pytest.raises(AuthenticationError):
        Client(server.url, ("nobody@example.com", "password123"))


def test_climbing_out_is_refused_client_side(client: Client, remote_dir: str) -> None:
    requests = client.stats.requests
    for bad in (f"{remote_dir}/../../x.b2nd", "@personal/./x", "@personal\\x", ""):
        with pytest.raises(BadRequest):
            client.get_info(bad)
    assert client.stats.requests == requests


def test_errors_carry_path_and_detail(client: Client, remote_dir: str, make_b2nd) -> None:
    remote = f"{remote_dir}/a.b2nd"
    client.upload(make_b2nd("a.b2nd", np.zeros((4, 3))), remote)
    with pytest.raises(BadRequest) as err:
        client.append(remote, np.zeros((2, 7)))
    assert err.value.path == remote
    assert err.value.status == 400
    assert err.value.detail
    assert str(err.value) == f"{remote}: {err.value.detail}"
    with pytest.raises(BadRequest) as err:
        client.get_slice(remote, "a > 1")  # a filter on a plain array
    assert err.value.path == remote


# -- anonymous access ------------------------------------------------------------------


def test_anonymous_reads_public(
    client: Client, anon_client: Client, public_dir: str, make_b2nd, tmp_path: Path
) -> None:
    remote = f"{public_dir}/open.b2nd"
    client.upload(make_b2nd("open.b2nd", np.arange(50)), remote)
    assert anon_client.get_list(public_dir) == ["open.b2nd"]
    assert anon_client.get_info(remote)["shape"] == [50]
    np.testing.assert_array_equal(anon_client.fetch(remote, slice(10, 13)), [10, 11, 12])
    np.testing.assert_array_equal(anon_client.get(remote)[:5], np.arange(5))
    out = anon_client.download(remote, tmp_path / "open.b2nd")
    np.testing.assert_array_equal(blosc2.open(str(out))[:], np.arange(50))
    client.remove(public_dir)


def test_anonymous_writes_are_refused(
    client: Client, anon_client: Client, public_dir: str, make_b2nd
) -> None:
    remote = f"{public_dir}/open.b2nd"
    local = make_b2nd("open.b2nd", np.arange(5))
    client.upload(local, remote)
    writes = [
        lambda: anon_client.upload(local, f"{public_dir}/mine.b2nd"),
        lambda: anon_client.append(remote, np.arange(3)),
        lambda: anon_client.copy(remote, f"{public_dir}/copy.b2nd"),
        lambda: anon_client.move(remote, f"{public_dir}/moved.b2nd"),
        lambda: anon_client.remove(remote),
        lambda: anon_client.lazyexpr("anon", "a + 1", {"a": remote}),
    ]
    for write in writes:
        with pytest.raises(AuthenticationError):
            write()
    assert client.get_list(public_dir) == ["open.b2nd"]
    assert client.get_info(remote)["shape"] == [5]
    client.remove(public_dir)


def test_anonymous_may_not_read_personal(anon_client: Client) -> None:
    with pytest.raises(AuthenticationError):
        anon_client.get_list("@personal")


# -- expired login, dropped connections, a stopped server --------------------------------


@pytest.mark.parametrize("how", ["cleared", "corrupted"])
def test_expired_cookie_is_renewed_transparently(
    client: Client, remote_dir: str, make_b2nd, how: str
) -> None:
    jar = client._t._http.cookies
    old = jar.get("c2subauth")
    assert old
    if how == "cleared":
        jar.clear()
    else:
        for cookie in jar.jar:
            cookie.value = "expired." + cookie.value[::-1]
    remote = f"{remote_dir}/a.b2nd"
    assert client.upload(make_b2nd("a.b2nd", np.arange(4)), remote) == remote
    assert client.get_list(remote_dir) == ["a.b2nd"]
    assert jar.get("c2subauth") not in (None, "")
    assert jar.get("c2subauth") != "expired." + old[::-1]


def test_expired_cookie_on_a_read_of_personal(client: Client, remote_dir: str, make_b2nd) -> None:
    client.upload(make_b2nd("a.b2nd", np.arange(4)), f"{remote_dir}/a.b2nd")
    client._t._http.cookies.clear()
    assert client.get_list(remote_dir) == ["a.b2nd"]
    client._t._http.cookies.clear()
    assert "@personal" in client.get_roots()  # would look anonymous without a new login
    client._t._http.cookies.clear()
    assert client.subscribe("@personal") == "Ok"


def test_a_500_does_not_break_the_next_request(
    server: LocalServer, remote_dir: str, make_b2nd, tmp_path: Path
) -> None:
    # After an unhandled error the server answers 500 and then drops the keep-alive
    # connection; a request sent on it right away fails with a reset. A client
    # without retries shows whether the next request avoids that connection.
    local = make_b2nd("a.b2nd", np.arange(10))
    remote = f"{remote_dir}/a.b2nd"
    with Client(server.url, ALICE, retries=0) as c:
        c.upload(local, remote)
        for i in range(10):
            with pytest.raises(BadRequest):
                c.get_slice(remote, field="nope")  # 500 from the server
            assert c.upload(local, f"{remote_dir}/b.b2nd") == f"{remote_dir}/b.b2nd"
            with pytest.raises(ServerError) as err:
                c.download(remote_dir, tmp_path / "dir-out")  # the server cannot send a folder
            assert err.value.status == 500
            assert c.append(remote, np.arange(2)) == (12 + 2 * i,)
        assert sorted(c.get_list(remote_dir)) == ["a.b2nd", "b.b2nd"]
    assert not (tmp_path / "dir-out").exists()


def test_stopped_server_is_a_transport_error(tmp_path: Path) -> None:
    own = LocalServer(tmp_path / "own-server", superuser=("root@example.com", "rootpass123"))
    own.start()
    try:
        c = Client(own.url, own.superuser, retries=1)
        assert "@personal" in c.get_roots()
    finally:
        own.stop()
    with pytest.raises(TransportError) as err:
        c.get_info("@personal/x.b2nd")
    assert err.value.path == "@personal/x.b2nd"
    assert "\n" not in str(err.value)
    local = tmp_path / "x.txt"
    local.write_text("x")
    with pytest.raises(TransportError):
        c.upload(local, "@personal/x.txt")
    c.close()
    with pytest.raises(TransportError):  # no server at construction either
        Client(own.url, own.superuser, retries=0)


def test_closed_client_is_a_transport_error(server: LocalServer) -> None:
    c = Client(server.url, ALICE)
    c.close()
    with pytest.raises(TransportError):
        c.get_roots()
