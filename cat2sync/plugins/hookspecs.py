"""Every cat2sync hook, in one module. The docstrings are the plugin API reference.

A plugin is a module or object with functions marked ``@cat2sync.hookimpl`` whose
names match the hooks below, registered through the ``cat2sync`` entry-point group::

    [project.entry-points.cat2sync]
    myplugin = "myplugin"

Hooks are called synchronously from the daemon's worker threads; keep them cheap, and
make them thread-safe. A hook that raises is reported with the plugin's name, the hook
and the file; the file is marked failed and retried later, and the daemon keeps going.

Every hook is called through pluggy, with pluggy's rules: implementations run last
registered first (the built-in plugins, registered first, run last), ``@hookimpl(
tryfirst=True)`` / ``trylast=True`` move one to the front or the back, and
``@hookimpl(wrapper=True)`` wraps the others (code before its ``yield`` runs first, the
``yield`` gives their result or raises their exception, what it returns is the result).
A "collect-all" hook gives the list of the non-None results in that order; a "first
result" hook stops at the first non-None result. A ``register``/``declare`` callback
keeps the first registration of a name, that of the plugin called first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import numpy as np

    from ..client import Client
    from ..events import Event
    from ..manifest import Manifest, SettingSpec, SubscribeRule, UploadRule

__all__ = [
    "Converter",
    "ConverterContext",
    "LazyExprRequest",
    "Transform",
    "TransformContext",
    "hookimpl",
    "hookspec",
]

PROJECT = "cat2sync"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransformContext:
    """What a transform knows about the rows it gets.

    :ivar params: the transform's parameters from the manifest (``{name = "scale",
        factor = 0.5}`` gives ``{"factor": 0.5}``).
    :ivar rule: the rule's name.
    :ivar path: the file, relative to the rule's local folder.
    :ivar start_row: index of the first row given, in the whole array (0 for a full
        upload, the previous length for an append).
    :ivar direction: ``"upload"`` or ``"download"``.
    """

    params: Mapping[str, Any] = field(default_factory=dict)
    rule: str = ""
    path: str = ""
    start_row: int = 0
    direction: str = "upload"


#: ``(rows, ctx) -> rows``: must keep the number of rows, and always give the same
#: dtype and trailing shape for the same input dtype and trailing shape.
Transform = Callable[["np.ndarray", TransformContext], "np.ndarray"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConverterContext:
    """:ivar settings: the converter plugin's ``[plugins.NAME]`` table (validated).
    :ivar rule: the rule's name. :ivar path: the file, relative to the rule folder."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    rule: str = ""
    path: str = ""


#: ``(source, dest, ctx) -> None``: write a Blosc2 ``.b2nd`` file at ``dest`` (a path
#: in a private temporary folder) from the local file ``source``.
Converter = Callable[[Path, Path, ConverterContext], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class LazyExprRequest:
    """A lazy expression to create or refresh on the server.

    :ivar name: the dataset name; the result goes to ``@personal/<name>.b2nd`` unless
        ``path`` is given.
    :ivar expression: blosc2 expression, e.g. ``"(x - dark) * gain"``.
    :ivar operands: variable -> remote dataset path.
    :ivar path: where to store the result (a ``.b2nd`` path in any writable root).
    """

    name: str
    expression: str
    operands: Mapping[str, str]
    path: str | None = None


# -- set-up ---------------------------------------------------------------------------


@hookspec
def cat2sync_declare_settings(
    declare: Callable[[str, Mapping[str, SettingSpec]], None],
) -> None:
    """Declare the keys a plugin accepts in its ``[plugins.NAME]`` manifest table.

    Called once, before the manifest is validated. Call
    ``declare(name, {"key": SettingSpec(type=str, default=..., description=...)})``;
    ``cat2sync validate`` then checks the table with the same one-line errors as the
    rest of the manifest (unknown keys, wrong types, missing required keys). The first
    declaration of a name wins. Collect-all; the return value is ignored.
    """


@hookspec
def cat2sync_configure(manifest: Manifest) -> None:
    """Called once the manifest is loaded (and again after each hot reload).

    :param manifest: the validated manifest; a plugin reads its own table from
        ``manifest.plugins.settings["<name>"]`` (defaults filled in), e.g. with
        :func:`cat2sync.plugins.read_settings`.
    :raises SettingError: a value of the plugin's table is wrong: the user gets the
        one-line manifest error (any :class:`ManifestError` reaches the user as it is).
    Collect-all; the return value is ignored.
    """


@hookspec
def cat2sync_register_transforms(register: Callable[[str, Transform], None]) -> None:
    """Contribute named array transforms: ``register("scale", func)``.

    A rule lists transforms in order, with parameters:
    ``transforms = ["float32", {name = "scale", factor = 0.5}]``. On an upload rule
    they apply to the rows being sent (the whole array on a full upload, only the new
    rows on an append), so that the remote array is the transform of the local one. On
    a subscribe rule they apply to what is written locally. A transform that changes
    the number of rows, or whose dtype or trailing shape does not match what is already
    on the server, is rejected before anything is sent. Names must be unique.
    Collect-all; the return value is ignored.
    """


@hookspec
def cat2sync_register_converters(register: Callable[[str, Converter], None]) -> None:
    """Contribute converters from other file types to Blosc2: ``register(".npy", func)``.

    A file whose suffix (lower case, with the dot) a rule lists in its ``convert`` key
    is converted to a ``.b2nd`` that is uploaded instead of the original, under the
    original name with its suffix replaced by ``.b2nd``; registering converts nothing
    by itself. The first registration of a suffix wins (that of
    the plugin called first: registered later, or ``tryfirst``).
    Collect-all; the return value is ignored.
    """


# -- decisions ------------------------------------------------------------------------


@hookspec(firstresult=True)
def cat2sync_ignore(rule: UploadRule | SubscribeRule, path: str) -> bool | None:
    """Whether to skip a file that the rule's include/exclude globs accept.

    :param rule: the upload or subscribe rule.
    :param path: the file, relative to the rule's folder (POSIX separators).
    :return: True to skip it, False to keep it, None to abstain.
    First result: stops at the first non-None result (``firstresult``).
    """


@hookspec
def cat2sync_lazyexprs(
    rule: UploadRule,
    remote_path: str,
    info: Mapping[str, Any],
) -> list[LazyExprRequest] | None:
    """Lazy expressions to create or refresh after a dataset was uploaded or appended.

    :param rule: the upload rule that sent it.
    :param remote_path: the dataset's remote path.
    :param info: ``{"shape": ..., "dtype": ..., "rows": rows sent}`` of the dataset.
    :return: a list of :class:`LazyExprRequest` (or None). Collect-all: every
        plugin's requests are computed, in the call order.
    """


@hookspec
def cat2sync_uploaded(
    rule: UploadRule,
    local_path: Path,
    remote_path: str,
    client: Client,
) -> None:
    """Called after a file was uploaded whole (not after an append), for follow-up work
    on the server, such as unfolding an HDF5 file.

    :param rule: the upload rule.
    :param local_path: the local file that was sent.
    :param remote_path: where it is on the server.
    :param client: the rule's :class:`cat2sync.Client`, logged in.
    Collect-all; the return value is ignored. A hook that raises marks the file failed
    (it is sent again later).
    """


# -- notifications --------------------------------------------------------------------


@hookspec
def cat2sync_event(event: Event) -> None:
    """Called for every event: uploaded, appended, moved, removed, downloaded, deleted,
    computed, skipped and failed, with the rule, paths, rows and bytes.

    Called from worker threads, after the fact: it cannot change what happened. A
    listener that raises is logged with its name, and the listeners pluggy had not
    called yet are still told (in a new call of the hook, which wrappers wrap again).
    Collect-all; the return value is ignored.
    """


@hookspec
def cat2sync_register_jobs(
    register: Callable[[str, float | str, Callable[[], object]], None],
) -> None:
    """Contribute periodic jobs to the daemon's scheduler (``cat2sync run`` only).

    Call ``register(job_id, every_seconds_or_crontab, func)``; ``func`` takes no
    arguments. Job ids must be unique. Collect-all; the return value is ignored.
    Each job runs guarded: one that raises is logged and runs again next time.
    """


@hookspec
def cat2sync_shutdown() -> None:
    """Called once when the daemon stops (after the last transfer), to flush and close
    what a plugin keeps open (files, queues of notifications). One that raises is
    logged, and the others are still called, as for ``cat2sync_event``. Collect-all;
    the return value is ignored.
    """
