"""Secrets stay secret, the state is owner-only, TLS is verified, symlinks stay inside.

* A distinctive password (and the login cookie the server hands out for it) never shows
  up in anything cat2sync prints, logs, reports or raises: every CLI command's output,
  the daemon's log at debug level in text and JSON, event messages, ``status --json``,
  the string of every error, and the files of the state folder.
* The state folder is 0o700 and every file holding a secret is 0o600, even under a
  permissive umask.
* TLS certificates are verified by default; a private CA bundle is an option.
* Symlinks that leave the watched tree are not followed unless the rule says so.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import shutil
import socket
import ssl
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cat2sync import Client
from cat2sync.daemon import Daemon
from cat2sync.errors import AuthenticationError, Cat2Error, TransportError
from cat2sync.events import Event
from cat2sync.manifest import load_manifest
from cat2sync.server import LocalServer
from cat2sync.testing import ALICE, wait_until, write_manifest
from tests.helpers.cli import cli_env, daemon_process, run_cli
from tests.helpers.compare import compare_remote
from tests.helpers.faults import CONVERGE, JWT, STATS, FaultStats, array_file
from tests.helpers.proxy import FaultProxy
from tests.helpers.remote import remote_files

pytestmark = pytest.mark.faults

CANARY = "c2s-Canary#pw-4d7f1e"
WRONG = "c2s-WrongCanary#pw-93be"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def canary(server: LocalServer) -> tuple[str, str]:
    """A user of the session server whose password is easy to grep for."""
    email = f"canary-{uuid.uuid4().hex[:8]}@example.com"
    server.add_user(email, CANARY)
    return email, CANARY


def _assert_clean(texts: list[str], *secrets: str) -> None:
    for secret in secrets:
        leaks = [t for t in texts if secret in t]
        STATS.leak("secret in an output", len(leaks))
        assert not leaks, f"{secret[:6]}... appears in:\n{leaks[0][-2000:]}"
    jwts = [t for t in texts if JWT.search(t)]
    STATS.leak("login cookie (JWT) in an output", len(jwts))
    assert not jwts, jwts[0][-2000:]


def test_password_and_cookie_never_appear(
    tmp_path: Path,
    server: LocalServer,
    canary: tuple[str, str],
    data_dir: Path,
    fault_stats: FaultStats,
) -> None:
    email, password = canary
    remote = f"@personal/sec-{uuid.uuid4().hex[:6]}"
    with Client(server.url, canary) as own:  # remote content for a subscription
        (tmp_path / "remote.json").write_text('{"remote": 1}')
        own.upload(tmp_path / "remote.json", f"{remote}/src/remote.json")
    array_file(data_dir / "frames.b2nd", np.arange(200.0).reshape(20, 10), chunks=(5, 10))
    (data_dir / "broken.b2nd").write_bytes(b"b2frame, but cut short")  # an error to report
    rules: dict[str, Any] = {
        "upload": [
            {"name": "up", "local": str(data_dir), "remote": f"{remote}/up", "settle": "0.2s"}
        ],
        "subscribe": [
            {"name": "down", "root": f"{remote}/src", "local": str(tmp_path / "m"), "every": "1s"}
        ],
    }
    env = cli_env(C2S_SEC_PW=password, C2S_SEC_WRONG=WRONG)
    by_env = write_manifest(
        tmp_path / "env.toml", url=server.url, username=email, password="${C2S_SEC_PW}", **rules
    )
    secret_file = tmp_path / "pw.txt"
    secret_file.write_text(password + "\n")
    secret_file.chmod(0o600)
    (tmp_path / "f").mkdir()
    by_file = write_manifest(
        tmp_path / "f" / "file.toml",
        url=server.url,
        username=email,
        server={"password_file": str(secret_file)},
        **rules,
    )
    (tmp_path / "w").mkdir()
    wrong = write_manifest(
        tmp_path / "w" / "wrong.toml",
        url=server.url,
        username=email,
        password="${C2S_SEC_WRONG}",
        **rules,
    )
    (tmp_path / "d").mkdir()
    down = write_manifest(
        tmp_path / "d" / "down.toml",
        url=f"http://127.0.0.1:{_closed_port()}",
        username=email,
        password="${C2S_SEC_PW}",
        **rules,
    )
    texts: list[str] = []

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = run_cli(*args, env=env)
        texts.extend([done.stdout, done.stderr])
        return done

    assert run("validate", str(by_env)).returncode == 0
    assert run("--log-level", "debug", "once", str(by_env)).returncode == 1  # broken.b2nd
    assert run("status", "--json", str(by_env)).returncode == 0
    assert run("status", str(by_env)).returncode == 0
    assert run("--log-level", "debug", "--log-format", "json", "once", str(by_file)).returncode == 1
    failed = run("--log-level", "debug", "once", str(wrong))
    assert failed.returncode == 1 and "wrong username or password" in failed.stderr
    failed = run("--log-level", "debug", "once", str(down))
    assert failed.returncode == 1 and "127.0.0.1" in failed.stderr
    fault_stats.fault("wrong password / unreachable server (secrets check)", 2)
    assert "Traceback" not in "".join(texts)

    # The daemon itself, briefly, at debug level in both log formats.
    for fmt in ("text", "json"):
        log = tmp_path / f"run-{fmt}.log"
        with daemon_process(
            by_env, log, env=env, args=["--log-level", "debug", "--log-format", fmt]
        ) as proc:
            proc.wait_ready()
            (data_dir / f"during-{fmt}.json").write_text("{}")
            with Client(server.url, canary) as own:
                wait_until(
                    lambda f=fmt, c=own: f"during-{f}.json" in remote_files(c, f"{remote}/up"),
                    timeout=CONVERGE,
                    message="an upload while running",
                )
            assert proc.stop() == 0
        texts.append(log.read_text())

    # In-process: events, the log records, error strings, and the cookie the client holds.
    events: list[Event] = []
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("cat2sync")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        daemon = Daemon(load_manifest(by_env, env={"C2S_SEC_PW": password}), emit=events.append)
        try:
            daemon.once()
            client = daemon.clients["default"]
            cookie = client._t._http.cookies.get("c2subauth")  # the login cookie
            texts += [
                repr(daemon.manifest),
                repr(client),
                repr(daemon.clients),
                str(daemon.server_urls),
                repr(client._t.credentials),
            ]
        finally:
            daemon.close()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert cookie and len(cookie) > 40
    texts += [e.describe() for e in events] + [repr(e) for e in events] + records
    errors: list[Cat2Error] = []
    for url, auth in ((server.url, (email, WRONG)), (f"http://127.0.0.1:{_closed_port()}", canary)):
        with pytest.raises(Cat2Error) as info:
            Client(url, auth, retries=0)
        errors.append(info.value)
    assert isinstance(errors[0], AuthenticationError)
    assert isinstance(errors[1], TransportError)
    texts += [f"{e} {e!r} {e.args}" for e in errors]
    # Nothing in the state folders either (the database, the lock, scratch files).
    for state in (tmp_path / "state", tmp_path / "f" / "state"):
        texts += [p.read_bytes().decode(errors="replace") for p in state.rglob("*") if p.is_file()]

    _assert_clean(texts, password, WRONG, cookie)


def test_state_folder_and_secret_files_are_owner_only(
    tmp_path: Path, fault_stats: FaultStats
) -> None:
    """An embedded server (no ``[server]`` table), under umask 000, with the state folder
    created beforehand as 0o755."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.json").write_text('{"a": 1}')
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    manifest = write_manifest(
        tmp_path / "cat2sync.toml",
        url=None,
        upload=[{"name": "up", "local": str(data), "remote": "@personal/x", "settle": "0s"}],
    )
    done = run_cli("once", str(manifest), env=cli_env(), umask=0)
    assert done.returncode == 0, done.stderr
    fault_stats.fault("permissive umask 000 (permissions check)")
    home = state / "server" / "default"
    password = (home / "password").read_text().strip()
    secret = (home / "secret").read_text().strip()
    assert len(password) >= 16 and len(secret) >= 32

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(state) == 0o700
    assert mode(home) == 0o700
    holders = [
        p
        for p in state.rglob("*")
        if p.is_file()
        and (password.encode() in p.read_bytes() or secret.encode() in p.read_bytes())
    ]
    assert sorted(p.name for p in holders) == ["password", "secret"]
    for path in holders:
        assert mode(path) == 0o600, (path, oct(mode(path)))
    assert mode(state / "lock") == 0o600
    output = done.stdout + done.stderr
    assert str(home / "password") in output  # says where the password is kept ...
    _assert_clean([output], password, secret)  # ... never what it is


# -- TLS ----------------------------------------------------------------------------------


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """``(CA bundle, server certificate, server key)`` for 127.0.0.1, from a private CA."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        return _certificates_openssl(folder)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cat2sync test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def _certificates_openssl(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA bundle), with openssl(1)."""
    if shutil.which("openssl") is None:
        pytest.skip(
            "neither the cryptography package nor the openssl command is available "
            "to make a test certificate"
        )
    cert, key = folder / "server.pem", folder / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, cert, key


@pytest.fixture
def tls_proxy(tmp_path: Path, server: LocalServer) -> Iterator[tuple[FaultProxy, Path]]:
    """The session server behind a TLS-terminating loopback proxy; yields it and the CA."""
    ca, cert, key = _certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with FaultProxy(server.port, ssl_context=context) as proxy:
        yield proxy, ca


def test_tls_is_verified_by_default(
    tmp_path: Path,
    tls_proxy: tuple[FaultProxy, Path],
    data_dir: Path,
    client: Client,
    remote_dir: str,
    fault_stats: FaultStats,
) -> None:
    """Uses the fault proxy to terminate TLS (with a certificate from a private CA) in
    front of the real server."""
    proxy, ca = tls_proxy
    with pytest.raises(TransportError, match=r"(?i)certificate"):
        Client(proxy.url, ALICE, retries=0)
    fault_stats.fault("untrusted TLS certificate")
    with Client(proxy.url, ALICE, verify=str(ca)) as trusting:
        assert "@personal" in trusting.get_roots()

    # The same through the daemon: refused by default, accepted with `verify = CA bundle`.
    (data_dir / "a.json").write_text('{"tls": true}')
    rules = [{"name": "up", "local": str(data_dir), "remote": remote_dir, "settle": "0s"}]
    refused = write_manifest(
        tmp_path / "refused.toml",
        url=proxy.url,
        username=ALICE[0],
        password=ALICE[1],
        upload=rules,
    )
    done = run_cli("once", str(refused), env=cli_env())
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "certificate" in lines[0].lower(), done.stderr
    (tmp_path / "ok").mkdir()
    trusted = write_manifest(
        tmp_path / "ok" / "trusted.toml",
        url=proxy.url,
        username=ALICE[0],
        password=ALICE[1],
        upload=rules,
        server={"verify": str(ca)},
    )
    done = run_cli("once", str(trusted), env=cli_env())
    assert done.returncode == 0, done.stderr
    tally = compare_remote(client, remote_dir, {"a.json": data_dir / "a.json"})
    fault_stats.add(tally)
    assert tally.ok, tally.problems


# -- symlinks -----------------------------------------------------------------------------


def test_symlinks_leaving_the_tree(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    fault_stats: FaultStats,
) -> None:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.json").write_text('{"outside": "the tree"}')
    (outside / "dir" / "deep.json").write_text('{"outside": "a folder"}')
    (data_dir / "inside.json").write_text('{"inside": true}')
    (data_dir / "sub").mkdir()
    (data_dir / "sub" / "nested.json").write_text('{"nested": true}')
    (data_dir / "link-out.json").symlink_to(outside / "secret.json")
    (data_dir / "link-dir").symlink_to(outside / "dir", target_is_directory=True)
    (data_dir / "link-in.json").symlink_to(data_dir / "inside.json")
    fault_stats.fault("symlinks out of the watched tree", 2)

    def once(name: str, **rule: Any) -> list[str]:
        (tmp_path / name).mkdir()
        manifest = write_manifest(
            tmp_path / name / "cat2sync.toml",
            url=server.url,
            username=ALICE[0],
            password=ALICE[1],
            upload=[
                {
                    "name": "up",
                    "local": str(data_dir),
                    "remote": f"{remote_dir}/{name}",
                    "settle": "0s",
                    **rule,
                }
            ],
        )
        daemon = Daemon(load_manifest(manifest))
        try:
            assert daemon.once() == 0
        finally:
            daemon.close()
        return remote_files(client, f"{remote_dir}/{name}")

    assert once("default") == ["inside.json", "sub/nested.json"]
    # Followed on request: into files anywhere, into folders only inside the tree.
    assert once("follow", follow_symlinks=True) == [
        "inside.json",
        "link-in.json",
        "link-out.json",
        "sub/nested.json",
    ]
    tally = compare_remote(
        client,
        f"{remote_dir}/follow",
        {
            "inside.json": data_dir / "inside.json",
            "link-in.json": data_dir / "inside.json",
            "link-out.json": outside / "secret.json",
            "sub/nested.json": data_dir / "sub/nested.json",
        },
    )
    fault_stats.add(tally)
    assert tally.ok, tally.problems


def test_symlink_loop_inside_the_tree(
    tmp_path: Path,
    server: LocalServer,
    client: Client,
    remote_dir: str,
    data_dir: Path,
    fault_stats: FaultStats,
) -> None:
    (data_dir / "a.json").write_text('{"a": 1}')
    (data_dir / "sub").mkdir()
    (data_dir / "sub" / "b.json").write_text('{"b": 1}')
    (data_dir / "sub" / "up").symlink_to("..", target_is_directory=True)  # a loop
    fault_stats.fault("symlink loop inside the watched tree")
    manifest = write_manifest(
        tmp_path / "cat2sync.toml",
        url=server.url,
        username=ALICE[0],
        password=ALICE[1],
        upload=[
            {
                "name": "up",
                "local": str(data_dir),
                "remote": remote_dir,
                "settle": "0s",
                "follow_symlinks": True,
            }
        ],
    )
    daemon = Daemon(load_manifest(manifest))
    try:
        assert daemon.once() == 0
    finally:
        daemon.close()
    assert remote_files(client, remote_dir) == ["a.json", "sub/b.json"]
