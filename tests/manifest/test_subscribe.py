"""The ``[[subscribe]]`` tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.manifest import SUBSCRIBE, expect_error, load


def test_subscribe_remote_alias_cron_and_names(workdir: Path) -> None:
    text = (
        '[[subscribe]]\nname = "examples"\nremote = "@public/examples"\nlocal = "m"\n'
        'cron = "*/5 * * * *"\n'
    )
    rule = load(text).subscriptions[0]
    assert (rule.name, rule.remote, rule.every, rule.cron) == (
        "examples",
        "@public/examples",
        None,
        "*/5 * * * *",
    )


def test_unusable_local_path(workdir: Path) -> None:
    expect_error(
        '[[subscribe]]\nroot = "@public"\nlocal = "a\\u0000b"\n',
        "subscribe[0].local",
        'cannot resolve path "a\\u0000b": embedded null byte',
    )


def test_on_conflict(workdir: Path) -> None:
    assert load(SUBSCRIBE).subscriptions[0].on_conflict == "keep-both"
    assert load(SUBSCRIBE + 'on_conflict = "overwrite"\n').subscriptions[0].on_conflict == (
        "overwrite"
    )


ERRORS = [
    (
        SUBSCRIBE + "on_conflict = true\n",
        "subscribe[0].on_conflict",
        "expected a string, got true",
    ),
    (
        SUBSCRIBE + 'remote = "@public/y"\n',
        "subscribe[0].remote",
        "give either root or remote (an alias), not both",
    ),
    ('[[subscribe]]\nlocal = "m"\n', "subscribe[0].root", "missing required key"),
    (
        SUBSCRIBE + 'every = "5m"\ncron = "* * * * *"\n',
        "subscribe[0].cron",
        "give either every or cron, not both",
    ),
    (SUBSCRIBE + 'every = "0s"\n', "subscribe[0].every", 'must be greater than 0, got "0s"'),
    (
        SUBSCRIBE + 'cron = "* * * *"\n',
        "subscribe[0].cron",
        'invalid crontab "* * * *" (like "*/5 * * * *"): Wrong number of fields; got 4, expected 5',
    ),
    (SUBSCRIBE + 'delete = "no"\n', "subscribe[0].delete", 'expected a boolean, got "no"'),
    (
        SUBSCRIBE + "concurrency = 100\n",
        "subscribe[0].concurrency",
        "must be between 1 and 64, got 100",
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), ERRORS)
def test_one_line_errors(workdir: Path, text: str, key: str, message: str) -> None:
    expect_error(text, key, message)
