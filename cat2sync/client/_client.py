"""The Caterva2 client: the seed API (``caterva2.Client``) on top of one pooled httpx client."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import blosc2
import httpx
import numpy as np

from ..errors import BadRequest, NotFound, ServerError, Timeout, TransportError
from ._files import atomic_writer, is_native, unpack_frame
from ._keys import field_names, slice_param
from ._objects import Dataset, File, Group, Root
from ._paths import RemotePath
from ._transport import DEFAULT_WORK_TIMEOUT, Credentials, TransferStats, Transport, api_path

__all__ = ["Client"]

_SIDECAR_SUFFIXES = (".b2lock",)
_SAFE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_STREAM_CHUNK = 1 << 20
_FETCHABLE = frozenset({".b2nd", ".b2frame"})  # a whole fetch sends them as stored


_T = TypeVar("_T")


def _retried(remote: str, transfer: Callable[[], _T]) -> _T:
    """Run a streamed transfer; a reset or stall mid-stream is retried once from the start."""
    for attempt in range(2):
        try:
            return transfer()
        except httpx.TimeoutException as exc:
            if attempt:
                raise Timeout(f"download stalled: {exc}", path=remote) from exc
        except httpx.TransportError as exc:
            if attempt:
                raise TransportError(f"download interrupted: {exc}", path=remote) from exc
    raise AssertionError("unreachable")


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
        (a ``RequestObserver``: the daemon's metrics count requests with it).
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
        observer: Callable[[str, str], None] | None = None,
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
        """Metadata of a dataset, file or directory, as the server reports it."""
        info: dict[str, Any] = self._get_json("info", str(path))
        return info

    def stat(self, path: str | PurePosixPath) -> tuple[dict[str, Any], str | None]:
        """``(info, etag)``: the metadata plus the server's change tag (None for folders)."""
        resp = self._t.request("GET", "/api/info/" + api_path(str(path)), path=str(path))
        return resp.json(), resp.headers.get("etag")

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
                retry_500=field is None,
            )
        except ServerError:
            if field is not None:  # the server answers 500 for a field of a plain array
                self._check_field(spath, field)
            raise
        obj = _frame_to_object(resp.content)
        return obj if as_blosc2 else _as_numpy(obj)

    def _check_field(self, path: str, field: str) -> None:
        names = field_names(self.get_info(path).get("dtype"))
        if field not in names:
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
        headers = {} if is_native(remote) else {"Accept-Encoding": "blosc2"}
        target = Path(dest)
        return _retried(remote, lambda: self._stream_download(remote, target, headers, durable))

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

        return _retried(remote, attempt)

    def _stream_download(
        self, remote: str, dest: Path, headers: dict[str, str], durable: bool
    ) -> int:
        resp = self._open_download(remote, headers)
        if resp is None:
            return self._download_by_chunks(remote, dest, durable)
        try:
            if resp.headers.get("content-encoding") != "blosc2":
                with atomic_writer(dest, durable=durable) as out:
                    return self._copy_body(resp, out)
            with self._scratch_folder(dest) as tmp:
                frame = tmp / "frame.b2"
                with frame.open("wb") as raw:
                    self._copy_body(resp, raw)
                return self._write_unpacked(frame, dest, durable)
        finally:
            resp.close()

    def _open_download(self, remote: str, headers: dict[str, str]) -> httpx.Response | None:
        """The response that streams ``remote``'s bytes, or None when only
        :meth:`_download_by_chunks` can get the file."""
        if PurePosixPath(remote).suffix in _FETCHABLE:
            # A whole fetch sends the stored file straight from disk (the download
            # endpoint reads it into the server's memory first): same bytes, faster.
            try:
                return self._t.request(
                    "GET",
                    "/api/fetch/" + api_path(remote),
                    path=remote,
                    stream=True,
                    work=True,
                    retry_500=False,
                )
            except ServerError:
                pass  # the server cannot open it as Blosc2; its download still sends it
        try:
            return self._t.request(
                "GET",
                "/api/download/" + api_path(remote),
                path=remote,
                headers=headers,
                stream=True,
                work=True,
                retry_500=remote.isascii(),
            )
        except ServerError:
            if remote.isascii() or PurePosixPath(remote).suffix in _FETCHABLE:
                raise
        # The server fails (500) to put a non-Latin-1 name in its download headers.
        return None

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
            dir=dest.parent if dest.parent.exists() else None, prefix=".cat2sync-"
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
        """Like :meth:`lazyexpr`, but the result goes to any writable ``.b2nd`` path."""
        target = _b2nd_path(dst)
        body = self._lazyarr_body(None, expression, operands)
        with self._operands_checked(body["operands"]):
            return RemotePath(self._post_json("upload_lazyarr", target, json=body))

    @contextlib.contextmanager
    def _operands_checked(self, operands: Mapping[str, str]) -> Iterator[None]:
        """Turn the server's 500 for a missing operand into :class:`NotFound` for it."""
        try:
            yield
        except ServerError:
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
        operands = {f"o{i}": str(src) for i, src in enumerate(srcs)}
        expression = f"{func}([{', '.join(operands)}], axis={int(axis)})"
        return self.lazyexpr_at(dst, expression, operands)

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
        """All users, or the one named ``username`` (a list of dicts)."""
        params = {"username": username} if username else None
        users: list[dict[str, Any]] = self._get_json("listusers/", params=params)
        return users


def _check_plain_name(name: str) -> None:
    if not name or not set(name) <= _SAFE_NAME_CHARS or name.startswith("."):
        raise BadRequest(f"not a plain dataset name: {name!r} (letters, digits, '_-.')")


def _b2nd_path(dst: str | PurePosixPath) -> str:
    target = str(dst).strip("/")
    if not PurePosixPath(target).suffix:
        target += ".b2nd"
    if not target.endswith(".b2nd"):
        raise BadRequest("the result of a computation must be a .b2nd dataset", path=target)
    return target
