"""cat2sync-convert: upload ``.npy``, ``.npz``, ``.csv`` and TIFF stacks as Blosc2 ``.b2nd``.

Each converter writes the ``.b2nd`` in bounded memory where the format allows: a
``.npy`` is memory-mapped, a ``.npz`` member and a CSV file are streamed, a TIFF stack
is read page by page; the output is written a slab of chunk-rows at a time.

Installing it converts nothing by itself: a rule names the suffixes it converts, and
the compression parameters come from the ``[plugins.convert]`` manifest table::

    [[upload]]
    convert = [".csv", ".tif"]

    [plugins.convert]
    codec = "zstd"
    clevel = 5
    filters = ["shuffle"]
    chunks = [64, 512, 512]
"""

from __future__ import annotations

import itertools
import math
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import blosc2
import numpy as np

from cat2sync.errors import SettingError
from cat2sync.manifest import Manifest, SettingSpec
from cat2sync.plugins import Converter, ConverterContext, hookimpl, read_settings

__all__ = [
    "CODECS",
    "FILTERS",
    "FORMATS",
    "NAME",
    "SETTINGS",
    "ConvertOptions",
    "convert_csv",
    "convert_npy",
    "convert_npz",
    "convert_tiff",
]

#: The plugin's name: its entry point, ``[plugins.convert]`` and ``disable = ["convert"]``.
NAME: Final = "convert"

#: General-purpose Blosc2 codecs accepted by the ``codec`` setting.
CODECS: Final[Mapping[str, blosc2.Codec]] = {
    name.lower(): blosc2.Codec[name] for name in ("BLOSCLZ", "LZ4", "LZ4HC", "ZLIB", "ZSTD")
}
#: Blosc2 filters accepted by the ``filters`` setting (those that need no parameter).
FILTERS: Final[Mapping[str, blosc2.Filter]] = {
    name.lower(): blosc2.Filter[name]
    for name in ("NOFILTER", "SHUFFLE", "BITSHUFFLE", "DELTA", "BYTEDELTA")
}
#: The formats and the suffixes each one registers (a rule's ``convert`` picks them).
FORMATS: Final[Mapping[str, tuple[str, ...]]] = {
    "npy": (".npy",),
    "npz": (".npz",),
    "csv": (".csv",),
    "tiff": (".tif", ".tiff"),
}
_MAX_FILTERS: Final = 6
#: Upper bound for one slab of rows written at once (whole chunk-rows, at least one).
SLAB_BYTES: Final = 32 * 2**20
_FIRST_CSV_BATCH: Final = 1024
_FLOAT64: Final[np.dtype[Any]] = np.dtype("float64")

SETTINGS: Final[Mapping[str, SettingSpec]] = {
    "codec": SettingSpec(
        type=str, default="zstd", description="Blosc2 codec: " + ", ".join(CODECS)
    ),
    "clevel": SettingSpec(type=int, default=5, description="compression level, 0 to 9"),
    "filters": SettingSpec(
        type=list, default=["shuffle"], description="Blosc2 filters in order: " + ", ".join(FILTERS)
    ),
    "chunks": SettingSpec(
        type=list,
        default=None,
        description="chunk shape (one integer per dimension); absent: Blosc2 chooses",
    ),
    "npz_key": SettingSpec(
        type=str, default=None, description="the array of a .npz to convert; absent: the first"
    ),
    "delimiter": SettingSpec(
        type=str, default=",", description="CSV column separator (one character)"
    ),
    "skiprows": SettingSpec(type=int, default=0, description="CSV header lines to skip"),
    "csv_dtype": SettingSpec(
        type=str, default="float64", description="NumPy dtype of CSV values (numeric)"
    ),
}
DEFAULTS: Final[Mapping[str, Any]] = {key: spec.default for key, spec in SETTINGS.items()}


def _one_of(value: str, choices: Sequence[str]) -> str:
    return f'unknown value "{value}" (expected one of: {", ".join(choices)})'


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvertOptions:
    """The validated ``[plugins.convert]`` table."""

    codec: blosc2.Codec = blosc2.Codec.ZSTD
    clevel: int = 5
    filters: tuple[blosc2.Filter, ...] = (blosc2.Filter.SHUFFLE,)
    chunks: tuple[int, ...] | None = None
    npz_key: str | None = None
    delimiter: str = ","
    skiprows: int = 0
    csv_dtype: np.dtype[Any] = _FLOAT64

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ConvertOptions:
        """Validate a (possibly partial) settings table; missing keys take the defaults.

        :raises SettingError: naming the key.
        """
        merged = {**DEFAULTS, **settings}
        unknown = sorted(set(merged) - set(SETTINGS))
        if unknown:
            raise SettingError(
                NAME,
                unknown[0],
                "unknown key (expected one of: " + ", ".join(sorted(SETTINGS)) + ")",
            )
        codec = merged["codec"]
        if not isinstance(codec, str) or codec.lower() not in CODECS:
            raise SettingError(NAME, "codec", _one_of(str(codec), list(CODECS)))
        clevel = merged["clevel"]
        if isinstance(clevel, bool) or not isinstance(clevel, int) or not 0 <= clevel <= 9:
            raise SettingError(NAME, "clevel", f"expected an integer from 0 to 9, got {clevel!r}")
        filters = _string_list(merged["filters"], "filters", FILTERS)
        if len(filters) > _MAX_FILTERS:
            raise SettingError(
                NAME, "filters", f"at most {_MAX_FILTERS} filters, got {len(filters)}"
            )
        return cls(
            codec=CODECS[codec.lower()],
            clevel=clevel,
            filters=tuple(FILTERS[name.lower()] for name in filters),
            chunks=_chunks(merged["chunks"]),
            npz_key=_optional_name(merged["npz_key"], "npz_key"),
            delimiter=_delimiter(merged["delimiter"]),
            skiprows=_skiprows(merged["skiprows"]),
            csv_dtype=_numeric_dtype(merged["csv_dtype"]),
        )

    def cparams(self) -> blosc2.CParams:
        return blosc2.CParams(
            codec=self.codec,
            clevel=self.clevel,
            filters=list(self.filters),
            filters_meta=[0] * len(self.filters),
        )


def _string_list(value: object, key: str, choices: Mapping[str, object]) -> list[str]:
    if not isinstance(value, list):
        raise SettingError(NAME, key, f"expected an array of strings, got {value!r}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise SettingError(NAME, f"{key}[{index}]", f"expected a string, got {item!r}")
        if item.lower() not in choices:
            raise SettingError(NAME, f"{key}[{index}]", _one_of(item, list(choices)))
    return value


def _chunks(value: object) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise SettingError(NAME, "chunks", f"expected a non-empty array of integers, got {value!r}")
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise SettingError(
                NAME, f"chunks[{index}]", f"expected a positive integer, got {item!r}"
            )
    return tuple(value)


def _optional_name(value: object, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise SettingError(NAME, key, f"expected a non-empty string, got {value!r}")
    return value


def _delimiter(value: object) -> str:
    if not isinstance(value, str) or len(value) != 1 or value in "\r\n#":
        raise SettingError(
            NAME, "delimiter", f"expected one character (not a newline or '#'), got {value!r}"
        )
    return value


def _skiprows(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SettingError(NAME, "skiprows", f"expected a non-negative integer, got {value!r}")
    return value


def _numeric_dtype(value: object) -> np.dtype[Any]:
    dtype: np.dtype[Any] | None
    try:
        dtype = np.dtype(str(value)) if isinstance(value, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        raise SettingError(
            NAME, "csv_dtype", f'expected a numeric NumPy dtype like "float32", got {value!r}'
        )
    return dtype


# -- plugin state -------------------------------------------------------------------------

# Replaced whole by cat2sync_configure (an atomic rebinding): converters running in
# worker threads always see one consistent set of options.
_options: ConvertOptions = ConvertOptions.from_settings(DEFAULTS)


def current_options() -> ConvertOptions:
    """The options from the last ``cat2sync_configure`` (the defaults before that)."""
    return _options


def _options_for(ctx: ConverterContext) -> ConvertOptions:
    """``ctx.settings`` when it is this plugin's table (a non-empty table of our keys),
    else the options from the last ``cat2sync_configure``."""
    if not ctx.settings or not set(ctx.settings) <= set(SETTINGS):
        return _options
    try:
        return ConvertOptions.from_settings(ctx.settings)
    except SettingError as exc:
        raise ValueError(str(exc)) from None


# -- writing ------------------------------------------------------------------------------


def _native(dtype: np.dtype[Any]) -> np.dtype[Any]:
    if dtype.hasobject:
        raise ValueError(f"cannot store Python objects (dtype {dtype}) in a .b2nd")
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def _create(
    dest: Path, shape: tuple[int, ...], dtype: np.dtype[Any], opts: ConvertOptions, what: str
) -> blosc2.NDArray:
    kwargs: dict[str, Any] = {}
    if opts.chunks is not None:
        if len(opts.chunks) != len(shape):
            raise ValueError(
                f"{what}: the chunks setting has {len(opts.chunks)} dimension(s) "
                f"but the array has {len(shape)} (shape {shape})"
            )
        kwargs["chunks"] = opts.chunks
    return blosc2.empty(
        shape, dtype=_native(dtype), urlpath=str(dest), mode="w", cparams=opts.cparams(), **kwargs
    )


def row_step(arr: blosc2.NDArray) -> int:
    """Rows per slab: a whole number of chunk-rows, about :data:`SLAB_BYTES` at most."""
    if not arr.shape:
        return 1
    chunk_rows = max(1, int(arr.chunks[0]))
    row_bytes = max(1, int(math.prod(arr.shape[1:])) * int(arr.dtype.itemsize))
    return chunk_rows * max(1, SLAB_BYTES // (chunk_rows * row_bytes))


def copy_rows(read: Callable[[int, int], Any], arr: blosc2.NDArray) -> None:
    """Fill ``arr`` slab by slab, in ascending order, from ``read(start, stop)``."""
    if not arr.shape:
        arr[()] = np.asarray(read(0, 1), dtype=arr.dtype)
        return
    if 0 in arr.shape:
        return
    rows, step = arr.shape[0], row_step(arr)
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        arr[start:stop] = np.ascontiguousarray(read(start, stop), dtype=arr.dtype)


def _cleanup_on_error(dest: Path, write: Callable[[], None]) -> None:
    try:
        write()
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


# -- .npy ---------------------------------------------------------------------------------


def convert_npy(source: Path, dest: Path, ctx: ConverterContext) -> None:
    """``.npy`` -> ``.b2nd``, memory-mapped: only one slab of rows is in memory."""
    opts = _options_for(ctx)

    def write() -> None:
        try:
            src = np.load(source, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:  # Python objects, or not a .npy file at all
            raise ValueError(f"{source.name}: {exc}") from None
        arr = _create(dest, src.shape, src.dtype, opts, source.name)
        copy_rows(lambda start, stop: src[()] if not src.shape else src[start:stop], arr)

    _cleanup_on_error(dest, write)


# -- .npz ---------------------------------------------------------------------------------


def _read_exact(fh: IO[bytes], nbytes: int) -> bytes:
    parts, left = [], nbytes
    while left:
        part = fh.read(left)
        if not part:
            raise ValueError(f"truncated array data ({nbytes - left} of {nbytes} bytes)")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _npy_header(fh: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any]] | None:
    """Shape and dtype of a C-order, object-free ``.npy`` stream positioned at its data."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        return None
    if fortran or dtype.hasobject:
        return None
    return tuple(shape), dtype


def convert_npz(source: Path, dest: Path, ctx: ConverterContext) -> None:
    """One array of a ``.npz`` (``npz_key``, default the first) -> ``.b2nd``, streamed
    from the archive (C-order arrays; a Fortran-order member is read whole)."""
    opts = _options_for(ctx)

    def write() -> None:
        with zipfile.ZipFile(source) as zf:
            keys = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
            if not keys:
                raise ValueError(f"{source.name}: no arrays in this .npz")
            key = opts.npz_key if opts.npz_key is not None else keys[0]
            if key not in keys:
                raise ValueError(
                    f"{source.name}: no array named {key!r} (arrays: {', '.join(keys[:20])})"
                )
            with zf.open(key + ".npy") as fh:
                header = _npy_header(fh)
                if header is None:  # Fortran order, Python objects or format 3.0
                    with zf.open(key + ".npy") as again:
                        try:
                            whole = np.lib.format.read_array(again, allow_pickle=False)
                        except ValueError as exc:
                            raise ValueError(f"{source.name}: {key}: {exc}") from None
                    arr = _create(dest, whole.shape, whole.dtype, opts, f"{source.name}:{key}")
                    copy_rows(
                        lambda start, stop: whole[start:stop] if whole.shape else whole[()], arr
                    )
                    return
                shape, dtype = header
                arr = _create(dest, shape, dtype, opts, f"{source.name}:{key}")
                row_items = math.prod(shape[1:])

                def read(start: int, stop: int) -> np.ndarray:
                    count = (stop - start) * row_items if shape else 1
                    data = np.frombuffer(_read_exact(fh, count * dtype.itemsize), dtype=dtype)
                    return data.reshape((stop - start, *shape[1:])) if shape else data[0]

                copy_rows(read, arr)

    _cleanup_on_error(dest, write)


# -- .csv ---------------------------------------------------------------------------------


def _count_csv_rows(source: Path, skiprows: int) -> int:
    """Data lines after the header: not blank and not only a ``#`` comment."""
    with source.open(encoding="utf-8-sig") as fh:
        return sum(
            1 for line in itertools.islice(fh, skiprows, None) if line.split("#", 1)[0].strip()
        )


def convert_csv(source: Path, dest: Path, ctx: ConverterContext) -> None:
    """Numeric CSV -> 2-D ``.b2nd`` (1-D for a single column), parsed a slab at a time
    with :func:`numpy.loadtxt` (``delimiter``, ``skiprows``, ``csv_dtype``)."""
    opts = _options_for(ctx)

    def write() -> None:
        total = _count_csv_rows(source, opts.skiprows)
        arr: blosc2.NDArray | None = None
        written, ncols, batch = 0, 0, _FIRST_CSV_BATCH
        line_no = opts.skiprows  # lines consumed so far
        with source.open(encoding="utf-8-sig") as fh:
            lines = itertools.islice(fh, opts.skiprows, None)
            while chunk := list(itertools.islice(lines, batch)):
                first, line_no = line_no + 1, line_no + len(chunk)
                try:
                    block = np.loadtxt(
                        chunk, delimiter=opts.delimiter, dtype=opts.csv_dtype, ndmin=2, comments="#"
                    )
                except ValueError as exc:
                    raise ValueError(f"{source.name}: lines {first}-{line_no}: {exc}") from None
                if not block.shape[0]:
                    continue  # only comments or blank lines
                if arr is None:
                    ncols = block.shape[1]
                    shape = (total, ncols) if ncols > 1 else (total,)
                    arr = _create(dest, shape, opts.csv_dtype, opts, source.name)
                    batch = row_step(arr)
                elif block.shape[1] != ncols:
                    raise ValueError(
                        f"{source.name}: lines {first}-{line_no}: expected "
                        f"{ncols} columns, got {block.shape[1]}"
                    )
                rows = block if ncols > 1 else block[:, 0]
                if written + len(rows) > arr.shape[0]:
                    arr.resize((written + len(rows), *arr.shape[1:]))
                arr[written : written + len(rows)] = np.ascontiguousarray(rows)
                written += len(rows)
        if arr is None:
            _create(dest, (0,), opts.csv_dtype, opts, source.name)
        elif written != arr.shape[0]:
            arr.resize((written, *arr.shape[1:]))

    _cleanup_on_error(dest, write)


# -- TIFF ---------------------------------------------------------------------------------


def _tiff_stack(tif: Any) -> tuple[tuple[int, ...], np.dtype[Any], list[Any]]:
    """Shape, dtype and pages of the image stack in an open :class:`tifffile.TiffFile`.

    The stack is the first image series; a file made of several single-page series of
    one shape and dtype (what ``tifffile.imwrite(..., append=True)`` writes) is one
    stack of those pages.
    """
    series = list(tif.series)
    if not series:
        raise ValueError("no image in this TIFF")
    first = series[0]
    shape, dtype = tuple(first.shape), np.dtype(first.dtype)
    if len(series) > 1 and all(
        len(s.pages) == 1 and tuple(s.shape) == shape and np.dtype(s.dtype) == dtype for s in series
    ):
        return (len(series), *shape), dtype, [s.pages[0] for s in series]
    return shape, dtype, list(first.pages)


def convert_tiff(source: Path, dest: Path, ctx: ConverterContext) -> None:
    """A TIFF image stack -> ``.b2nd``, read page by page.

    The result has the series' shape (e.g. ``(pages, height, width)``, more axes for a
    hyperstack, a trailing axis for colour samples); a single image gives a 2-D array.
    """
    import tifffile  # a dependency of this plugin only; imported when needed

    opts = _options_for(ctx)

    def write() -> None:
        with tifffile.TiffFile(source) as tif:
            try:
                shape, dtype, pages = _tiff_stack(tif)
            except ValueError as exc:
                raise ValueError(f"{source.name}: {exc}") from None
            page_shape = tuple(pages[0].shape) if pages and pages[0] is not None else None
            lead = shape[: len(shape) - len(page_shape)] if page_shape is not None else ()
            if (
                page_shape is None
                or any(p is None for p in pages)
                or shape[len(lead) :] != page_shape
                or math.prod(lead) != len(pages)
            ):
                # Pages that do not map one-to-one onto the series: read it whole.
                data = tif.series[0].asarray()
                arr = _create(dest, data.shape, data.dtype, opts, source.name)
                copy_rows(lambda start, stop: data[start:stop] if data.shape else data[()], arr)
                return
            arr = _create(dest, shape, dtype, opts, source.name)
            if not lead:
                arr[...] = np.ascontiguousarray(pages[0].asarray(), dtype=arr.dtype)
                return
            per_row = math.prod(lead[1:])  # pages per index along the first axis

            def read(start: int, stop: int) -> np.ndarray:
                slab = np.empty((stop - start, *shape[1:]), dtype=arr.dtype)
                flat = slab.reshape((-1, *page_shape))
                for offset, index in enumerate(range(start * per_row, stop * per_row)):
                    flat[offset] = pages[index].asarray()
                return slab

            copy_rows(read, arr)

    _cleanup_on_error(dest, write)


_CONVERTERS: Final[Mapping[str, Converter]] = {
    "npy": convert_npy,
    "npz": convert_npz,
    "csv": convert_csv,
    "tiff": convert_tiff,
}


# -- hooks --------------------------------------------------------------------------------


@hookimpl
def cat2sync_declare_settings(
    declare: Callable[[str, Mapping[str, SettingSpec]], None],
) -> None:
    declare(NAME, SETTINGS)


@hookimpl
def cat2sync_configure(manifest: Manifest) -> None:
    global _options
    _options = read_settings(manifest, NAME, ConvertOptions.from_settings)


@hookimpl
def cat2sync_register_converters(register: Callable[[str, Converter], None]) -> None:
    for fmt, suffixes in FORMATS.items():
        for suffix in suffixes:
            register(suffix, _CONVERTERS[fmt])
