"""Deciding what to do, with no I/O: the pure middle of march -> plan -> execute.

The engines march (scan the local folder, read the state store's records, list the
remote folder, ask for an entry's ``info``) and hand the evidence here; what comes back
is a decision, or a plan of decisions, each carrying the evidence it was taken on. The
engines then only execute. Nothing here imports the client or the state store, so a
table test can drive every decision without a server.

Upload side: :func:`plan_upload_pass` (a full pass: send, move, remove or refuse),
:func:`decide_file` (one file the watcher saw), :func:`rows_to_append` and
:func:`append_resume` (grow a remote array by its new rows only).
Mirror side: :func:`plan_listing` (a pass over a remote listing) and
:func:`decide_entry` (one entry, once its ``info`` is known), :func:`decide_deletion`.
Another writer: :func:`decide_write` and :func:`first_contact` (upload side), and
:func:`decide_entry` (mirror side) say when versions conflict; :func:`conflict_name`.
Freeing local space: :func:`plan_freeing`.
Both sides: :func:`deletion_refusal`, the one deletion cap.
"""

from __future__ import annotations

from ._common import (
    MIRROR,
    UPLOAD,
    Adopt,
    Clash,
    LocalCopy,
    LocalFile,
    Side,
    Unchanged,
    conflict_name,
    deletion_cap,
    deletion_refusal,
    remote_path,
)
from .mirror import (
    FETCHED_WHOLE,
    Delete,
    Download,
    Entry,
    Extend,
    KeepChanged,
    MirrorPlan,
    Targets,
    Unreadable,
    decide_deletion,
    decide_entry,
    is_own_temporary,
    plan_listing,
)
from .upload import (
    ABSENT,
    AppendFrom,
    CompareFirst,
    Free,
    Move,
    Proceed,
    RemoteState,
    Removal,
    Send,
    UploadPlan,
    VerifyThenAppend,
    append_resume,
    decide_file,
    decide_write,
    first_contact,
    plan_freeing,
    plan_upload_pass,
    rows_to_append,
)

__all__ = [
    "ABSENT",
    "FETCHED_WHOLE",
    "MIRROR",
    "UPLOAD",
    "Adopt",
    "AppendFrom",
    "Clash",
    "CompareFirst",
    "Delete",
    "Download",
    "Entry",
    "Extend",
    "Free",
    "KeepChanged",
    "LocalCopy",
    "LocalFile",
    "MirrorPlan",
    "Move",
    "Proceed",
    "RemoteState",
    "Removal",
    "Send",
    "Side",
    "Targets",
    "Unchanged",
    "Unreadable",
    "UploadPlan",
    "VerifyThenAppend",
    "append_resume",
    "conflict_name",
    "decide_deletion",
    "decide_entry",
    "decide_file",
    "decide_write",
    "deletion_cap",
    "deletion_refusal",
    "first_contact",
    "is_own_temporary",
    "plan_freeing",
    "plan_listing",
    "plan_upload_pass",
    "remote_path",
    "rows_to_append",
]
