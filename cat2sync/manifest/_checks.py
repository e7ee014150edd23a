"""Checks across rules: what no single table can see wrong."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._context import Context
from ._model import LazyExprRule, SubscribeRule, UploadRule
from ._values import show


def check_rules(
    context: Context,
    state_dir: Path,
    uploads: Sequence[UploadRule],
    subscriptions: Sequence[SubscribeRule],
    lazyexprs: Sequence[LazyExprRule],
) -> None:
    folders = [(f"upload[{index}]", rule.local) for index, rule in enumerate(uploads)]
    folders += [(f"subscribe[{index}]", rule.local) for index, rule in enumerate(subscriptions)]
    # Overlaps first: two rules on the same folder also share a default name, and
    # "overlaps" says more than "duplicate name".
    _check_overlaps(context, folders)
    _check_state_dir(context, state_dir, folders)
    _check_unique_names(context, uploads, subscriptions, lazyexprs)
    _check_unique_destinations(context, lazyexprs)


def _check_overlaps(context: Context, folders: Sequence[tuple[str, Path]]) -> None:
    # Nested folders would feed one rule's output into another (or into itself).
    for later, (label, folder) in enumerate(folders):
        for other_label, other in folders[:later]:
            if folder == other:
                relation = f"both are {folder}"
            elif folder.is_relative_to(other):
                relation = f"{other} contains {folder}"
            elif other.is_relative_to(folder):
                relation = f"{folder} contains {other}"
            else:
                continue
            raise context.fail(f"{label}.local", f"overlaps {other_label}.local ({relation})")


def _check_state_dir(
    context: Context, state_dir: Path, folders: Sequence[tuple[str, Path]]
) -> None:
    # The daemon writes its database there: it must never be synced itself.
    for label, folder in folders:
        if state_dir.is_relative_to(folder):
            raise context.fail(
                "daemon.state_dir",
                f"{state_dir} lies inside {label}.local ({folder}); move it elsewhere",
            )
        if folder.is_relative_to(state_dir):
            raise context.fail(f"{label}.local", f"lies inside daemon.state_dir ({state_dir})")


def _check_unique_names(
    context: Context,
    uploads: Sequence[UploadRule],
    subscriptions: Sequence[SubscribeRule],
    lazyexprs: Sequence[LazyExprRule],
) -> None:
    # Names key the state store: a duplicate would make two rules share history.
    seen: dict[str, str] = {}
    groups: list[tuple[str, Sequence[UploadRule | SubscribeRule | LazyExprRule]]] = [
        ("upload", uploads),
        ("subscribe", subscriptions),
        ("lazyexpr", lazyexprs),
    ]
    for kind, rules in groups:
        for index, rule in enumerate(rules):
            label = f"{kind}[{index}]"
            if rule.name in seen:
                raise context.fail(
                    f"{label}.name",
                    f"duplicate rule name {show(rule.name)} (also used by {seen[rule.name]});"
                    " set a distinct name",
                )
            seen[rule.name] = label


def _check_unique_destinations(context: Context, lazyexprs: Sequence[LazyExprRule]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for index, rule in enumerate(lazyexprs):
        target = (rule.server, rule.destination)
        if target in seen:
            raise context.fail(
                f"lazyexpr[{index}].path",
                f"{rule.destination} is already written by lazyexpr[{seen[target]}]",
            )
        seen[target] = index
