"""The Caterva2 client: the seed API (``caterva2.Client``) on top of one pooled httpx client."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import blosc2
import httpx
import numpy as np

from ..errors import BadRequest, NotFound, RemoteError, ServerError, TransportError, Unsupported
from ._features import ServerFeatures
from ._files import TEMP_PREFIX, atomic_writer, is_native, unpack_frame
from ._keys import field_names, slice_param
from ._objects import Dataset, File, Group, Root
from ._paths import RemotePath
from ._transport import (
    DEFAULT_WORK_TIMEOUT,
    Credentials,
    RequestObserver,
    TransferStats,
    Transport,
    api_path,
)

__all__ = ["Client"]

_SIDECAR_SUFFIXES = (".b2lock",)
_SAFE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_STREAM_CHUNK = 1 << 20
_FETCHABLE = frozenset({".b2nd", ".b2frame"})  # a whole fetch sends them as stored
_HDF5 = frozenset({".h5", ".hdf5"})
# Never in a user listing: the users' own database carries it (Caterva2 2025 sends it).
_PRIVATE_USER_KEYS = frozenset({"hashed_password"})


def _credentials(auth: Any) -> Credentials | None:
    if auth is None:
        return None
    if isinstance(auth, Credentials):
        return auth
    if isinstance(auth, tuple | list) and len(auth) == 2:
        return Credentials(str(auth[0]), str(auth[1]))
    username, password = getattr(auth, "username", None), getattr(auth, "password", None)
    if username is None or password is None:
        raise TypeError("auth must be (username, password) or have .username and .password")
    return Credentials(str(username), str(password))


def _frame_to_object(data: bytes) -> blosc2.NDArray | blosc2.SChunk:
    """Decode a Blosc2 cframe from the server: an NDArray when it has one, else an SChunk."""
    try:
        return blosc2.ndarray_from_cframe(data)
    except (ValueError, RuntimeError, KeyError):
        return blosc2.schunk_from_cframe(data)


def _as_numpy(obj: blosc2.NDArray | blosc2.SChunk) -> np.ndarray | bytes:
    if isinstance(obj, blosc2.NDArray):
        array: np.ndarray = obj[()] if obj.ndim == 0 else obj[:]
        return array
    raw: bytes = obj[:]
    return raw


class Client:
    """A client for one Caterva2 server.

    :param urlbase: the server's base URL, e.g. ``"http://127.0.0.1:8000"``.
    :param auth: ``(username, password)`` to log in (at construction: a wrong password
        fails here, in one line); ``None`` for anonymous access to ``@public``.
    :param timeout: seconds to wait for connections and for quick answers (metadata).
    :param work_timeout: read timeout for calls that make the server work (upload,
        append, download, slices, lazy expressions, copy/move): the server answers them
        only when done and may block for long.
    :param retries: how often an idempotent request is retried on a connection error or
        a 5xx, with exponential backoff and jitter.
    :param verify: TLS verification: True, False, or a CA bundle path.
    :param transport: an httpx transport to use instead of a real connection (tests
        inject faults with it).
    :param observer: called after every HTTP exchange with its API verb and outcome
        (the daemon's metrics count requests with it).
    """

    def __init__(
        self,
        urlbase: str,
        auth: Any = None,
        timeout: float | None = 5,
        *,
        work_timeout: float | None = DEFAULT_WORK_TIMEOUT,
        retries: int = 3,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self.urlbase = urlbase.rstrip("/")
        self.timeout = timeout
        self._subscribed: set[str] = set()
        self._generation = 0  # bumped by every write; objects refresh cached info on change
        self._t = Transport(
            self.urlbase,
            credentials=_credentials(auth),
            timeout=timeout,
            work_timeout=work_timeout,
            retries=retries,
            verify=verify,
            transport=transport,
            observer=observer,
        )
        self._features = ServerFeatures(self._t)

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections."""
        self._t.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        who = self._t.credentials.username if self._t.credentials else "anonymous"
        return f"<Client {self.urlbase} as {who}>"

    @property
    def stats(self) -> TransferStats:
        """Requests made and body bytes sent and received so far."""
        return self._t.stats

    @property
    def generation(self) -> int:
        """Counts the writes made through this client (used to refresh cached info)."""
        return self._generation

    def _wrote(self) -> None:
        self._generation += 1

    def _get_json(self, endpoint: str, path: str | None = None, **kw: Any) -> Any:
        url = f"/api/{endpoint}" + (f"/{api_path(path)}" if path is not None else "")
        return self._t.request("GET", url, path=path, **kw).json()

    def _post_json(
        self,
        endpoint: str,
        path: str | None = None,
        *,
        about: str | None = None,
        work: bool = True,
        **kw: Any,
    ) -> Any:
        """POST to ``/api/<endpoint>[/<path>]``; ``about`` names the subject in errors."""
        url = f"/api/{endpoint}" + (f"/{api_path(path)}" if path is not None else "")
        try:
            return self._t.request("POST", url, path=about or path, work=work, **kw).json()
        finally:
            self._wrote()

    # -- roots, listing, info --------------------------------------------------

    def get(self, path: str | PurePosixPath) -> Root | File:
        """An object for a root, a directory, a file or a dataset."""
        clean = str(path).strip("/")
        if "/" not in clean:
            return Root(self, clean)
        info = self.get_info(clean)
        if "shape" in info:
            return Dataset(self, clean, info)
        if info.get("kind") == "group":
            return Group(self, clean, info)
        return File(self, clean, info)

    def get_roots(self) -> dict[str, dict[str, Any]]:
        """Available roots: ``{name: {"name", "http", "subscribed"}}``.

        ``subscribed`` tells whether :meth:`subscribe` was called for the root on this
        client; ``http`` is the ``host:port`` that serves it.
        """
        roots: dict[str, dict[str, Any]] = self._get_json("roots")
        if self._t.logged_in and "@personal" not in roots:
            self._t.login()  # an expired cookie makes the server treat us as anonymous
            roots = self._get_json("roots")
        endpoint = urlsplit(self.urlbase).netloc
        return {
            name: {**meta, "http": endpoint, "subscribed": name in self._subscribed}
            for name, meta in roots.items()
        }

    def subscribe(self, root: str) -> str:
        """Mark ``root`` as subscribed; returns ``'Ok'``.

        Caterva2 2026 has no server-side subscriptions (every root is served
        directly), so this checks that the root exists and remembers it for
        :meth:`get_roots`.
        """
        name = str(root).strip("/")
        if name not in self.get_roots():  # get_roots logs in again if the cookie expired
            raise NotFound(f"no root named {name!r} on {self.urlbase}", path=name)
        self._subscribed.add(name)
        return "Ok"

    def get_list(self, path: str | PurePosixPath) -> list[str]:
        """Files below ``path`` (recursive, relative to it), without server sidecars."""
        names: list[str] = self._get_json("list", str(path))
        return [n for n in names if not n.endswith(_SIDECAR_SUFFIXES)]

    def get_info(self, path: str | PurePosixPath) -> dict[str, Any]:
        """Metadata of a dataset, file or directory, as the server reports it.

        A Caterva2 2025 server cannot describe a directory: that is :class:`Unsupported`.
        """
        spath = str(path)
        try:
            info: dict[str, Any] = self._get_json("info", spath)
        except ServerError:
            self._check_describable(spath)
            raise
        return info

    def _check_describable(self, path: str) -> None:
        """Raise :class:`Unsupported` if ``path`` is a folder the server cannot describe."""
        if not self._features.legacy:
            return
        listing = self.get_list(path)
        if listing and listing != [PurePosixPath(path).name]:
            raise Unsupported(
                "this server (Caterva2 2025) cannot describe a folder; list it instead",
                path=path,
            )

    def stat(self, path: str | PurePosixPath) -> tuple[dict[str, Any], str | None]:
        """``(info, etag)``: the metadata plus the server's change tag.

        The tag is None where the server has none (folders, HDF5 files, stored lazy
        expressions on a 2025 server): then nothing tells that the entry did not change.
        """
        spath = str(path)
        if self._features.known_legacy:
            return self._stat_legacy(spath)
        resp = self._t.request("GET", "/api/info/" + api_path(spath), path=spath)
        info, etag = resp.json(), resp.headers.get("etag")
        if etag is not None:
            self._features.modern()
        elif info.get("kind") != "group" and self._features.legacy:
            return self._stat_legacy(spath)
        return info, etag

    def _stat_legacy(self, path: str) -> tuple[dict[str, Any], str | None]:
        """``stat`` where ``info`` carries no ETag (Caterva2 2025): the server's own ETag
        comes with a whole fetch, so one byte of that is asked for first.

        First, so that a change in between shows as a newer info with an older tag: the
        next ``stat`` then sees a tag it has not recorded (the other order could pair a
        new tag with old metadata, and the change would be missed for good).
        """
        self._features.note(
            "etag",
            "info carries no ETag on this server (Caterva2 2025): each stat asks for one "
            "byte of a whole fetch to get the server's ETag (two requests instead of one)",
        )
        etag = self._fetch_etag(path) if _fetch_sends_stored(path) else None
        info = self.get_info(path)
        if "expression" in info:  # computed on every read: its file tells nothing of its operands
            etag = None
        return info, etag

    def _fetch_etag(self, path: str) -> str | None:
        """The ETag of a whole fetch of ``path``, for one byte of it (None when it has none)."""
        try:
            resp = self._t.request(
                "GET",
                "/api/fetch/" + api_path(path),
                path=path,
                headers={"Range": "bytes=0-0"},
                stream=True,
                retry_500=False,
            )
        except (ServerError, BadRequest):
            return None  # not served from its file (a folder, say): no tag, so never "unchanged"
        resp.close()  # an expression computed for us would send its whole result: not read
        etag: str | None = resp.headers.get("etag")
        return etag

    # -- reading data ----------------------------------------------------------

    def fetch(self, path: str | PurePosixPath, slice_: Any = None) -> Any:
        """The whole dataset, or ``slice_`` of it, as a NumPy array."""
        return self.get_slice(path, slice_, as_blosc2=False)

    def get_slice(
        self,
        path: str | PurePosixPath,
        key: Any = None,
        as_blosc2: bool = True,
        field: str | None = None,
    ) -> Any:
        """A slice of a dataset as a Blosc2 object (default) or a NumPy array.

        :param key: int, slice or tuple of them (a bare one applies to the first
            axis), or a str, read as a filter expression on a structured dataset.
        :param field: one field of a structured dataset; ``key`` is ignored then.
        """
        params: dict[str, str] = {}
        if field is not None:
            params["field"] = field
        elif isinstance(key, str):
            params["filter"] = key
        else:
            param = slice_param(key)
            if param is not None:
                params["slice_"] = param
        spath = str(path)
        try:
            resp = self._t.request(
                "GET",
                "/api/fetch/" + api_path(spath),
                path=spath,
                params=params,
                work=True,
                retry_500="field" not in params and "filter" not in params,
            )
        except ServerError:
            # The server answers 500 for a field of a plain array (and a 2025 server for
            # a filter on one, too).
            if field is not None:
                self._check_field(spath, field)
            elif "filter" in params:
                self._check_field(spath, None)
            raise
        obj = _frame_to_object(resp.content)
        return obj if as_blosc2 else _as_numpy(obj)

    def _check_field(self, path: str, field: str | None) -> None:
        """Refuse ``field`` (None: any filter) unless the dataset has such fields."""
        names = field_names(self.get_info(path).get("dtype"))
        if field is None and not names:
            raise BadRequest("a filter needs a dataset with fields (it has none)", path=path)
        if field is not None and field not in names:
            raise BadRequest(
                f"no field {field!r} (fields: {', '.join(names) or 'none'})", path=path
            )

    def get_chunk(self, path: str | PurePosixPath, nchunk: int) -> bytes:
        """Chunk ``nchunk`` of a dataset, compressed, exactly as the server stores it."""
        spath = str(path)
        try:
            resp = self._t.request(
                "GET",
                "/api/chunk/" + api_path(spath),
                path=spath,
                params={"nchunk": int(nchunk)},
                work=True,
                retry_500=False,
            )
        except ServerError:
            self._check_nchunk(spath, nchunk)  # the server answers 500 when out of range
            raise
        return resp.content

    def _check_nchunk(self, path: str, nchunk: int) -> None:
        info = self.get_info(path)
        nchunks = info.get("schunk", info).get("nchunks")
        if nchunks is not None and not 0 <= nchunk < nchunks:
            raise BadRequest(f"chunk {nchunk} out of range (the dataset has {nchunks})", path=path)

    def download(
        self, dataset: str | PurePosixPath, localpath: str | os.PathLike[str] | None = None
    ) -> Path:
        """Download a file or dataset; returns the local path.

        ``localpath`` defaults to the remote path below the current directory; an
        existing directory receives the file under its own name. Datasets arrive as
        the stored Blosc2 file; regular files arrive as their original bytes (they
        travel compressed and are decompressed here). The file appears at its final
        name only once complete.
        """
        remote = str(dataset).strip("/")
        dest = Path(remote if localpath is None else localpath)
        if dest.is_dir():
            dest = dest / PurePosixPath(remote).name
        self.download_to(remote, dest)
        return dest

    def download_to(
        self, remote: str, dest: str | os.PathLike[str], *, durable: bool = False
    ) -> int:
        """Stream ``remote`` into ``dest`` atomically; returns the bytes written.

        :param durable: flush to disk before the file appears under its name.
        """
        hdf5 = PurePosixPath(remote).suffix.lower() in _HDF5
        if hdf5 and self._features.known_legacy:
            raise _no_hdf5_downloads(remote)
        target = Path(dest)
        try:
            return self._t.restartable(
                remote, lambda: self._stream_download(remote, target, durable)
            )
        except TransportError as exc:
            # A 2025 server starts sending an HDF5 file, then fails: every time.
            if hdf5 and self._features.legacy:
                raise _no_hdf5_downloads(remote) from exc
            raise

    def fetch_to(
        self, remote: str, dest: str | os.PathLike[str], *, durable: bool = False
    ) -> tuple[int, str | None]:
        """Stream a whole dataset (``.b2nd``, ``.b2frame``), as stored, into ``dest``
        atomically; returns the bytes written and the server's ETag for them.

        One request where ``stat`` + :meth:`download_to` take two: what a mirror wants
        for a dataset it has never seen.
        """
        target = Path(dest)

        def attempt() -> tuple[int, str | None]:
            resp = self._t.request(
                "GET", "/api/fetch/" + api_path(remote), path=remote, stream=True, work=True
            )
            try:
                with atomic_writer(target, durable=durable) as out:
                    return self._copy_body(resp, out), resp.headers.get("etag")
            finally:
                resp.close()

        return self._t.restartable(remote, attempt)

    def _stream_download(self, remote: str, dest: Path, durable: bool) -> int:
        opened = self._open_download(remote)
        if opened is None:
            return self._download_by_chunks(remote, dest, durable)
        resp, packed = opened
        try:
            if not packed:
                with atomic_writer(dest, durable=durable) as out:
                    return self._copy_body(resp, out)
            with self._scratch_folder(dest) as tmp:
                frame = tmp / "frame.b2"
                with frame.open("wb") as raw:
                    self._copy_body(resp, raw)
                return self._write_unpacked(frame, dest, durable)
        finally:
            resp.close()

    def _open_download(self, remote: str) -> tuple[httpx.Response, bool] | None:
        """The response that streams ``remote``'s bytes, and whether they are its stored
        ``.b2`` frame (decoded here); None when only :meth:`_download_by_chunks` can get it."""
        if PurePosixPath(remote).suffix in _FETCHABLE:
            # A whole fetch sends the stored file straight from disk (the download
            # endpoint reads it into the server's memory first): same bytes, faster.
            try:
                return self._fetch_whole(remote), False
            except ServerError:
                pass  # the server cannot open it as Blosc2; its download still sends it
        elif not is_native(remote) and self._features.blosc2_downloads is False:
            try:
                return self._fetch_whole(remote), True
            except BadRequest:
                pass  # this server fetches no regular file: its download sends the bytes
        packs = not is_native(remote)
        try:
            resp = self._t.request(
                "GET",
                "/api/download/" + api_path(remote),
                path=remote,
                headers={"Accept-Encoding": "blosc2"} if packs else None,
                stream=True,
                work=True,
                retry_500=remote.isascii(),
            )
        except ServerError:
            if remote.isascii() or PurePosixPath(remote).suffix in _FETCHABLE:
                raise
            # The server fails (500) to put a non-Latin-1 name in its download headers.
            return None
        packed = resp.headers.get("content-encoding") == "blosc2"
        if packs and not packed:
            self._no_blosc2_downloads()
        return resp, packed

    def _fetch_whole(self, remote: str) -> httpx.Response:
        """A whole fetch: the stored file, byte for byte (for a regular file on a 2025
        server, its compressed ``.b2`` frame)."""
        return self._t.request(
            "GET",
            "/api/fetch/" + api_path(remote),
            path=remote,
            stream=True,
            work=True,
            retry_500=False,
        )

    def _no_blosc2_downloads(self) -> None:
        self._features.blosc2_downloads = False
        self._features.note(
            "download",
            "this server sends regular files decompressed whatever the client asks "
            "(Caterva2 2025): from now on they are fetched as their stored compressed "
            "frame and decompressed here",
        )

    def _download_by_chunks(self, remote: str, dest: Path, durable: bool) -> int:
        """A regular file the download endpoint cannot serve: rebuild its stored frame
        from its compressed chunks (whose answers carry no file name), then decode it."""
        info = self.get_info(remote)
        typesize = int(info.get("cparams", {}).get("typesize", info.get("typesize", 1)))
        with self._scratch_folder(dest) as tmp:
            frame = tmp / "frame.b2"
            schunk = blosc2.SChunk(
                chunksize=int(info["chunksize"]),
                urlpath=str(frame),
                mode="w",
                cparams={"typesize": typesize},
            )
            for nchunk in range(int(info["nchunks"])):
                schunk.insert_chunk(nchunk, self.get_chunk(remote, nchunk))
            if schunk.nbytes != info.get("nbytes", schunk.nbytes):
                raise BadRequest("the chunks add up to another size than the file's", path=remote)
            del schunk
            return self._write_unpacked(frame, dest, durable)

    @staticmethod
    @contextlib.contextmanager
    def _scratch_folder(dest: Path) -> Iterator[Path]:
        """A private folder beside ``dest`` (same file system, removed afterwards)."""
        with tempfile.TemporaryDirectory(
            dir=dest.parent if dest.parent.exists() else None, prefix=TEMP_PREFIX
        ) as tmp:
            yield Path(tmp)

    @staticmethod
    def _write_unpacked(frame: Path, dest: Path, durable: bool) -> int:
        with atomic_writer(dest, durable=durable) as out:
            unpack_frame(frame, out)
            return out.tell()

    @staticmethod
    def _copy_body(resp: httpx.Response, out: BinaryIO) -> int:
        # The body is read raw: "Content-Encoding: blosc2" is not for httpx to decode.
        total = 0
        for part in resp.iter_raw(_STREAM_CHUNK):
            out.write(part)
            total += len(part)
        return total

    # -- writing data ----------------------------------------------------------

    def upload(
        self,
        localpath: str | os.PathLike[str],
        dataset: str | PurePosixPath,
    ) -> RemotePath:
        """Upload a local file (streamed from disk); returns its remote path.

        Regular files (not ``.b2nd``/``.b2frame``/``.b2``/``.h5``) are compressed by the
        server and stored as ``<name>.b2``, still addressed as ``<name>``.
        """
        local = Path(localpath)
        if not local.is_file():
            raise FileNotFoundError(f"no such local file: {local}")
        remote = str(dataset).strip("/")
        opened: list[BinaryIO] = []  # httpx does not close the files it sends

        def body() -> dict[str, Any]:
            opened.append(local.open("rb"))
            return {"files": {"file": (local.name, opened[-1])}}

        try:
            return RemotePath(self._post_json("upload", remote, body=body))
        finally:
            for fh in opened:
                fh.close()

    def append(self, remotepath: str | PurePosixPath, data: Any) -> tuple[int, ...]:
        """Append ``data`` along the first axis of a remote ``.b2nd``; returns the new shape."""
        remote = str(remotepath).strip("/")
        frame = (
            data.to_cframe()
            if isinstance(data, blosc2.NDArray)
            else blosc2.asarray(np.asarray(data)).to_cframe()
        )

        def body() -> dict[str, Any]:
            return {"files": {"file": ("append.b2nd", frame, "application/octet-stream")}}

        try:
            return tuple(self._post_json("append", remote, body=body))
        except BadRequest as exc:
            if "does not exist" in exc.detail:  # the server answers 400 for a missing target
                raise NotFound(exc.detail, path=remote, status=exc.status) from None
            raise

    def copy(self, src: str | PurePosixPath, dst: str | PurePosixPath) -> RemotePath:
        """Copy a dataset or directory; a ``dst`` without suffix is a directory."""
        return RemotePath(
            self._post_json("copy/", json={"src": str(src), "dst": str(dst)}, about=str(src))
        )

    def move(self, src: str | PurePosixPath, dst: str | PurePosixPath) -> RemotePath:
        """Move a dataset or directory; a ``dst`` without suffix is a directory."""
        return RemotePath(
            self._post_json("move/", json={"src": str(src), "dst": str(dst)}, about=str(src))
        )

    def remove(self, path: str | PurePosixPath) -> RemotePath:
        """Remove a dataset or file. A directory is removed **with its contents**."""
        return RemotePath(self._post_json("remove", str(path)))

    def unfold(self, remotepath: str | PurePosixPath) -> RemotePath:
        """Unfold an HDF5 file into a sibling directory of ``.b2nd`` datasets; returns it."""
        remote = PurePosixPath(str(remotepath).strip("/"))
        stem = self._post_json("unfold", str(remote))
        # The server answers with the bare stem; give back the directory's full path.
        return RemotePath(remote.parent / PurePosixPath(stem).name)

    # -- computing on the server -----------------------------------------------

    def lazyexpr(
        self,
        name: str,
        expression: str,
        operands: Mapping[str, Any] | None = None,
        compute: bool = False,
    ) -> RemotePath:
        """Create (or overwrite) ``@personal/<name>.b2nd`` from ``expression``.

        The result is always computed on the server (``compute`` is accepted for
        compatibility): server 2026.9.2 cannot read back an uncomputed expression.
        """
        _check_plain_name(name)
        body = self._lazyarr_body(name, expression, operands or {})
        with self._operands_checked(body["operands"]):
            return RemotePath(
                self._post_json("lazyexpr/", json=body, about=f"@personal/{name}.b2nd")
            )

    def lazyexpr_at(
        self, dst: str | PurePosixPath, expression: str, operands: Mapping[str, Any]
    ) -> RemotePath:
        """Like :meth:`lazyexpr`, but the result goes to any writable ``.b2nd`` path.

        A 2025 server computes it into ``@personal`` under a temporary name, then moves
        it into place (both on the server).
        """
        target = _b2nd_path(dst)
        body = self._lazyarr_body(None, expression, operands)
        with self._operands_checked(body["operands"]):
            try:
                return self._upload_lazyarr(target, body)
            except Unsupported:
                return self._compute_then_move(target, body)

    def _upload_lazyarr(self, target: str, body: dict[str, Any]) -> RemotePath:
        """``POST /api/upload_lazyarr``; :class:`Unsupported` where the server lacks it."""
        if not self._features.known_legacy:
            try:
                return RemotePath(self._post_json("upload_lazyarr", target, json=body))
            except NotFound:
                if not self._features.legacy:  # the route exists: a path is missing
                    raise
        self._features.note(
            "lazyarr",
            "this server has no /api/upload_lazyarr (Caterva2 2025): concatenate and "
            "stack use its /api/concat/ and /api/stack/ where they work; other results "
            "are computed into @personal, then moved on the server",
        )
        raise Unsupported("this server cannot compute into a path (Caterva2 2025)", path=target)

    def _compute_then_move(self, target: str, body: dict[str, Any]) -> RemotePath:
        """Compute into ``@personal/.cat2sync-…`` (what ``/api/lazyexpr/`` can), then move
        the result to ``target`` on the server; the temporary is removed if the move fails."""
        named = {**body, "name": f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}"}
        made = str(self._post_json("lazyexpr/", json=named, about=target))
        try:
            return self.move(made, target)
        except BaseException:
            with contextlib.suppress(RemoteError):
                self.remove(made)
            raise

    @contextlib.contextmanager
    def _operands_checked(self, operands: Mapping[str, str]) -> Iterator[None]:
        """Turn the server's 500 (or bare 404) for a missing operand into
        :class:`NotFound` for it."""
        try:
            yield
        except (ServerError, NotFound):
            for path in operands.values():
                self.get_info(path)  # raises NotFound naming the missing operand
            raise

    @staticmethod
    def _lazyarr_body(
        name: str | None,
        expression: str,
        operands: Mapping[str, Any],
    ) -> dict[str, Any]:
        return {
            "name": name,
            "expression": expression,
            "func": None,
            "dtype": None,
            "shape": None,
            "compute": True,
            "operands": {var: str(p) for var, p in operands.items()},
        }

    def concatenate(
        self, srcs: Sequence[str | PurePosixPath], dst: str | PurePosixPath, axis: int
    ) -> RemotePath:
        """Concatenate ``srcs`` along ``axis`` into ``dst``, computed on the server."""
        return self._combine("concat", srcs, dst, axis)

    def stack(
        self, srcs: Sequence[str | PurePosixPath], dst: str | PurePosixPath, axis: int
    ) -> RemotePath:
        """Stack ``srcs`` along a new ``axis`` into ``dst``, computed on the server."""
        return self._combine("stack", srcs, dst, axis)

    def _combine(
        self, func: str, srcs: Sequence[str | PurePosixPath], dst: str | PurePosixPath, axis: int
    ) -> RemotePath:
        if not srcs:
            raise BadRequest(f"{func}: no source datasets")
        target = _b2nd_path(dst)
        operands = {f"o{i}": str(src) for i, src in enumerate(srcs)}
        body = self._lazyarr_body(
            None, f"{func}([{', '.join(operands)}], axis={int(axis)})", operands
        )
        with self._operands_checked(operands):
            try:
                return self._upload_lazyarr(target, body)
            except Unsupported:
                return self._combine_on_legacy(func, target, body, int(axis))

    def _combine_on_legacy(
        self, func: str, target: str, body: dict[str, Any], axis: int
    ) -> RemotePath:
        """concat/stack on a 2025 server, through whichever of its routes works: its own
        endpoint, else the same expression computed into ``@personal`` and moved. An
        endpoint seen failing where the expression then worked is not tried again."""
        endpoint = f"{func}/"
        if endpoint in self._features.broken:
            return self._compute_then_move(target, body)
        srcs = list(body["operands"].values())
        try:
            return RemotePath(
                self._post_json(
                    endpoint, json={"srcs": srcs, "dst": target, "axis": axis}, about=target
                )
            )
        except ServerError:
            pass  # /api/concat/ fails with blosc2 >= 3.10, where the expression works
        result = self._compute_then_move(target, body)
        self._features.broken.add(endpoint)
        self._features.note(
            endpoint,
            f"/api/{endpoint} fails on this server (500): {func} is computed by "
            "/api/lazyexpr/ into @personal, then moved on the server",
        )
        return result

    # -- users -----------------------------------------------------------------

    def adduser(self, newuser: str, password: str | None = None, superuser: bool = False) -> str:
        """Add a user (superusers only); returns the server's message.

        Without ``password`` a random one is generated here and shown in the message
        (the server would create one that nobody can learn). Adding an existing user
        is an error instead of a silent success.
        """
        if self.listusers(newuser):
            raise BadRequest(f"user {newuser} already exists", path=newuser)
        password = password if password is not None else secrets.token_urlsafe(12)
        try:
            message: str = self._post_json(
                "adduser/",
                json={"username": newuser, "password": password, "superuser": superuser},
                about=newuser,
                work=False,
            )
        except BadRequest as exc:
            if "InvalidPassword" in exc.detail:
                raise BadRequest(
                    "password refused by the server (it needs at least 8 characters)",
                    path=newuser,
                    status=exc.status,
                ) from None
            raise
        return message

    def deluser(self, user: str) -> str:
        """Delete a user (superusers only); returns the server's message."""
        try:
            # A GET, but not idempotent: a retry after a lost answer would say "no user".
            message: str = self._get_json("deluser", user, idempotent=False)
        except BadRequest as exc:
            if "UserNotExists" in exc.detail:  # the server answers 400 for an unknown user
                raise NotFound(f"no user {user}", path=user, status=exc.status) from None
            raise
        self._wrote()
        return message

    def listusers(self, username: str | None = None) -> list[dict[str, Any]]:
        """All users, or the one named ``username`` (a list of dicts).

        Password hashes are left out (a 2025 server sends them; a 2026 one does not).
        """
        params = {"username": username} if username else None
        users: list[dict[str, Any]] = self._get_json("listusers/", params=params)
        return [{k: v for k, v in user.items() if k not in _PRIVATE_USER_KEYS} for user in users]


def _check_plain_name(name: str) -> None:
    if not name or not set(name) <= _SAFE_NAME_CHARS or name.startswith("."):
        raise BadRequest(f"not a plain dataset name: {name!r} (letters, digits, '_-.')")


def _fetch_sends_stored(path: str) -> bool:
    """Whether a 2025 server answers a whole fetch of ``path`` with its stored file (and
    so with the server's ETag): datasets, and regular files (stored as ``.b2`` frames)."""
    return PurePosixPath(path).suffix in _FETCHABLE or not is_native(path)


def _no_hdf5_downloads(remote: str) -> Unsupported:
    return Unsupported(
        "this server (Caterva2 2025) cannot send HDF5 files; unfold the file on the server "
        "and use its datasets instead",
        path=remote,
    )


def _b2nd_path(dst: str | PurePosixPath) -> str:
    target = str(dst).strip("/")
    if not PurePosixPath(target).suffix:
        target += ".b2nd"
    if not target.endswith(".b2nd"):
        raise BadRequest("the result of a computation must be a .b2nd dataset", path=target)
    return target
