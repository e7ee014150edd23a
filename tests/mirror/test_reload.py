"""Manifest edits while the daemon runs: new rules start, broken edits change nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cat2sync import Client
from cat2sync.server import LocalServer
from cat2sync.testing import wait_until
from tests.helpers.mirror import alice_manifest, files_below, open_daemon, put_bytes, subscribe_rule


def test_edited_manifest_takes_effect_and_broken_edit_is_refused(
    server: LocalServer,
    client: Client,
    data_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first_remote, second_remote = (
        f"@personal/t-reload-{tmp_path.name[-12:]}-{n}" for n in ("a", "b")
    )
    put_bytes(client, data_dir / "a.txt", f"{first_remote}/a.txt", b"first\n")
    put_bytes(client, data_dir / "b.txt", f"{second_remote}/sub/b.txt", b"second\n")
    first = subscribe_rule(first_remote, tmp_path / "first", name="first")
    second = subscribe_rule(second_remote, tmp_path / "second", name="second")
    manifest = alice_manifest(tmp_path / "cat2sync.toml", server, subscribe=[first])

    with open_daemon(manifest) as h:
        h.daemon.start()
        wait_until(
            lambda: (tmp_path / "first/a.txt").exists(), timeout=30, message="the first rule's pass"
        )
        running = h.daemon.mirrors["first"]

        alice_manifest(manifest, server, subscribe=[first, second])
        h.daemon.check_manifest()  # what the once-a-second poll does
        assert sorted(h.daemon.mirrors) == ["first", "second"]
        assert h.daemon.mirrors["first"] is running  # unchanged rules carry on
        assert "mirror:second" in h.daemon.scheduler.job_ids()
        wait_until(
            lambda: (tmp_path / "second/sub/b.txt").exists(),
            timeout=30,
            message="the new rule's pass",
        )
        assert (tmp_path / "second/sub/b.txt").read_bytes() == b"second\n"

        engines = dict(h.daemon.mirrors)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="cat2sync"):
            alice_manifest(manifest, server, subscribe=[{**first, "evry": "1m"}, second])
            h.daemon.check_manifest()
            wait_until(lambda: bool(caplog.records), timeout=30, message="the error line")
        assert h.daemon.mirrors == engines  # the previous manifest keeps running
        assert {"mirror:first", "mirror:second"} <= set(h.daemon.scheduler.job_ids())
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "\n" not in errors[0], errors
        assert "evry" in errors[0] and "previous one keeps running" in errors[0]

        # The old rules still work: a pass of each brings what is new.
        put_bytes(client, data_dir / "c.txt", f"{first_remote}/c.txt", b"later\n")
        assert h.daemon.mirror_pass("first") == 0
        assert h.daemon.mirror_pass("second") == 0
    assert sorted(files_below(tmp_path / "first")) == ["a.txt", "c.txt"]


def test_cron_subscription_is_scheduled(
    server: LocalServer, tmp_path: Path, remote_dir: str
) -> None:
    rule = subscribe_rule(remote_dir, tmp_path / "mirror", name="nightly")
    del rule["every"]
    rule["cron"] = "30 3 * * *"
    manifest = alice_manifest(
        tmp_path / "cat2sync.toml",
        server,
        subscribe=[rule, subscribe_rule(f"{remote_dir}-other", tmp_path / "other", name="often")],
    )
    with open_daemon(manifest) as h:
        assert h.daemon.mirrors["nightly"].rule.cron == "30 3 * * *"
        h.daemon.start()
        jobs = h.daemon.scheduler.job_ids()
        # The APScheduler job itself, to see that the crontab (not an interval) drives it.
        nightly = h.daemon.scheduler._aps.get_job("mirror:nightly")
    assert {"mirror:nightly", "mirror:often"} <= set(jobs)
    assert (nightly.next_run_time.hour, nightly.next_run_time.minute) == (3, 30)
