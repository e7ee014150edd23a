"""Reading from the real server: info, stat, fetch, get_slice, get_chunk, download."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blosc2
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cat2sync import BadRequest, Client, NotFound, TransportError
from cat2sync.server import LocalServer

GRID = np.arange(40 * 30, dtype="f8").reshape(40, 30)


@pytest.fixture(scope="module")
def grid_local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("grid") / "grid.b2nd"
    blosc2.asarray(GRID, urlpath=str(path), mode="w", chunks=(10, 30), blocks=(5, 30))
    return path


@pytest.fixture(scope="module")
def grid(alice: Client, grid_local: Path) -> str:
    """A 40x30 float dataset in 4 chunks, shared by this module's read-only tests."""
    remote = f"@personal/t-{uuid.uuid4().hex[:10]}/grid.b2nd"
    alice.upload(grid_local, remote)
    return remote


# -- info and stat ---------------------------------------------------------------


def test_get_info_of_a_dataset(alice: Client, grid: str) -> None:
    info = alice.get_info(grid)
    assert {"shape", "chunks", "blocks", "dtype", "schunk", "mtime"} <= set(info)
    assert info["shape"] == [40, 30]
    assert info["chunks"] == [10, 30]
    assert info["blocks"] == [5, 30]
    assert info["dtype"] == "float64"
    assert info["schunk"]["nchunks"] == 4


def test_get_info_of_a_regular_file(alice: Client, remote_dir: str, data_dir: Path) -> None:
    text = data_dir / "notes.txt"
    text.write_bytes(b"line\n" * 1000)
    alice.upload(text, f"{remote_dir}/notes.txt")
    info = alice.get_info(f"{remote_dir}/notes.txt")
    assert "shape" not in info
    assert info["nbytes"] == 5000
    assert info["cbytes"] < 5000


@pytest.mark.needs_2026("a 2025 server cannot describe a folder (test_server_versions.py)")
def test_get_info_of_a_folder(alice: Client, remote_dir: str, data_dir: Path) -> None:
    text = data_dir / "notes.txt"
    text.write_bytes(b"line\n" * 1000)
    alice.upload(text, f"{remote_dir}/notes.txt")
    folder = alice.get_info(remote_dir)
    assert folder["kind"] == "group"
    assert folder["nfiles"] == 1
    assert alice.stat(remote_dir)[1] is None  # folders have no etag


def test_stat_gives_an_etag_for_files_that_changes_on_write(
    alice: Client, grid_local: Path, remote_dir: str
) -> None:
    grid = str(alice.upload(grid_local, f"{remote_dir}/grid.b2nd"))
    info, etag = alice.stat(grid)
    assert info["shape"] == [40, 30]
    assert etag
    alice.append(grid, np.zeros((2, 30)))
    info2, etag2 = alice.stat(grid)
    assert info2["shape"] == [42, 30]
    assert etag2 and etag2 != etag


# -- fetch and get_slice ----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (None, GRID),
        (3, GRID[3]),
        (-1, GRID[-1]),
        (slice(5, 12), GRID[5:12]),  # a bare slice applies to axis 0
        ((slice(1, 3), slice(2, 4)), GRID[1:3, 2:4]),
        ((slice(None), 7), GRID[:, 7]),
        ((2, 5), GRID[2, 5]),
        ((slice(-3, None), slice(None, 2)), GRID[-3:, :2]),
        ((slice(0, 40, 7), slice(1, 30, 4)), GRID[0:40:7, 1:30:4]),
        ([slice(8, 9), slice(0, 30)], GRID[8:9, 0:30]),
        ((np.int64(4), slice(None, None)), GRID[4, :]),
        ((slice(50, 60),), GRID[50:60]),  # out of range: empty, as in NumPy
    ],
)
def test_fetch_matches_numpy_indexing(alice: Client, grid: str, key, expected) -> None:
    got = alice.fetch(grid, key)
    assert np.shape(got) == expected.shape
    np.testing.assert_array_equal(got, expected)


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.tuples(
        st.integers(-45, 45) | st.none(),
        st.integers(-45, 45) | st.none(),
        st.integers(1, 5) | st.none(),
    ),
    cols=st.tuples(
        st.integers(-35, 35) | st.none(),
        st.integers(-35, 35) | st.none(),
        st.integers(1, 5) | st.none(),
    ),
)
def test_get_slice_agrees_with_numpy_for_any_slices(
    alice: Client, grid: str, rows: tuple, cols: tuple
) -> None:
    key = (slice(*rows), slice(*cols))
    np.testing.assert_array_equal(alice.get_slice(grid, key, as_blosc2=False), GRID[key])


def test_get_slice_as_blosc2_or_numpy(alice: Client, grid: str) -> None:
    as_b2 = alice.get_slice(grid, (slice(1, 3), slice(2, 4)))
    assert isinstance(as_b2, blosc2.NDArray)
    np.testing.assert_array_equal(as_b2[:], GRID[1:3, 2:4])
    as_np = alice.get_slice(grid, (slice(1, 3), slice(2, 4)), as_blosc2=False)
    assert type(as_np) is np.ndarray
    np.testing.assert_array_equal(as_np, GRID[1:3, 2:4])


def test_fetch_of_a_structured_dataset_and_its_fields(
    alice: Client, remote_dir: str, make_b2nd, fields_array
) -> None:
    remote = f"{remote_dir}/fields.b2nd"
    alice.upload(make_b2nd("fields.b2nd", fields_array), remote)
    part = alice.fetch(remote, (slice(0, 2), slice(0, 2)))
    assert part.dtype == fields_array.dtype
    np.testing.assert_array_equal(part, fields_array[:2, :2])
    field_b = alice.get_slice(remote, field="b", as_blosc2=False)
    np.testing.assert_array_equal(field_b, fields_array["b"])
    field_a = alice.get_slice(remote, (slice(0, 1),), field="a")  # key is ignored with field
    assert isinstance(field_a, blosc2.NDArray)
    np.testing.assert_array_equal(field_a[:], fields_array["a"])


def test_field_of_a_structured_dataset_that_does_not_exist(
    alice: Client, remote_dir: str, make_b2nd, fields_array
) -> None:
    remote = f"{remote_dir}/fields.b2nd"
    alice.upload(make_b2nd("fields.b2nd", fields_array), remote)
    with pytest.raises(BadRequest) as err:
        alice.get_slice(remote, field="zz")
    assert "zz" in str(err.value)
    assert err.value.path == remote


def test_field_of_a_plain_array_is_a_bad_request(alice: Client, grid: str) -> None:
    with pytest.raises(BadRequest) as err:
        alice.get_slice(grid, field="a")
    assert "'a'" in err.value.detail
    assert err.value.path == grid


def test_fetch_of_a_missing_dataset(alice: Client, remote_dir: str) -> None:
    with pytest.raises(NotFound):
        alice.fetch(f"{remote_dir}/missing.b2nd")


# -- get_chunk --------------------------------------------------------------------


def test_get_chunk_is_the_stored_chunk(alice: Client, grid: str, grid_local: Path) -> None:
    local = blosc2.open(str(grid_local))
    for i in range(local.schunk.nchunks):
        remote_chunk = alice.get_chunk(grid, i)
        assert remote_chunk == local.schunk.get_chunk(i)
        assert blosc2.decompress(remote_chunk) == GRID[10 * i : 10 * (i + 1)].tobytes()


@pytest.mark.parametrize("nchunk", [4, 100])
def test_get_chunk_out_of_range(alice: Client, grid: str, nchunk: int) -> None:
    with pytest.raises(BadRequest) as err:
        alice.get_chunk(grid, nchunk)
    assert str(nchunk) in err.value.detail
    assert alice.get_chunk(grid, 3)  # the connection still works afterwards


# -- download ---------------------------------------------------------------------


def test_download_of_a_dataset_is_byte_identical(
    alice: Client, grid: str, grid_local: Path, tmp_path: Path
) -> None:
    out = alice.download(grid, tmp_path / "copy.b2nd")
    assert out == tmp_path / "copy.b2nd"
    assert out.read_bytes() == grid_local.read_bytes()


def test_download_of_a_regular_file_gives_the_original_bytes(
    alice: Client, server: LocalServer, remote_dir: str, data_dir: Path, tmp_path: Path
) -> None:
    original = "".join(f"line {i}: ünïcödé\n" for i in range(3000)).encode()
    (data_dir / "notes.txt").write_bytes(original)
    alice.upload(data_dir / "notes.txt", f"{remote_dir}/notes.txt")
    # Stored compressed, as <name>.b2, in alice's personal area on the server.
    rel = remote_dir.removeprefix("@personal/")
    stored = list((server.state_dir / "state" / "personal").glob(f"*/{rel}/notes.txt.b2"))
    assert len(stored) == 1
    assert len(stored[0].read_bytes()) < len(original)
    assert alice.get_list(remote_dir) == ["notes.txt"]
    out = alice.download(f"{remote_dir}/notes.txt", tmp_path / "out" / "notes.txt")
    assert out.read_bytes() == original
    assert list(out.parent.iterdir()) == [out]  # no temporary files left behind


def test_download_defaults_to_the_remote_path_below_cwd(
    alice: Client, grid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = alice.download(grid)
    assert out == Path(grid)
    assert not out.is_absolute()
    np.testing.assert_array_equal(blosc2.open(str(tmp_path / grid))[:], GRID)


def test_download_into_an_existing_directory(alice: Client, grid: str, tmp_path: Path) -> None:
    target = tmp_path / "here"
    target.mkdir()
    out = alice.download(grid, target)
    assert out == target / "grid.b2nd"
    np.testing.assert_array_equal(blosc2.open(str(out))[:], GRID)


def test_download_of_a_missing_file_writes_nothing(
    alice: Client, remote_dir: str, tmp_path: Path
) -> None:
    with pytest.raises(NotFound):
        alice.download(f"{remote_dir}/missing.b2nd", tmp_path / "missing.b2nd")
    assert list(tmp_path.iterdir()) == []


class _BrokenBody(httpx.SyncByteStream):
    """Yields the first piece of a body, then fails as a dropped connection does."""

    def __init__(self, inner: httpx.SyncByteStream) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        for part in self._inner:
            yield part[:100]
            raise httpx.ReadError("connection reset by peer (injected)")

    def close(self) -> None:
        self._inner.close()


class _BreakDownloads(httpx.BaseTransport):
    """A real connection whose download bodies break after the first bytes."""

    def __init__(self) -> None:
        self._real = httpx.HTTPTransport()
        self.broken = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._real.handle_request(request)
        # Datasets stream from /api/fetch, regular files from /api/download.
        if request.url.path.startswith(("/api/download/", "/api/fetch/")):
            self.broken += 1
            response.stream = _BrokenBody(response.stream)  # type: ignore[arg-type]
        return response

    def close(self) -> None:
        self._real.close()


@pytest.mark.parametrize("name", ["grid.b2nd", "notes.txt"])
def test_interrupted_download_leaves_no_partial_file(
    server: LocalServer,
    alice: Client,
    grid_local: Path,
    remote_dir: str,
    name: str,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    (data_dir / "notes.txt").write_bytes(b"x" * 100_000)
    alice.upload(data_dir / "notes.txt", f"{remote_dir}/notes.txt")
    alice.upload(grid_local, f"{remote_dir}/grid.b2nd")
    target = tmp_path / "out"
    target.mkdir()
    (target / name).write_bytes(b"previous content")
    breaker = _BreakDownloads()
    with (
        Client(server.url, ("alice@example.com", "alicepass1"), transport=breaker) as flaky,
        pytest.raises(TransportError) as err,
    ):
        flaky.download(f"{remote_dir}/{name}", target)
    breaker.close()
    assert err.value.path == f"{remote_dir}/{name}"
    assert breaker.broken == 2  # retried once from the start, then gave up
    assert [p.name for p in target.iterdir()] == [name]
    assert (target / name).read_bytes() == b"previous content"


def test_download_of_a_dataset_with_a_non_latin1_name(
    alice: Client, remote_dir: str, make_b2nd: Any, tmp_path: Path
) -> None:
    # The server answers 500 to /api/download for such names; the client fetches instead.
    local = make_b2nd("src.b2nd", np.arange(1000).reshape(100, 10))
    remote = f"{remote_dir}/データ.b2nd"
    alice.upload(local, remote)
    dest = alice.download(remote, tmp_path / "out.b2nd")
    assert dest.read_bytes() == local.read_bytes()


def test_download_of_a_regular_file_with_a_non_latin1_name(
    alice: Client, remote_dir: str, tmp_path: Path
) -> None:
    # No fetch for regular files: the client rebuilds the stored frame from its chunks.
    body = bytes(range(256)) * 40_000 + "Fe₂O₃".encode()  # several MB, ends mid-block
    local = tmp_path / "src.bin"
    local.write_bytes(body)
    remote = f"{remote_dir}/試料 ✓.bin"
    alice.upload(local, remote)
    dest = alice.download(remote, tmp_path / "out.bin")
    assert dest.read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "src.bin"]


# -- reads of @public go without the login cookie ------------------------------------------


class _CookieSpy(httpx.BaseTransport):
    """A real connection that notes, per request path, whether a login cookie went along."""

    def __init__(self) -> None:
        self._real = httpx.HTTPTransport()
        self.cookie_by_path: dict[str, bool] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.cookie_by_path[request.url.path] = "c2subauth=" in request.headers.get("cookie", "")
        return self._real.handle_request(request)

    def close(self) -> None:
        self._real.close()


def test_reads_of_public_go_without_the_login_cookie(
    server: LocalServer, grid_local: Path, public_dir: str, tmp_path: Path
) -> None:
    # Checking a cookie costs the server as much CPU as a small read; @public needs none.
    spy = _CookieSpy()
    with Client(server.url, ("alice@example.com", "alicepass1"), transport=spy) as client:
        public, personal = f"{public_dir}/grid.b2nd", f"@personal/t-{uuid.uuid4().hex[:10]}/g.b2nd"
        for remote in (public, personal):
            client.upload(grid_local, remote)
            assert client.get_list(remote.rsplit("/", 1)[0]) == [remote.rsplit("/", 1)[1]]
            assert client.get_info(remote)["shape"] == list(GRID.shape)
            np.testing.assert_array_equal(client.fetch(remote, slice(2, 5)), GRID[2:5])
            assert client.get_chunk(remote, 1)
            out = client.download(remote, tmp_path / remote.replace("/", "_"))
            assert out.read_bytes() == grid_local.read_bytes()
        client.remove(public_dir)
    reads = {
        path: sent
        for path, sent in spy.cookie_by_path.items()
        if path.startswith(
            ("/api/list/", "/api/info/", "/api/fetch/", "/api/chunk/", "/api/download/")
        )
    }
    public_reads = {path for path in reads if path.split("/", 3)[3].startswith("@public/")}
    assert len(public_reads) == len(reads) - len(public_reads) == 4  # list, info, fetch, chunk
    assert not any(reads[path] for path in public_reads)  # none carried the cookie
    assert all(sent for path, sent in reads.items() if path not in public_reads)
    # writes to @public still need it
    assert spy.cookie_by_path[f"/api/upload/{public_dir}/grid.b2nd"]


def test_a_public_read_of_a_name_that_only_starts_like_public_keeps_the_cookie() -> None:
    from cat2sync.client._transport import _is_public_read

    assert _is_public_read("GET", "/api/info/@public/x.b2nd")
    assert _is_public_read("GET", "/api/list/@public")
    assert _is_public_read("POST", "/api/fetch/@public/x.b2nd")
    assert not _is_public_read("GET", "/api/info/@publicity/x.b2nd")
    assert not _is_public_read("POST", "/api/remove/@public/x.b2nd")
    assert not _is_public_read("GET", "/api/info/@shared/x.b2nd")
