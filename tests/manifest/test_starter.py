"""``starter_manifest``: the text ``cat2sync init`` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cat2sync.manifest import starter_manifest
from tests.helpers.manifest import load


def test_starter_manifest_round_trip(workdir: Path) -> None:
    text = starter_manifest(
        server="http://lab:8000",
        username="joe@example.com",
        uploads=[("acquisition", "@personal/beamline7"), ("my data", "@personal/x")],
        subscriptions=[("@public/examples", "mirror/examples")],
    )
    assert "[[upload]]" in text and "[[subscribe]]" in text
    (workdir / "my data").mkdir()
    manifest = load(text, env={"CAT2_PASSWORD": "pw"})
    assert manifest.servers["default"].url == "http://lab:8000"
    assert manifest.servers["default"].password == "pw"
    assert [rule.remote for rule in manifest.uploads] == ["@personal/beamline7", "@personal/x"]
    assert manifest.uploads[1].local == workdir.resolve() / "my data"
    assert manifest.subscriptions[0].local == workdir.resolve() / "mirror" / "examples"


def test_starter_manifest_minimal_and_escaped(workdir: Path) -> None:
    manifest = load(starter_manifest(server=None, username=None, uploads=[], subscriptions=[]))
    assert manifest.servers["default"].embedded
    text = starter_manifest(server="embedded", username="a${b}", uploads=[], subscriptions=[])
    assert load(text, env={"CAT2_PASSWORD": "pw"}).servers["default"].username == "a${b}"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server": "ftp://x"},
        {"username": ""},
        {"uploads": [("a", "nope")]},
        {"uploads": [("", "@public")]},
        {"subscriptions": [("@public/../x", "m")]},
    ],
)
def test_starter_manifest_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {
        "server": None,
        "username": None,
        "uploads": [],
        "subscriptions": [],
        **kwargs,
    }
    with pytest.raises(ValueError, match=r"^\w+ .*: |^username: "):
        starter_manifest(**arguments)
