"""``python -P -W error fresh_imports.py MODULE...``: import each module in a process of
its own in which no module of cat2sync was imported yet, so that everything it runs at
import time runs, and any warning is an error. Prints the modules that failed (their
tracebacks on stderr) and exits 1 if any did.

cat2sync's dependencies are imported once first, in this process (under ``-W error``
too): that only saves each child the time.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import re
import sys
import traceback
import warnings


def _import_dependencies() -> None:
    for requirement in importlib.metadata.requires("cat2sync") or ():
        if "extra ==" in requirement:
            continue
        found = re.match(r"[\w.-]+", requirement)
        assert found is not None, requirement
        # A distribution whose module has another name is imported by each child instead.
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(found.group().lower().replace("-", "_"))


def _fork() -> int:
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process with threads (the dependencies'
        # thread pools): the child only imports, it takes none of their locks.
        warnings.filterwarnings("ignore", r"This process .* is multi-threaded", DeprecationWarning)
        return os.fork()


def _imports_in_a_child(module: str) -> bool:
    pid = _fork()
    if pid == 0:
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return status == 0


def main(modules: list[str]) -> int:
    _import_dependencies()
    failed = [module for module in modules if not _imports_in_a_child(module)]
    print("\n".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
