"""The status page in a real browser (Debian's headless Chromium) against a daemon on the
real server: it renders every rule, updates itself after a new file is shipped, shows
the full error of a rule whose server was stopped, needs nothing but the daemon, fits
a laptop screen, and never contains the password.

Set ``CAT2SYNC_PAGE_SCREENSHOT=docs/observability-page.png`` to keep the screenshot
that docs/observability.md shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.events import EventKind
from cat2sync.server import LocalServer
from cat2sync.testing import BOSS, wait_until, write_b2nd
from tests.helpers.browser import Browser
from tests.helpers.observe import observe, observed_manifest

LAPTOP = (1280, 800)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser(size=LAPTOP) as b:
        yield b


def test_the_page_follows_the_daemon(
    tmp_path: Path, own_server: LocalServer, data_dir: Path, browser: Browser
) -> None:
    with Client(own_server.url, BOSS) as boss:
        source = write_b2nd(tmp_path / "dark.b2nd", np.zeros((20, 20)), chunks=(10, 20))
        boss.upload(source, "@personal/calib/dark.b2nd")
    uploads = [
        {"name": "acquisition", "local": str(data_dir), "remote": "@personal/raw", "settle": "0.2s"}
    ]
    subscribe = [
        {
            "name": "calibration",
            "root": "@personal/calib",
            "local": str(tmp_path / "calib"),
            "every": "1s",
        }
    ]
    manifest = observed_manifest(
        tmp_path, url=own_server.url, login=BOSS, uploads=uploads, subscribe=subscribe
    )
    with observe(manifest) as obs:
        wait_until(lambda: obs.events(EventKind.DOWNLOADED), message="the calibration mirrored")
        browser.open(obs.url)
        text = browser.wait_for(
            lambda t: "acquisition" in t and "calibration" in t and "dark.b2nd" in t,
            "both rules and the first download",
        )
        assert "idle" in text or "working" in text

        # A new file: the page shows it without being reloaded.
        marker = browser.evaluate("window.performance.getEntriesByType('navigation').length")
        write_b2nd(data_dir / "frame_0042.b2nd", np.ones((30, 20)), chunks=(10, 20))
        browser.wait_for(lambda t: "frame_0042.b2nd" in t and "1 uploaded" in t, "the new file")
        assert browser.evaluate("window.performance.getEntriesByType('navigation').length") == (
            marker
        )

        # Nothing from elsewhere, and it fits a laptop screen.
        origin = obs.url.rstrip("/")
        loaded = browser.evaluate(
            "window.performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert loaded and all(name.startswith(origin) for name in loaded), loaded
        assert browser.evaluate("document.documentElement.scrollWidth") <= LAPTOP[0]

        # The server stops: the mirror's next pass fails, and the page shows why in full.
        own_server.stop()
        wait_until(
            lambda: obs.status()["rules"]["calibration"]["pass_error"],
            message="the failed pass",
        )
        error = obs.status()["rules"]["calibration"]["pass_error"]
        text = browser.wait_for(lambda t: error in t, "the full error")
        assert "calibration: last error" in text
        row = browser.evaluate("document.getElementById('rule-calibration').innerText")
        assert "error" in row.split()
        assert "down" in text  # the server's reachability
        shot = Path(os.environ.get("CAT2SYNC_PAGE_SCREENSHOT") or tmp_path / "page.png")
        browser.screenshot(shot)
        assert shot.read_bytes().startswith(b"\x89PNG")
        html = browser.html()
    assert BOSS[1] not in html and BOSS[1] not in text
