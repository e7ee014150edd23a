"""Start and stop a real local Caterva2 server.

Used for the daemon's embedded default (a manifest without a server URL) and as the
test suite's server. The server runs as a subprocess on a free loopback port with its
own state directory; users are created with ``cat2-admin`` (superuser) and the
``/api/adduser/`` endpoint (regular users).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from .errors import ServerStartError

__all__ = ["LocalServer", "LocalServer2025"]

_LOG_TAIL_LINES = 20


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _find_script(name: str) -> str:
    """The console script installed beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ServerStartError(
            f"{name} not found: install the server extra (pip install 'cat2sync[server]')"
        )
    return found


class LocalServer:
    """A Caterva2 server subprocess on ``127.0.0.1:<free port>``.

    :param state_dir: where the server keeps its data, config and log; kept across
        restarts so that a stopped server can be started again with the same content.
    :param superuser: ``(email, password)`` of the superuser created before start.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        superuser: tuple[str, str] = ("admin@example.com", "adminpass1"),
        port: int | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.superuser = superuser
        self.port = port or _free_port()
        self.start_timeout = start_timeout
        self._secret = secrets.token_urlsafe(48)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Path = self.state_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (to profile or watch it)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> LocalServer:
        """Start the server and wait until it answers; create the superuser first."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = self._write_config()
        if not (self.state_dir / "state" / "db.sqlite").exists():
            self._admin_adduser(conf, *self.superuser)
        with self._log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                self._server_command(conf),
                cwd=self.state_dir,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server with SIGTERM (SIGKILL after ``timeout``) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop()
        self.start()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- users -----------------------------------------------------------------

    def add_user(self, email: str, password: str, *, superuser: bool = False) -> None:
        """Create a user on the running server (through the superuser's login)."""
        with httpx.Client(base_url=self.url, timeout=30) as http:
            login = http.post(
                "/auth/jwt/login",
                data={"username": self.superuser[0], "password": self.superuser[1]},
            )
            login.raise_for_status()
            resp = http.post(
                "/api/adduser/",
                json={"username": email, "password": password, "superuser": superuser},
            )
            resp.raise_for_status()

    # -- internals -------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {**os.environ, "CATERVA2_SECRET": self._secret_value()}

    def _secret_value(self) -> str:
        # The secret must survive restarts (it signs the login cookies) but never
        # leaves the owner-only state directory.
        path = self.state_dir / "secret"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(self._secret)
        return path.read_text().strip()

    def _write_config(self) -> Path:
        conf = self.state_dir / "caterva2-server.toml"
        conf.write_text(
            "[server]\n"
            f'listen = "127.0.0.1:{self.port}"\n'
            f'urlbase = "{self.url}"\n'
            "login = true\n"
            "register = true\n"
        )
        return conf

    def _server_command(self, conf: Path) -> list[str]:
        return [
            _find_script("cat2-server"),
            "--conf",
            str(conf),
            "--statedir",
            str(self.state_dir / "state"),
        ]

    def _adduser_command(self, conf: Path, email: str, password: str) -> list[str]:
        """The command that creates the superuser ``email`` before the first start."""
        return [
            _find_script("cat2-admin"),
            "--conf",
            str(conf),
            "--statedir",
            str(self.state_dir / "state"),
            "adduser",
            "--superuser",
            email,
            password,
        ]

    def _admin_adduser(self, conf: Path, email: str, password: str) -> None:
        cmd = self._adduser_command(conf, email, password)
        done = subprocess.run(
            cmd, cwd=self.state_dir, env=self._env(), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-_LOG_TAIL_LINES:])
            raise ServerStartError(f"{Path(cmd[0]).name} failed:\n{tail}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                self._proc = None
                raise ServerStartError(
                    f"Caterva2 server exited during start-up; its log ends with:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/roots", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(
            f"Caterva2 server not ready after {self.start_timeout:.0f} s; "
            f"its log ends with:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            text = self._log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# cat2sub's own entry point, once asyncio's global event-loop policy exists. uvicorn never
# creates it; blosc2 3.11.1 does, from a reader thread, at the first lazy expression, and
# if garbage collection runs an aiosqlite connection's __del__ meanwhile, that asks for the
# policy under the same non-reentrant lock: the thread deadlocks, and the server with it
# (seen with py-spy in this project's suite).
_RUN_CAT2SUB = (
    "import asyncio, sys; asyncio.get_event_loop_policy(); sys.argv[0] = 'cat2sub'; "
    "from caterva2.services.sub import main; main()"
)


class LocalServer2025(LocalServer):
    """A Caterva2 **2025.8.7** server (``cat2sub``) from a virtual environment of its own.

    Servers in the field are upgraded late; this one lets the suite prove that the
    client and the daemon still work with them. That release pins none of its
    dependencies, and no single blosc2 runs all of its endpoints: its environment
    holds ``caterva2[services]==2025.8.7`` with ``blosc2==3.11.1`` (``make
    caterva2-2025``). The API is :class:`LocalServer`'s.

    :param bindir: the ``bin`` folder of that environment (``cat2sub``, ``cat2adduser``).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        bindir: str | os.PathLike[str],
        superuser: tuple[str, str] = ("admin@example.com", "adminpass1"),
        port: int | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(state_dir, superuser=superuser, port=port, start_timeout=start_timeout)
        self.bindir = Path(bindir)

    def _script(self, name: str) -> str:
        path = self.bindir / name
        if not path.exists():
            raise ServerStartError(
                f"{path} not found: build the 2025.8.7 server's environment (make caterva2-2025)"
            )
        return str(path)

    def _server_command(self, conf: Path) -> list[str]:
        self._script("cat2sub")  # what is missing, if anything
        return [
            self._script("python"),
            "-c",
            _RUN_CAT2SUB,
            "--conf",
            str(conf),
            "--statedir",
            str(self.state_dir / "state"),
        ]

    def _adduser_command(self, conf: Path, email: str, password: str) -> list[str]:
        return [
            self._script("cat2adduser"),
            "--conf",
            str(conf),
            "--statedir",
            str(self.state_dir / "state"),
            "--superuser",
            email,
            password,
        ]

    def _write_config(self) -> Path:
        # 2025.8.7 reads a [subscriber] table, and its address key is ``http``.
        conf = self.state_dir / "caterva2.toml"
        conf.write_text(
            "[subscriber]\n"
            f'http = "127.0.0.1:{self.port}"\n'
            f'urlbase = "{self.url}"\n'
            "login = true\n"
            "register = true\n"
        )
        return conf
