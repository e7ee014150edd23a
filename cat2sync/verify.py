"""``cat2sync verify``: prove what the server holds.

Every file an upload rule shipped and every file a subscription mirrored is compared
with the server's copy (:func:`.engine.compare.compare`: the data of datasets, the bytes
of the rest, in bounded memory), whether the daemon runs or not. A file whose local copy
was freed (``delete_local_after``) only needs its server copy to exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

from .client import Client
from .embedded import EmbeddedServers
from .engine.compare import compare
from .engine.names import local_target
from .engine.send import Sender
from .engine.transforms import Chain
from .errors import Cat2Error, NotFound, StateLockedError, UnsafeName
from .manifest import Manifest, SubscribeRule, UploadRule
from .plugins.manager import Plugins
from .records import Mirrored, Shipped
from .state import StateStore

__all__ = ["Finding", "Progress", "Report", "verify"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One file that does not match (``problem`` says how)."""

    rule: str
    path: str
    remote: str
    problem: str


@dataclass(slots=True)
class Report:
    checked: int = 0
    bytes: int = 0  # data compared
    problems: list[Finding] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "matching": self.checked - len(self.problems),
            "bytes_compared": self.bytes,
            "problems": [
                {"rule": f.rule, "path": f.path, "remote": f.remote, "problem": f.problem}
                for f in self.problems
            ],
        }


#: Called as it goes with (files done, files in all, bytes compared, the current file).
Progress = Callable[[int, int, int, str], None]


def verify(
    manifest: Manifest,
    plugins: Plugins,
    *,
    rule: str | None = None,
    progress: Progress | None = None,
) -> Report:
    """Compare every synced file of ``manifest`` (or of the rule named ``rule``).

    :raises Cat2Error: no rule of that name, or a server cannot be reached.
    """
    rules = [r for r in manifest.rules() if rule is None or r.name == rule]
    if not rules:
        raise Cat2Error(f"no rule named {rule!r} in {manifest.source}")
    with _state(manifest) as (state, embedded), contextlib.ExitStack() as stack:
        stack.callback(embedded.stop)
        clients: dict[str, Client] = {}
        for name in sorted({r.server for r in rules}):
            clients[name] = stack.enter_context(embedded.connect(manifest.servers[name]))
        return _Verifier(plugins, state, clients, progress).run(rules)


@contextlib.contextmanager
def _state(manifest: Manifest) -> Iterator[tuple[StateStore, EmbeddedServers]]:
    """The state store, and the embedded servers: started here when no daemon holds the
    state folder, else the running daemon's own (a second server must not share it)."""
    folder = manifest.daemon.state_dir
    try:
        store, running = StateStore(folder), False
    except StateLockedError:
        store, running = StateStore(folder, readonly=True), True
    with store:
        yield store, EmbeddedServers(folder, start=not running)


class _Verifier:
    def __init__(
        self,
        plugins: Plugins,
        state: StateStore,
        clients: dict[str, Client],
        progress: Progress | None,
    ) -> None:
        self.plugins = plugins
        self.state = state
        self.clients = clients
        self.progress = progress
        self.report = Report()
        self._done = 0
        self._total = 0
        self._current = ""

    def run(self, rules: list[UploadRule | SubscribeRule]) -> Report:
        work: list[tuple[str, Callable[[], None]]] = []
        for rule in rules:
            work.extend(self._work(rule))
        self._total = len(work)
        for done, (name, check) in enumerate(work):
            self._done, self._current = done, name
            self._tell(0)
            check()
            self.report.checked += 1
        return self.report

    def _work(self, rule: UploadRule | SubscribeRule) -> Iterator[tuple[str, Callable[[], None]]]:
        if isinstance(rule, UploadRule):
            for rec in self.state.shipped_for_rule(rule.name):
                if not rec.theirs:  # a skipped conflict: nothing of ours there
                    yield rec.relpath, partial(self._shipped, rule, rec)
            return
        for mir in self.state.mirrored_for_rule(rule.name):
            if mir.ours:  # a conflicted local file is the user's, not the server's copy
                yield mir.remote_rel, partial(self._mirrored, rule, mir)

    def _tell(self, nbytes: int) -> None:
        if self.progress is not None:
            self.progress(self._done, self._total, self.report.bytes + nbytes, self._current)

    def _compared(self, start: int) -> Callable[[int], None]:
        """A progress callback for one file, whose bytes add up after ``start``."""

        def on_bytes(nbytes: int) -> None:
            self.report.bytes = start + nbytes
            self._tell(0)

        return on_bytes

    def _problem(self, rule: str, path: str, remote: str, problem: str | None) -> None:
        if problem is not None:
            self.report.problems.append(Finding(rule, path, remote, problem))

    def _shipped(self, rule: UploadRule, rec: Shipped) -> None:
        client = self.clients[rule.server]
        if rec.freed is not None:  # the local copy is gone on purpose
            try:
                client.stat(rec.remote)
            except NotFound:
                self._problem(rule.name, rec.relpath, rec.remote, "freed locally, missing remotely")
            return
        local = rule.local / rec.relpath
        try:
            st = local.stat()
        except FileNotFoundError:
            self._problem(rule.name, rec.relpath, rec.remote, "missing locally")
            return
        if (st.st_size, st.st_mtime_ns) != (rec.size, rec.mtime_ns):
            self._problem(
                rule.name, rec.relpath, rec.remote, "changed locally since it was shipped"
            )
            return
        chain = Chain.build(rule.transforms, self.plugins.transforms, rule.name, "upload")
        sender = Sender(rule, client, self.state, _ignore, self.plugins, chain)
        problem = sender.compare(
            rec.relpath, rec.remote, progress=self._compared(self.report.bytes)
        )
        self._problem(rule.name, rec.relpath, rec.remote, problem)

    def _mirrored(self, rule: SubscribeRule, rec: Mirrored) -> None:
        remote = f"{rule.remote}/{rec.remote_rel}"
        try:
            local = local_target(rule.local, rec.remote_rel)[1]
        except UnsafeName as exc:
            self._problem(rule.name, rec.remote_rel, remote, f"no safe local path: {exc}")
            return
        if not local.exists():
            self._problem(rule.name, rec.remote_rel, remote, "missing locally")
            return
        chain = Chain.build(rule.transforms, self.plugins.transforms, rule.name, "download")
        problem = compare(
            self.clients[rule.server],
            remote,
            local,
            scratch=self.state.state_dir / "tmp",
            chain=chain,
            transformed="local",
            progress=self._compared(self.report.bytes),
        )
        self._problem(rule.name, rec.remote_rel, remote, problem)


def _ignore(_event: object) -> None:
    """Events of a verification: there are none to report."""
