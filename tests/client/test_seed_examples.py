"""The seed document's examples (caterva2-client-api.txt), run as a new user would.

Adapted to the local server: its roots are ``@public``, ``@personal`` and ``@shared``
(the demo roots such as ``example`` do not exist), the "root-example" files are made
locally, and every example that writes runs as a brand-new user, so ``@personal``
starts empty as in the document.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path, PosixPath, PurePosixPath

import blosc2
import h5py
import numpy as np
import pytest

from cat2sync import BadRequest, Client, Dataset, File, Root
from cat2sync.server import LocalServer

DS_4D = np.arange(2 * 3 * 4 * 5, dtype="f8").reshape(2, 3, 4, 5)
# The seed's output for fetch/get_slice of ds-2d-fields.b2nd[0:2, 0:2]
FIELDS_2X2 = np.array(
    [
        [(0.0000000e00, 1.0), (5.0002502e-05, 1.00005)],
        [(1.0000500e-02, 1.0100005), (1.0050503e-02, 1.0100505)],
    ],
    dtype=[("a", "<f4"), ("b", "<f8")],
)


def _assert_fields_equal(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == expected.dtype
    for name in expected.dtype.names or ():
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6)


@pytest.fixture(scope="module")
def root_example(tmp_path_factory: pytest.TempPathFactory, fields_array: np.ndarray) -> Path:
    """A local stand-in for the seed's ``root-example`` folder."""
    top = tmp_path_factory.mktemp("root-example")
    arrays = {
        "ds-1d.b2nd": np.arange(1000),
        "dir1/ds-2d.b2nd": np.arange(100 * 200).reshape(100, 200),
        "dir1/ds-3d.b2nd": np.arange(60).reshape(3, 4, 5),
        "dir2/ds-4d.b2nd": DS_4D,
        "ds-2d-fields.b2nd": fields_array,
    }
    for name, array in arrays.items():
        (top / name).parent.mkdir(exist_ok=True)
        blosc2.asarray(array, urlpath=str(top / name), mode="w")
    (top / "README.md").write_text("This is a simple example\n")
    return top


@pytest.fixture(scope="module")
def example(alice: Client, root_example: Path) -> Iterator[str]:
    """The seed's ``example`` root, published by alice as a folder of @public."""
    folder = f"@public/example-{uuid.uuid4().hex[:10]}"
    for local in sorted(root_example.rglob("*")):
        if local.is_file():
            alice.upload(local, f"{folder}/{local.relative_to(root_example).as_posix()}")
    yield folder
    alice.remove(folder)


@pytest.fixture(scope="module")
def seed_user(server: LocalServer, admin: Client) -> Iterator[Client]:
    """One new user for the examples that do not need an empty @personal."""
    email = f"seed-{uuid.uuid4().hex[:10]}@example.com"
    admin.adduser(email, "seeduserpass1")
    with Client(server.url, (email, "seeduserpass1")) as c:
        yield c
    admin.deluser(email)


def test_constructor(server: LocalServer) -> None:
    client = Client(server.url)
    auth_client = Client(server.url, ("alice@example.com", "alicepass1"))
    assert sorted(client.get_roots()) == ["@public"]
    assert "@personal" in auth_client.get_roots()
    client.close()
    auth_client.close()


def test_get(anon_client: Client, example: str) -> None:
    client = anon_client
    root = client.get("@public")
    assert isinstance(root, Root)
    assert root.name == "@public"
    file = client.get(f"{example}/README.md")
    assert file.name == "README.md"
    ds = client.get(f"{example}/ds-1d.b2nd")
    assert isinstance(ds, Dataset)
    np.testing.assert_array_equal(ds[:10], np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]))


def test_get_roots(seed_user: Client, server: LocalServer) -> None:
    client = seed_user
    roots_dict = client.get_roots()
    assert sorted(roots_dict.keys()) == ["@personal", "@public", "@shared"]
    assert client.subscribe("@shared") == "Ok"
    roots_dict = client.get_roots()  # the seed reuses the old dict; a fresh one is needed
    assert roots_dict["@shared"]["subscribed"] is True
    assert roots_dict["@shared"] == {
        "name": "@shared",
        "http": server.url.removeprefix("http://"),
        "subscribed": True,
    }


def test_get_list(newcomer: Client, root_example: Path) -> None:
    client = newcomer
    for local in sorted(root_example.rglob("*")):
        if local.is_file():
            client.upload(local, f"@personal/{local.relative_to(root_example).as_posix()}")
    assert client.subscribe("@personal") == "Ok"
    assert client.get_list("@personal")[:3] == ["README.md", "dir1/ds-2d.b2nd", "dir1/ds-3d.b2nd"]


def test_subscribe(anon_client: Client, server: LocalServer) -> None:
    client = anon_client
    root_name = "@public"
    assert client.subscribe(root_name) == "Ok"
    assert client.get_roots()[root_name] == {
        "name": "@public",
        "http": server.url.removeprefix("http://"),
        "subscribed": True,
    }


def test_fetch(anon_client: Client, example: str) -> None:
    got = anon_client.fetch(f"{example}/ds-2d-fields.b2nd", (slice(0, 2), slice(0, 2)))
    _assert_fields_equal(got, FIELDS_2X2)


def test_get_chunk(anon_client: Client, example: str) -> None:
    client = anon_client
    assert client.subscribe("@public") == "Ok"
    path = f"{example}/ds-2d-fields.b2nd"
    info_schunk = client.get_info(path)["schunk"]
    assert info_schunk["nchunks"] == 1
    chunk = client.get_chunk(path, 0)
    # The seed's cratio (6.45) depends on the demo's compression settings; the
    # documented relation between chunksize, chunk length and cratio is what holds.
    assert info_schunk["chunksize"] / len(chunk) == info_schunk["cratio"]


def test_download(
    anon_client: Client, example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = f"{example}/ds-2d-fields.b2nd"
    assert anon_client.download(path) == PosixPath(path)
    assert (tmp_path / path).is_file()


def test_upload(seed_user: Client, root_example: Path) -> None:
    newpath = "@personal/dir42/ds-4d.b2nd"
    uploaded_path = seed_user.upload(root_example / "dir2/ds-4d.b2nd", newpath)
    assert str(uploaded_path) == newpath


@pytest.fixture
def username(admin: Client) -> Iterator[str]:
    name = f"user{uuid.uuid4().hex[:8]}@example.com"
    yield name
    if admin.listusers(name):
        admin.deluser(name)


def test_adduser(admin: Client, username: str) -> None:
    client = admin
    # The seed's password 'foo' is refused: the server wants at least 8 characters.
    with pytest.raises(BadRequest) as err:
        client.adduser(username, "foo")
    assert "8 characters" in err.value.detail
    message = client.adduser(username, "foobar12")
    assert f"User added: username='{username}' password='foobar12' superuser=False" == message


def test_deluser(admin: Client, username: str) -> None:
    client = admin
    _ = client.adduser(username, "foobar12")
    message = client.deluser(username)
    assert message == f"User deleted: {username}"


def test_listusers(admin: Client, username: str) -> None:
    client = admin
    users = client.listusers()
    # The 2026 server no longer sends 'hashed_password' (the seed's list has it).
    assert sorted(users[0].keys()) == ["email", "id", "is_active", "is_superuser", "is_verified"]
    _ = client.adduser(username, "foobar12")
    updated_users = client.listusers()
    assert len(users) + 1 == len(updated_users)
    user_info = client.listusers(username)
    assert user_info[0]["is_superuser"] is False
    superuser_info = client.listusers("admin@example.com")  # the seed's superuser@example.com
    assert superuser_info[0]["is_superuser"] is True


def test_lazyexpr(seed_user: Client, root_example: Path) -> None:
    client = seed_user
    src_path = "@personal/dir42/ds-4d.b2nd"
    path = client.upload(root_example / "dir1/ds-2d.b2nd", src_path)
    result = client.lazyexpr("example-expr", "a + a", {"a": path})
    assert result == PurePosixPath("@personal/example-expr.b2nd")
    assert repr(result) == "PurePosixPath('@personal/example-expr.b2nd')"
    assert "example-expr.b2nd" in client.get_list("@personal")
    np.testing.assert_array_equal(client.fetch(result), 2 * np.arange(100 * 200).reshape(100, 200))


def test_append(seed_user: Client, public_dir: str, root_example: Path) -> None:
    client = seed_user
    client.upload(root_example / "ds-1d.b2nd", f"{public_dir}/examples/ds-1d.b2nd")
    path = "@personal/ds-1d.b2nd"
    assert client.copy(f"{public_dir}/examples/ds-1d.b2nd", path) == PurePosixPath(
        "@personal/ds-1d.b2nd"
    )
    ndarray = blosc2.arange(0, 10)
    assert client.append(path, ndarray) == (1010,)
    np.testing.assert_array_equal(
        client.fetch(path, slice(995, None)),
        [995, 996, 997, 998, 999, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    )
    client.remove(public_dir)


@pytest.mark.parametrize(
    ("method", "combine", "shape"),
    [
        ("concatenate", np.concatenate, (4, 3, 4, 5)),
        ("stack", np.stack, (2, 2, 3, 4, 5)),
    ],
)
def test_concatenate_and_stack(
    seed_user: Client, root_example: Path, method: str, combine, shape: tuple[int, ...]
) -> None:
    client = seed_user
    root = client.get("@personal")
    assert isinstance(root, Root)
    a = root.upload(root_example / "dir2/ds-4d.b2nd", "a.b2nd")
    assert repr(a) == "<Dataset: @personal/a.b2nd>"
    b = root.upload(root_example / "dir2/ds-4d.b2nd", "b.b2nd")
    assert repr(b) == "<Dataset: @personal/b.b2nd>"
    result = getattr(client, method)(
        ["@personal/a.b2nd", "@personal/b.b2nd"], "@personal/c.b2nd", axis=0
    )
    assert result == PurePosixPath("@personal/c.b2nd")
    got = client.fetch(result)
    assert got.shape == shape
    np.testing.assert_array_equal(got, combine([DS_4D, DS_4D], axis=0))


def test_copy(seed_user: Client, root_example: Path) -> None:
    client = seed_user
    src_path = "@personal/dir17/ds-4d.b2nd"
    _ = client.upload(root_example / "dir2/ds-4d.b2nd", src_path)
    copy_path = "@personal/dir83/ds-4d-copy.b2nd"
    copied_path = client.copy(src_path, copy_path)
    assert str(copied_path) == copy_path
    datasets = client.get_list("@personal")
    assert src_path.replace("@personal/", "") in datasets
    assert copy_path.replace("@personal/", "") in datasets


def test_get_info(anon_client: Client, example: str) -> None:
    client = anon_client
    assert client.subscribe("@public") == "Ok"
    info = client.get_info(f"{example}/ds-2d-fields.b2nd")
    # The seed lists these six keys; the 2026 server adds 'accept_ranges' after them.
    assert list(info.keys())[:6] == ["shape", "chunks", "blocks", "dtype", "schunk", "mtime"]
    assert set(info) - {"shape", "chunks", "blocks", "dtype", "schunk", "mtime"} <= {
        "accept_ranges"
    }
    assert info["shape"] == [100, 200]


def test_get_slice(anon_client: Client, example: str) -> None:
    got = anon_client.get_slice(f"{example}/ds-2d-fields.b2nd", (slice(0, 2), slice(0, 2)))[:]
    _assert_fields_equal(got, FIELDS_2X2)


def test_move(seed_user: Client, root_example: Path) -> None:
    client = seed_user
    path = "@personal/dir17/ds-4d.b2nd"
    _ = client.upload(root_example / "dir2/ds-4d.b2nd", path)
    newpath = "@personal/dir83/ds-4d-moved.b2nd"
    moved_path = client.move(path, newpath)
    assert str(moved_path) == newpath
    assert (path.replace("@personal/", "") in client.get_list("@personal")) is False


def test_remove(newcomer: Client, root_example: Path) -> None:
    client = newcomer
    path = "@personal/dir17/ds-4d.b2nd"
    _ = client.upload(root_example / "dir2/ds-4d.b2nd", path)
    removed_path = client.remove(path)
    assert removed_path == path
    assert client.get_list("@personal") == []


def test_unfold(seed_user: Client, data_dir: Path) -> None:
    client = seed_user
    with h5py.File(data_dir / "data.h5", "w") as h5:
        h5["x"] = np.arange(10)
    client.upload(data_dir / "data.h5", "@personal/dir/data.h5")
    assert client.unfold("@personal/dir/data.h5") == PurePosixPath("@personal/dir/data")
    assert "dir/data/x.b2nd" in client.get_list("@personal")


def test_file_object_for_readme(anon_client: Client, example: str) -> None:
    readme = anon_client.get(f"{example}/README.md")
    assert type(readme) is File
    assert readme.meta["nbytes"] == len("This is a simple example\n")
