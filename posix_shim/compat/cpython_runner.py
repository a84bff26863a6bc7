"""Run one module of CPython's regression tests and write one line per finished test (the `cpython` section).

    python cpython_runner.py MODULE RESULTS PER_TEST_SECONDS [SKIP_IDS [RESOURCES]]

`posix_shim.compat.cpython` copies this file into each scratch directory and runs it there twice, as
`python cpython_runner.py ...` and as `python -m posix_shim --backend B -A cpython_runner.py ...`: the same code
both ways, so the two runs differ only by the enclave.  It is a script, not an import of posix_shim: it must
import nothing but the standard library, so that inside the enclave it measures the tests and not us.

Lines, tab-separated, flushed as written, so that a run cut short by the time cap still counts what finished:
`START id` when a test starts (a START with no result names the test that hung or crashed the process),
`STATUS id reason seconds` when it ends (STATUS: pass, fail, error, skip), `STATUS id reason` for an error or
skip of a class or module fixture, and `DONE seconds` at the end.  SKIP_IDS (newline-separated) are left out:
the caller restarts a module without the test that hung it.
"""

from __future__ import annotations

import faulthandler
import importlib
import sys
import time
import unittest
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import OptExcInfo


def clean(text: object) -> str:
    """One field of a line: no tabs or newlines, at most 300 characters."""
    return str(text).replace("\t", " ").replace("\n", " ")[:300]


def why(err: OptExcInfo) -> str:
    """A failure's reason: the exception's type and message."""
    return clean(type(err[1]).__name__ + ": " + str(err[1]))


class Result(unittest.TestResult):
    """One line per test; errors and skips of a class or module fixture get a line of their own."""

    def __init__(self, out: IO[str], per_test: float) -> None:
        super().__init__()
        self.out = out
        self.per_test = per_test
        self.current: str | None = None
        self.status: tuple[str, str] | None = None
        self.t0 = 0.0

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self.current, self.status, self.t0 = test.id(), None, time.monotonic()
        self.out.write(f"START\t{self.current}\n")
        # A hung test ends the process with a traceback; the caller restarts the module without it.
        faulthandler.dump_traceback_later(self.per_test, exit=True)

    def _set(self, test: unittest.TestCase, status: str, reason: str = "") -> None:
        if test.id() != self.current:  # setUpClass / setUpModule (an _ErrorHolder)
            self.out.write(f"{status}\t{test.id()}\t{clean(reason)}\n")
        elif self.status is None or status in ("fail", "error"):
            self.status = (status, reason)

    def addSuccess(self, test: unittest.TestCase) -> None:
        self._set(test, "pass")

    def addFailure(self, test: unittest.TestCase, err: OptExcInfo) -> None:
        self._set(test, "fail", why(err))

    def addError(self, test: unittest.TestCase, err: OptExcInfo) -> None:
        self._set(test, "error", why(err))

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: OptExcInfo | None) -> None:
        if err is not None and err[0] is not None:
            self._set(test, "fail" if issubclass(err[0], test.failureException) else "error", why(err))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        self._set(test, "skip", str(reason))

    def addExpectedFailure(self, test: unittest.TestCase, err: OptExcInfo) -> None:
        self._set(test, "pass", "expected failure")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        self._set(test, "fail", "unexpected success")

    def stopTest(self, test: unittest.TestCase) -> None:
        faulthandler.cancel_dump_traceback_later()
        if test.id() != self.current:  # 3.12+: a skipped test gets stopTest without startTest; its line is out
            super().stopTest(test)
            return
        status, reason = self.status or ("pass", "")
        self.out.write(f"{status}\t{self.current}\t{clean(reason)}\t{time.monotonic() - self.t0:.2f}\n")
        self.current = None
        super().stopTest(test)


def prune(suite: Iterable[unittest.TestSuite | unittest.TestCase], skip: set[str]) -> unittest.TestSuite:
    """The suite without the tests named in `skip`, its nesting (class and module fixtures) kept."""
    kept = unittest.TestSuite()
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            kept.addTest(prune(t, skip))
        elif t.id() not in skip:
            kept.addTest(t)
    return kept


def main(argv: list[str]) -> int:
    # Here, not at the top: importing this module (mypy, tests) needs no `test` package (a distribution may
    # ship Python without it).
    support: Any = importlib.import_module("test.support")
    module, results_path, per_test = argv[0], argv[1], float(argv[2])
    skip = set(argv[3].split("\n")) if len(argv) > 3 and argv[3] else set()
    # As `python -m test` without -u (no network, no cpu-heavy tests), plus any resource named for this module.
    support.use_resources = argv[4].split(",") if len(argv) > 4 and argv[4] else []
    with open(results_path, "a", buffering=1, encoding="utf-8") as out:
        t0 = time.monotonic()
        suite = prune(unittest.defaultTestLoader.loadTestsFromName(module), skip)
        suite.run(Result(out, per_test))
        out.write(f"DONE\t{time.monotonic() - t0:.1f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
