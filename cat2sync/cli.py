"""The ``cat2sync`` command: argument parsing, exit codes and human output.

Exit codes: 0 success, 1 something failed (``once``), 2 bad usage or manifest.
Explained errors print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, status
from .errors import Cat2Error, ConfigError, ManifestError, StateLockedError
from .events import human_bytes, printable
from .manifest import HttpAddress, Manifest, load_manifest, parse_address, starter_manifest
from .plugins.manager import Plugins
from .progress import Progress, ProgressHandler, Snapshot

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("cat2sync")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; keep the daemon's log about files, not requests.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    for noisy in ("watchfiles", "tzlocal"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cat2sync",
        description="Keep Blosc2/HDF5 data flowing between local folders and Caterva2 servers.",
    )
    parser.add_argument("--version", action="version", version=f"cat2sync {__version__}")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="override the manifest's daemon.log_level",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text for people (default), json for log collectors",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the daemon in the foreground until SIGINT/SIGTERM",
        description="Reconcile every rule, then watch the folders and keep "
        "the server in step; logs one 'ready' line once the watches are armed.",
    )
    run.add_argument("manifest", type=Path)
    run.add_argument(
        "--http",
        type=_http_address,
        metavar="ADDR",
        help="serve the status page, /metrics and /status.json at HOST:PORT "
        "(or PORT, on 127.0.0.1), instead of the manifest's daemon.http",
    )

    once = sub.add_parser(
        "once",
        help="one full pass of every rule, then exit",
        description="Exit code 1 when any file failed.",
    )
    once.add_argument("manifest", type=Path)
    once.add_argument(
        "--full",
        action="store_true",
        help="subscriptions list their whole folders and ask about every file, "
        "whatever the change journals say (catches writers that keep no journal)",
    )

    validate = sub.add_parser("validate", help="check a manifest and exit")
    validate.add_argument("manifest", type=Path)

    status = sub.add_parser(
        "status",
        help="per rule: is it keeping up (moved, backlog, last success, errors, server)",
    )
    status.add_argument("manifest", type=Path)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    check = sub.add_parser(
        "verify",
        help="compare every synced file with the server's copy",
        description="Compare every file an upload rule shipped and every file a "
        "subscription mirrored with the server's copy (data of datasets, bytes of other "
        "files). One line per missing or different file; exit code 0 when all match, 1 "
        "otherwise, 2 for a bad manifest. Works while the daemon runs.",
    )
    check.add_argument("manifest", type=Path)
    check.add_argument("--rule", metavar="NAME", help="only this rule")
    check.add_argument("--json", action="store_true", help="machine-readable report")

    plugins = sub.add_parser("plugins", help="list plugins, their versions and hooks")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    init = sub.add_parser("init", help="write a starter manifest")
    init.add_argument("--server", help="server URL (default: an embedded local server)")
    init.add_argument("--username", help="login for the server")
    init.add_argument(
        "--upload",
        action="append",
        default=[],
        metavar="LOCAL:REMOTE",
        help="watch LOCAL and upload into REMOTE (repeatable)",
    )
    init.add_argument(
        "--subscribe",
        action="append",
        default=[],
        metavar="REMOTE:LOCAL",
        help="mirror REMOTE into LOCAL (repeatable)",
    )
    init.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("cat2sync.toml"),
        help="where to write it (default: cat2sync.toml; '-' for stdout)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


def _http_address(text: str) -> HttpAddress:
    try:
        return HttpAddress(*parse_address(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _plugins() -> Plugins:
    try:
        return Plugins()
    except Exception as exc:  # an installed plugin that does not import
        raise Cat2Error(f"cannot load plugins: {exc.__class__.__name__}: {exc}") from exc


def _load(
    path: Path,
    plugins: Plugins | None = None,
    *,
    check_paths: bool = True,
) -> Manifest:
    """The manifest, with plugin tables and transform names checked."""
    plugins = plugins or _plugins()
    manifest = load_manifest(
        path, plugin_settings=plugins.declared_settings(), check_paths=check_paths
    )
    plugins.check_manifest(manifest)
    plugins.configure(manifest)  # plugins check their own tables here
    return manifest


def _cmd_validate(args: argparse.Namespace) -> int:
    manifest = _load(args.manifest)
    print(
        f"{args.manifest}: ok ({len(manifest.uploads)} upload, "
        f"{len(manifest.subscriptions)} subscribe, {len(manifest.lazyexprs)} lazyexpr rules)"
    )
    return EXIT_OK


def _make_daemon(manifest: Manifest, plugins: Plugins, args: argparse.Namespace) -> Any:
    from .daemon import Daemon  # imports numpy/blosc2/httpx: only for commands that sync

    _setup_logging(
        args.log_level or manifest.daemon.log_level, args.log_format or manifest.daemon.log_format
    )
    return Daemon(manifest, plugins=plugins, http=getattr(args, "http", None))


def _cmd_run(args: argparse.Namespace) -> int:
    plugins = _plugins()
    manifest = _load(args.manifest, plugins)
    daemon = _make_daemon(manifest, plugins, args)
    stop = lambda *_: daemon.stop()  # noqa: E731
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        daemon.run()
    finally:
        log.info("stopping")
        daemon.close()
    log.info("stopped; state saved in %s", manifest.daemon.state_dir)
    return EXIT_OK


def _cmd_once(args: argparse.Namespace) -> int:
    plugins = _plugins()
    manifest = _load(args.manifest, plugins)
    daemon = _make_daemon(manifest, plugins, args)
    progress = _start_progress(daemon) if sys.stdout.isatty() else None
    try:
        failures = daemon.once(full=args.full)
    finally:
        if progress is not None:
            progress.stop()
        daemon.close()
    if failures:
        print(f"cat2sync: {failures} file(s) failed; see the log above", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _start_progress(daemon: Any) -> Progress:
    """A progress line on the terminal, with the log printed above it."""
    progress = Progress(daemon.snapshot, sys.stdout)
    root = logging.getLogger()
    root.handlers[:] = [ProgressHandler(h, progress) for h in root.handlers]
    progress.start()
    return progress


def _cmd_status(args: argparse.Namespace) -> int:
    # A watched folder that is missing (unmounted) is exactly when status is wanted.
    manifest = _load(args.manifest, check_paths=False)
    doc = status.report(manifest)
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    for name, rule in doc["rules"].items():
        print("\n".join(_rule_lines(name, rule, doc["servers"][rule["server"]])))
    return EXIT_OK


def _rule_lines(name: str, rule: dict[str, Any], server: dict[str, Any]) -> list[str]:
    """A rule for people: is it keeping up, and if not, why."""
    lines = [
        f"{name}: last pass {rule['last_pass'] or 'never'}, "
        f"last success {rule['last_success'] or 'never'}: {_verdict(rule)}"
    ]
    moved = ", ".join(f"{m['files']} {kind}" for kind, m in rule["moved"].items())
    lines.append(
        f"  moved: {moved or 'nothing yet'} ({human_bytes(rule['bytes_up'])} up, "
        f"{human_bytes(rule['bytes_down'])} down)"
    )
    if rule["pending"]:
        age = _age(rule["oldest_pending_age"])
        lines.append(f"  backlog: {rule['pending']} file(s), the oldest waiting for {age}")
    if rule["last_error"]:
        retry = f" (next retry {rule['next_retry']})" if rule["next_retry"] else ""
        lines.append(f"  last error: {rule['last_error']}{retry}")
    if rule["conflicts"]:
        latest = rule["latest_conflicts"][0]
        where = f" -> {latest['copy']}" if latest["copy"] else " (skipped)"
        lines.append(
            f"  conflicts: {rule['conflicts']} kept, the latest {latest['time']}: "
            f"{printable(latest['path'])}{printable(where)}"
        )
    lines.append(f"  server {rule['server']}: {_answered(server)}")
    return lines


def _verdict(rule: dict[str, Any]) -> str:
    if rule["pass_error"] or rule["last_error"]:
        return "NOT keeping up (see the last error)"
    if rule["pending"]:
        return f"catching up ({rule['pending']} waiting)"
    return "keeping up" if rule["last_pass"] else "no pass yet"


def _answered(server: dict[str, Any]) -> str:
    where = server["url"] or "embedded"
    if server["answered"] is None:
        return f"{where}, no request recorded yet"
    answer = "answered" if server["answered"] else "did NOT answer"
    return f"{where}, {answer} at the last attempt (so since {server['since']})"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _pair(text: str, flag: str) -> tuple[str, str]:
    left, sep, right = text.rpartition(":") if text.startswith("@") else text.partition(":")
    if not sep or not left or not right:
        raise ManifestError(flag, "", f"expected A:B, got {text!r}")
    return left, right


def _cmd_init(args: argparse.Namespace) -> int:
    try:
        text = starter_manifest(
            server=args.server,
            username=args.username,
            uploads=[_pair(u, "--upload") for u in args.upload],
            subscriptions=[_pair(s, "--subscribe") for s in args.subscribe],
        )
    except ValueError as exc:
        print(f"cat2sync: init: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if str(args.output) == "-":
        sys.stdout.write(text)
        return EXIT_OK
    if args.output.exists() and not args.force:
        print(f"cat2sync: {args.output} exists (use --force to overwrite)", file=sys.stderr)
        return EXIT_USAGE
    args.output.write_text(text)
    print(f"wrote {args.output}; check it with: cat2sync validate {args.output}")
    return EXIT_OK


def _cmd_plugins(args: argparse.Namespace) -> int:
    infos = _plugins().describe()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "version": i.version,
                        "hooks": list(i.hooks),
                        "builtin": i.builtin,
                    }
                    for i in infos
                ],
                indent=2,
            )
        )
        return EXIT_OK
    for info in infos:
        origin = "built-in" if info.builtin else info.version
        print(f"{info.name} ({origin}): {', '.join(info.hooks) or 'no hooks'}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify  # imports numpy/blosc2/httpx: only for commands that talk

    plugins = _plugins()
    manifest = _load(args.manifest, plugins)
    _setup_logging(args.log_level or "warning", args.log_format or manifest.daemon.log_format)
    latest = [Snapshot(0, 0, 0, 0, ())]

    def on_progress(done: int, total: int, nbytes: int, current: str) -> None:
        latest[0] = Snapshot(done, total, 0, nbytes, (current,))

    progress = None
    if sys.stdout.isatty() and not args.json:
        progress = Progress(lambda: latest[0], sys.stdout)
        progress.start()
    try:
        report = verify(manifest, plugins, rule=args.rule, progress=on_progress)
    finally:
        if progress is not None:
            progress.stop()
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        for f in report.problems:
            print(f"{f.rule}: {printable(f.path)}: {f.problem} ({printable(f.remote)})")
        matching = report.checked - len(report.problems)
        print(f"{report.checked} files checked: {matching} match, {len(report.problems)} do not")
    return EXIT_FAILED if report.problems else EXIT_OK


_COMMANDS = {
    "run": _cmd_run,
    "once": _cmd_once,
    "verify": _cmd_verify,
    "validate": _cmd_validate,
    "status": _cmd_status,
    "init": _cmd_init,
    "plugins": _cmd_plugins,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ManifestError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, StateLockedError) as exc:
        print(f"cat2sync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Cat2Error as exc:
        print(f"cat2sync: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
