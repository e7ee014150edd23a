"""The command line: ``cat2sync`` in this process, in a subprocess, and as a daemon process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cat2sync.cli import main as cli_main
from cat2sync.testing import wait_until

from .paths import REPO

#: Generous: other test sessions share the machine.
STARTUP = 120.0


def cli_env(*paths: Path, **extra: str) -> dict[str, str]:
    """The environment for ``python -m cat2sync``: this repository and ``paths``
    importable, no systemd socket, no plugin tracing; ``extra`` variables on top."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*(str(p) for p in paths), str(REPO)])}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("CAT2SYNC_TRACE_PLUGINS", None)
    return {**env, **extra}


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cat2sync", *args]


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    umask: int | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``cat2sync ARGS`` in a subprocess (environment :func:`cli_env` unless given),
    its output captured; ``umask`` is set in the child before it starts."""
    return subprocess.run(
        cli_cmd(*args),
        env=dict(env) if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def cli(*args: str) -> tuple[int, str, str]:
    """``cat2sync ARGS`` in this process: ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(args))
    return code, out.getvalue(), err.getvalue()


def status_json(manifest: Path) -> dict[str, Any]:
    """``cat2sync status --json MANIFEST`` (it reads the state while the daemon runs)."""
    code, out, err = cli("status", "--json", str(manifest))
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


class DaemonProcess:
    """``python -m cat2sync run MANIFEST`` in a subprocess, its output appended to ``log``.

    :param wrapper: a command to run it under (``unshare ...``), or nothing.
    """

    def __init__(
        self,
        manifest: Path,
        log: Path,
        *,
        wrapper: Sequence[str] = (),
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.manifest = manifest
        self.log = log
        self.wrapper = list(wrapper)
        self.args = list(args)
        self.env = dict(env) if env is not None else cli_env()
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self.starts = 0

    @property
    def command(self) -> list[str]:
        return [*self.wrapper, *cli_cmd(*self.args, "run", str(self.manifest))]

    def start(self) -> DaemonProcess:
        assert self.proc is None or self.proc.poll() is not None
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.starts += 1
        return self

    def text(self, *, since_start: bool = False) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as fh:
            if since_start:
                fh.seek(self._offset)
            return fh.read().decode(errors="replace")

    def wait_ready(self, timeout: float = STARTUP) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"the daemon exited ({self.proc.returncode}):\n"
                    f"{self.text(since_start=True)[-3000:]}"
                )
            return "ready: watching" in self.text(since_start=True)

        wait_until(ready, timeout=timeout, interval=0.05, message="the daemon's ready line")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@contextlib.contextmanager
def daemon_process(manifest: Path, log: Path, **kwargs: Any) -> Iterator[DaemonProcess]:
    """A started :class:`DaemonProcess`, always stopped (its log printed on failure)."""
    proc = DaemonProcess(manifest, log, **kwargs).start()
    try:
        yield proc
    except BaseException:
        print(f"--- daemon log (tail) ---\n{proc.text()[-6000:]}")
        raise
    finally:
        proc.stop()
