"""cat2sync-hdf5: make uploaded HDF5 files usable as Blosc2 datasets on the server.

Installing it changes nothing by itself; the manifest says which rules use it, in one
of two ways::

    [plugins.hdf5]
    unfold = ["beamline"]    # upload rule "beamline": upload the .h5 as is, then unfold
                             # it on the server

    [[upload]]
    convert = [".h5"]        # this rule: convert one dataset to .b2nd locally, upload that
    [plugins.hdf5]
    dataset = "/entry/data"

``unfold`` turns ``run.h5`` into a sibling folder ``run/`` of ``.b2nd`` datasets (one
per HDF5 dataset, groups as sub-folders) next to the uploaded file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final

import blosc2
import numpy as np

from cat2sync.errors import SettingError
from cat2sync.manifest import SettingSpec
from cat2sync.plugins import Converter, ConverterContext, hookimpl, read_settings

if TYPE_CHECKING:
    from cat2sync import Client
    from cat2sync.manifest import Manifest, UploadRule

__all__ = ["NAME", "SETTINGS", "SUFFIXES", "Hdf5Options", "convert_hdf5"]

#: The plugin's name: its entry point, ``[plugins.hdf5]`` and ``disable = ["hdf5"]``.
NAME: Final = "hdf5"
SUFFIXES: Final = (".h5", ".hdf5")
#: Upper bound for one slab of rows copied at once (whole chunk-rows, at least one).
SLAB_BYTES: Final = 32 * 2**20

SETTINGS: Final[Mapping[str, SettingSpec]] = {
    "unfold": SettingSpec(
        type=list,
        default=[],
        description="the upload rules whose .h5 files are unfolded on the server after upload",
    ),
    "dataset": SettingSpec(
        type=str,
        default=None,
        description="the HDF5 dataset to convert when a rule converts .h5 "
        '(convert = [".h5"]), e.g. "/entry/data"',
    ),
}
DEFAULTS: Final[Mapping[str, Any]] = {key: spec.default for key, spec in SETTINGS.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Hdf5Options:
    unfold: frozenset[str] = frozenset()
    dataset: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Hdf5Options:
        merged = {**DEFAULTS, **settings}
        unfold = merged["unfold"]
        if not isinstance(unfold, list) or not all(isinstance(r, str) for r in unfold):
            raise SettingError(NAME, "unfold", f"expected an array of rule names, got {unfold!r}")
        dataset = merged["dataset"]
        if dataset is not None and (not isinstance(dataset, str) or not dataset.strip("/")):
            raise SettingError(
                NAME,
                "dataset",
                f'expected an HDF5 dataset path like "/entry/data", got {dataset!r}',
            )
        return cls(unfold=frozenset(unfold), dataset=dataset)

    def check(self, manifest: Manifest) -> None:
        """The rules the table names exist, and a rule that converts HDF5 has a dataset."""
        names = {rule.name: rule for rule in manifest.uploads}
        for name in sorted(self.unfold):
            rule = names.get(name)
            if rule is None:
                known = ", ".join(sorted(names)) or "none"
                raise SettingError(
                    NAME, "unfold", f"no upload rule named {name!r} (known: {known})"
                )
            if set(SUFFIXES) & set(rule.convert):
                raise SettingError(
                    NAME, "unfold", f"rule {name!r} converts .h5 files: there is nothing to unfold"
                )
        converting = [r.name for r in manifest.uploads if set(SUFFIXES) & set(r.convert)]
        if converting and self.dataset is None:
            raise SettingError(
                NAME,
                "dataset",
                f"missing: rule {converting[0]!r} converts .h5 files and needs the HDF5 "
                'dataset to convert, e.g. dataset = "/entry/data"',
            )


def _options_of(manifest: Manifest) -> Callable[[Mapping[str, Any]], Hdf5Options]:
    """The table's parser, checking it against the manifest's rules too."""

    def parse(settings: Mapping[str, Any]) -> Hdf5Options:
        options = Hdf5Options.from_settings(settings)
        options.check(manifest)
        return options

    return parse


# Replaced whole by cat2sync_configure: hooks in worker threads see one consistent value.
_options: Hdf5Options = Hdf5Options()


def current_options() -> Hdf5Options:
    return _options


def _options_for(ctx: ConverterContext) -> Hdf5Options:
    if not ctx.settings or not set(ctx.settings) <= set(SETTINGS):
        return _options
    try:
        return Hdf5Options.from_settings(ctx.settings)
    except SettingError as exc:
        raise ValueError(str(exc)) from None


def is_hdf5(remote_path: str | PurePosixPath) -> bool:
    """Whether the server keeps this file as HDF5 (it matches ``.h5``/``.hdf5`` exactly:
    a ``.H5`` is stored as a plain compressed file, which cannot be unfolded)."""
    return PurePosixPath(str(remote_path)).suffix in SUFFIXES


# -- convert ------------------------------------------------------------------------------


def _datasets(group: Any, limit: int = 20) -> list[str]:
    import h5py

    names: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and len(names) < limit:
            names.append("/" + name)

    group.visititems(visit)
    return names


def convert_hdf5(source: Path, dest: Path, ctx: ConverterContext) -> None:
    """The configured ``dataset`` of an HDF5 file -> ``.b2nd``, a slab of chunk-rows at a
    time (Blosc2's default compression and chunk shape)."""
    import h5py  # a dependency of this plugin only; imported when needed

    opts = _options_for(ctx)
    if opts.dataset is None:
        raise ValueError(f"plugins.{NAME}.dataset is not set (converting .h5 needs it)")
    try:
        with h5py.File(source, "r") as h5:
            obj = h5.get(opts.dataset)
            if not isinstance(obj, h5py.Dataset):
                what = "not a dataset" if obj is not None else "no such dataset"
                listing = ", ".join(_datasets(h5)) or "none"
                raise ValueError(f"{source.name}: {opts.dataset}: {what} (datasets: {listing})")
            if obj.shape is None:
                raise ValueError(
                    f"{source.name}: {opts.dataset}: an empty HDF5 dataset has no data to convert"
                )
            dtype = np.dtype(obj.dtype)
            if dtype.hasobject:
                raise ValueError(
                    f"{source.name}: {opts.dataset}: variable-length data "
                    f"(dtype {obj.dtype}) cannot be stored in a .b2nd"
                )
            _copy(obj, dest, dtype.newbyteorder("=") if not dtype.isnative else dtype)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _copy(ds: Any, dest: Path, dtype: np.dtype[Any]) -> None:
    shape = tuple(ds.shape)
    arr = blosc2.empty(shape, dtype=dtype, urlpath=str(dest), mode="w")
    if not shape:
        arr[()] = np.asarray(ds[()], dtype=dtype)
        return
    if 0 in shape:
        return
    chunk_rows = max(1, int(arr.chunks[0]))
    row_bytes = max(1, math.prod(shape[1:]) * dtype.itemsize)
    step = chunk_rows * max(1, SLAB_BYTES // (chunk_rows * row_bytes))
    for start in range(0, shape[0], step):
        stop = min(start + step, shape[0])
        arr[start:stop] = np.ascontiguousarray(ds[start:stop], dtype=dtype)


# -- hooks --------------------------------------------------------------------------------


@hookimpl
def cat2sync_declare_settings(
    declare: Callable[[str, Mapping[str, SettingSpec]], None],
) -> None:
    declare(NAME, SETTINGS)


@hookimpl
def cat2sync_configure(manifest: Manifest) -> None:
    global _options
    _options = read_settings(manifest, NAME, _options_of(manifest))


@hookimpl
def cat2sync_register_converters(register: Callable[[str, Converter], None]) -> None:
    """For the rules that name ``.h5``/``.hdf5`` in ``convert``."""
    for suffix in SUFFIXES:
        register(suffix, convert_hdf5)


@hookimpl
def cat2sync_uploaded(rule: UploadRule, local_path: Path, remote_path: str, client: Client) -> None:
    """For the rules named in ``unfold``: unfold an uploaded ``.h5``/``.hdf5`` on the server."""
    if rule.name in _options.unfold and is_hdf5(remote_path):
        client.unfold(remote_path)
