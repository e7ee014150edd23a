"""Root, Group, File and Dataset: the objects that :meth:`Client.get` returns."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ._keys import field_names
from ._paths import RemotePath

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Dataset", "File", "Group", "Root"]


class _Listing:
    """Listing and membership over the files below a remote folder."""

    client: Client
    path: RemotePath

    @property
    def file_list(self) -> list[str]:
        """Files below this folder, relative to it (fetched on every access)."""
        return self.client.get_list(str(self.path))

    def __iter__(self) -> Iterator[str]:
        return iter(self.file_list)

    def __len__(self) -> int:
        return len(self.file_list)

    def __contains__(self, relpath: object) -> bool:
        return str(relpath).strip("/") in self.file_list

    def __getitem__(self, relpath: str) -> File:
        obj = self.client.get(f"{self.path}/{str(relpath).strip('/')}")
        assert isinstance(obj, File)
        return obj


class Root(_Listing):
    """A root such as ``@public``: list it, look up members, upload into it."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name
        self.path = RemotePath(name)

    def __repr__(self) -> str:
        return f"<Root: {self.name}>"

    def __str__(self) -> str:
        return self.name

    def upload(self, localpath: str | os.PathLike[str], remotepath: str | None = None) -> File:
        """Upload into this root (as ``remotepath``, default: the local name)."""
        rel = remotepath if remotepath is not None else Path(localpath).name
        uploaded = self.client.upload(localpath, f"{self.name}/{rel.strip('/')}")
        obj = self.client.get(uploaded)
        assert isinstance(obj, File)
        return obj


class File:
    """A remote file: metadata, download, copy/move/remove, and slicing for frames."""

    def __init__(self, client: Client, path: str, info: dict[str, Any] | None = None) -> None:
        self.client = client
        self.path = RemotePath(path)
        self.name = self.path.name
        self.root = self.path.parts[0]
        self._info = info
        self._info_generation = client.generation

    def __repr__(self) -> str:
        return f"<File: {self.path}>"

    def __str__(self) -> str:
        return str(self.path)

    @property
    def meta(self) -> dict[str, Any]:
        """The server's info for this path; fetched again after any write by the client."""
        if self._info is None or self._info_generation != self.client.generation:
            self._info = self.client.get_info(self.path)
            self._info_generation = self.client.generation
        return self._info

    def refresh(self) -> None:
        """Forget cached info (for changes made by other clients)."""
        self._info = None

    @property
    def vlmeta(self) -> dict[str, Any]:
        schunk = self.meta.get("schunk", self.meta)
        vlmeta: dict[str, Any] = schunk.get("vlmeta", {})
        return vlmeta

    def __getitem__(self, key: Any) -> Any:
        return self.slice(key, as_blosc2=False)

    def slice(self, key: Any, as_blosc2: bool = True, field: str | None = None) -> Any:
        """A slice of this dataset or frame (see :meth:`Client.get_slice`)."""
        return self.client.get_slice(self.path, key, as_blosc2=as_blosc2, field=field)

    def get_chunk(self, nchunk: int) -> bytes:
        return self.client.get_chunk(self.path, nchunk)

    def download(self, localpath: str | os.PathLike[str] | None = None) -> Path:
        return self.client.download(self.path, localpath)

    def copy(self, dst: str | PurePosixPath) -> RemotePath:
        return self.client.copy(self.path, dst)

    def move(self, dst: str | PurePosixPath) -> RemotePath:
        return self.client.move(self.path, dst)

    def remove(self) -> RemotePath:
        return self.client.remove(self.path)

    def unfold(self) -> RemotePath:
        """Unfold an HDF5 file on the server (see :meth:`Client.unfold`)."""
        return self.client.unfold(self.path)


class Group(File, _Listing):
    """A remote directory, or an HDF5/``.b2z`` container seen as a folder."""

    def __repr__(self) -> str:
        return f"<Group: {self.path}>"

    __getitem__ = _Listing.__getitem__


class Dataset(File):
    """A remote N-dimensional array (``.b2nd``, or an array inside an HDF5 file)."""

    def __repr__(self) -> str:
        return f"<Dataset: {self.path}>"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.meta["shape"])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> Any:
        return self.meta["dtype"]

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self.meta["chunks"])

    @property
    def blocks(self) -> tuple[int, ...]:
        return tuple(self.meta["blocks"])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Any:
        """NumPy-style slicing; a str key is a field name (or else a filter)."""
        if isinstance(key, str) and key in self._field_names():
            return self.slice(None, as_blosc2=False, field=key)
        return self.slice(key, as_blosc2=False)

    def _field_names(self) -> set[str]:
        return set(field_names(self.dtype))

    def append(self, data: Any) -> tuple[int, ...]:
        """Append rows along the first axis; returns the new shape."""
        return self.client.append(self.path, data)
