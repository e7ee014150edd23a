"""The progress line of ``cat2sync once``: what it shows, and log lines above it."""

from __future__ import annotations

import io
import logging

from cat2sync.progress import Progress, ProgressHandler, Snapshot


def test_progress_line_shows_files_bytes_and_active_files() -> None:
    stream = io.StringIO()
    snap = Snapshot(
        done=3, queued=10, bytes_sent=3 * 2**20, bytes_received=0, active=("run_001.b2nd",)
    )
    progress = Progress(lambda: snap, stream)
    progress.redraw()
    assert "3/10 files" in stream.getvalue()
    assert "3.0 MB" in stream.getvalue()
    assert "run_001.b2nd" in stream.getvalue()
    progress.stop()
    assert stream.getvalue().endswith("\n")


def test_log_records_are_written_above_the_progress_line() -> None:
    out, log_out = io.StringIO(), io.StringIO()
    progress = Progress(lambda: Snapshot(1, 2, 0, 0, ()), out)
    progress.redraw()
    handler = ProgressHandler(logging.StreamHandler(log_out), progress)
    logger = logging.getLogger("test_progress")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("uploaded x")
    finally:
        logger.removeHandler(handler)
    assert "uploaded x" in log_out.getvalue()
    # The line was cleared (blanked with \r) before the record and drawn again after.
    assert out.getvalue().count("1/2 files") == 2
    assert "\r " in out.getvalue()
