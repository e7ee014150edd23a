"""Writing a manifest in the current folder and checking the one-line error it fails with.

The manifest tests (``tests/manifest/``) run in a ``workdir`` fixture: a temporary
current directory with an ``acquisition`` folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cat2sync.errors import ManifestError
from cat2sync.manifest import Manifest, SettingSpec, load_manifest

NAME = "cat2sync.toml"
ENV = {"CAT2_PASSWORD": "s3cret-pw", "CAT2_HOST": "127.0.0.1"}

NOTIFY_SETTINGS = {
    "notify": {"file": SettingSpec(type=str), "level": SettingSpec(type=str, default="info")}
}

UPLOAD = '[[upload]]\nlocal = "acquisition"\nremote = "@personal/b7"\n'
SUBSCRIBE = '[[subscribe]]\nroot = "@public/x"\nlocal = "mirror"\n'
LAZYEXPR = '[[lazyexpr]]\nname = "c"\nexpression = "a + 1"\noperands = {a = "@public/a.b2nd"}\n'
SERVER = '[server]\nurl = "https://cat2.example.org"\nusername = "joe"\npassword = "pw"\n'
REMOTE_EXPECTED = 'expected a remote path like "@personal/folder"'

KeyPath = tuple[str | int, ...]


def load(text: str, **kwargs: Any) -> Manifest:
    """Load ``text`` as ``cat2sync.toml`` (environment ``ENV`` unless ``env`` is given)."""
    Path(NAME).write_text(text, encoding="utf-8")
    kwargs.setdefault("env", ENV)
    return load_manifest(NAME, **kwargs)


def error_of(text: str, **kwargs: Any) -> ManifestError:
    """The error loading ``text`` fails with; its message is one line naming the file."""
    with pytest.raises(ManifestError) as info:
        load(text, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{NAME}: ")
    return info.value


def expect_error(text: str, key: str, message: str, **kwargs: Any) -> None:
    err = error_of(text, **kwargs)
    assert str(err) == f"{NAME}: {key}: {message}"
    assert err.key == key


def key_path(path: KeyPath) -> str:
    """``("upload", 0, "settle")`` as the loader names it: ``upload[0].settle``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def set_in(document: Any, path: KeyPath, value: Any) -> None:
    """Set the value at ``path`` in a parsed TOML document."""
    for part in path[:-1]:
        document = document[part]
    document[path[-1]] = value
