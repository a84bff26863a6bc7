"""CPython's own regression tests for the I/O modules, run natively and inside the enclave, compared test by test.

Each module runs through `cpython_runner.py` (a real file of this package, copied into a scratch directory so that
the directory on the runner's sys.path holds nothing else), once natively and once per backend.  A test that hangs
or kills the process is recorded and the module restarted without it, until it finishes or its time cap is spent.
The outcome is kept by `store` and the docs section is rendered from it.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import store as compat_store
from .runs import child_env, clip, run_command, uncaught_exception

RUNNER = Path(__file__).resolve().with_name("cpython_runner.py")

# The modules issue 18 measures (>= 95 % of the natively passing tests must pass inside on each backend).
CPYTHON_MODULES = ("test_fileio", "test_file", "test_genericpath", "test_posixpath", "test_shutil", "test_tempfile",
                   "test_glob", "test_pathlib", "test_os", "test_io", "test_socket", "test_selectors", "test_select",
                   "test_time", "test_asyncio.test_sock_lowlevel", "test_asyncio.test_streams", "test_socketserver",
                   "test_httpservers", "test_urllib2_localnet", "test_logging", "test_zipfile", "test_tarfile")

# Resources (`python -m test -u`) enabled for one module: test_socketserver requires "network" for the whole
# module, yet its servers and clients only use the loopback interface and unix sockets.
CPYTHON_RESOURCES: dict[str, tuple[str, ...]] = {"test_socketserver": ("network",)}


@dataclasses.dataclass
class TestRun:
    """One module's tests, run once (natively or inside one backend)."""

    statuses: dict[str, tuple[str, str]]  # test id -> (pass | fail | error | skip, reason)
    seconds: float
    complete: bool
    note: str = ""
    durations: dict[str, float] = dataclasses.field(default_factory=dict)  # test id -> seconds

    def slowest(self, n: int = 5) -> list[tuple[str, float]]:
        return sorted(self.durations.items(), key=lambda kv: -kv[1])[:n]

    def count(self, *status: str) -> int:
        return sum(1 for s, _ in self.statuses.values() if s in status)


def parse_results(text: str, durations: dict[str, float] | None = None
                  ) -> tuple[dict[str, tuple[str, str]], str | None, bool]:
    """(statuses, the test started but never finished, whether DONE was reached); fills `durations`."""
    statuses: dict[str, tuple[str, str]] = {}
    started = None
    done = False
    for line in text.splitlines():
        parts = line.split("\t")
        if parts[0] == "START" and len(parts) > 1:
            started = parts[1]
        elif parts[0] == "DONE":
            done = True
        elif parts[0] in ("pass", "fail", "error", "skip") and len(parts) > 1:
            statuses[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "")
            if durations is not None and len(parts) > 3:
                try:
                    durations[parts[1]] = float(parts[3])
                except ValueError:
                    pass
            if parts[1] == started:
                started = None
    return statuses, started, done


def run_test_module(module: str, backend: str | None, module_timeout: float, test_timeout: float,
                    say: Callable[[str], None], pythonpath: Sequence[str] = (),
                    resources: Sequence[str] = ()) -> TestRun:
    """Run one regression-test module; a hung or crashing test is recorded and the module restarted without it,
    until it finishes or the module's time budget is spent."""
    scratch = Path(tempfile.mkdtemp(prefix="posix-shim-cpython-"))
    try:
        runner = scratch / RUNNER.name
        shutil.copyfile(RUNNER, runner)
        results = scratch / "results.txt"
        tmp = scratch / "tmp"
        tmp.mkdir()
        env = child_env({"TMPDIR": str(tmp), "PYTHONDONTWRITEBYTECODE": "1"})
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([*pythonpath, env["PYTHONPATH"]])
        statuses: dict[str, tuple[str, str]] = {}
        durations: dict[str, float] = {}
        deadline = time.monotonic() + module_timeout
        t0 = time.monotonic()
        complete = False
        note = ""
        for _attempt in range(20):
            remaining = deadline - time.monotonic()
            if remaining <= 5:
                note = f"time cap of {module_timeout:.0f} s reached"
                break
            skip = "\n".join(statuses)
            cmd = [str(runner), module, str(results), str(test_timeout), skip, ",".join(resources)]
            full = [sys.executable, *cmd] if backend is None else [
                sys.executable, "-m", "posix_shim", "--backend", backend, "-A", *cmd]
            work = scratch / "cwd"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            res = run_command(full, work, remaining, env)
            found, hung, done = parse_results(results.read_text() if results.exists() else "", durations)
            statuses.update(found)
            if done:
                complete = True
                break
            if res.timed_out:
                note = f"time cap of {module_timeout:.0f} s reached"
                if hung:
                    statuses[hung] = ("error", "still running at the module's time cap")
                break
            if hung:
                reason = "hung (per-test timeout)" if "Timeout" in res.stderr else (
                    f"the test process died (exit {res.returncode})")
                exc = uncaught_exception(res.stderr)
                statuses[hung] = ("error", reason if exc is None else f"{reason}: {exc}")
                say(f"    {module}: {hung} {reason}; restarting without it")
                continue
            exc = uncaught_exception(res.stderr)
            tail = res.stderr.strip().splitlines()[-1:] or ["no output"]
            note = f"the test process failed (exit {res.returncode}): {clip(str(exc) if exc else tail[0], 200)}"
            break
        return TestRun(statuses, time.monotonic() - t0, complete, note, durations)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclasses.dataclass
class ModuleComparison:
    module: str
    native: TestRun
    enclave: dict[str, TestRun]


def test_package_available() -> str | None:
    """None when the `test` package can be used, otherwise why not."""
    try:
        importlib.import_module("test.support")
    except ImportError as exc:
        return f"this interpreter has no usable `test` package ({exc}); install the python3-test package or " \
               f"use a Python built with its test suite"
    return None


def run_cpython(modules: Sequence[str], backends: Sequence[str], module_timeout: float, test_timeout: float,
                say: Callable[[str], None]) -> list[ModuleComparison]:
    out = []
    for i, module in enumerate(modules, 1):
        say(f"[{i}/{len(modules)}] {module}: native ...")
        dotted = module if module.startswith("test.") else f"test.{module}"
        resources = CPYTHON_RESOURCES.get(module, ())
        native = run_test_module(dotted, None, module_timeout, test_timeout, say, resources=resources)
        say(f"    native: {native.count('pass')} passed, {native.count('fail', 'error')} failed, "
            f"{native.count('skip')} skipped in {native.seconds:.0f} s {native.note}")
        enclave = {}
        for backend in backends:
            say(f"    {backend} ...")
            run = run_test_module(dotted, backend, module_timeout, test_timeout, say, resources=resources)
            both = sum(1 for t, (s, _) in native.statuses.items()
                       if s == "pass" and run.statuses.get(t, ("",))[0] == "pass")
            say(f"    {backend}: {run.count('pass')} passed, {run.count('fail', 'error')} failed, "
                f"{run.count('skip')} skipped in {run.seconds:.0f} s; {both} of {native.count('pass')} native "
                f"passes {run.note}")
            enclave[backend] = run
        out.append(ModuleComparison(module, native, enclave))
    return out


def render_cpython(results: Sequence[ModuleComparison], backends: Sequence[str], module_timeout: float,
                   test_timeout: float, unavailable: str | None = None) -> str:
    """The section for these results alone (the command line merges into the stored results instead)."""
    if unavailable:
        return f"## CPython's regression tests\n\nNot run: {unavailable}.\n"
    return compat_store.render(record_cpython(results, backends, module_timeout, test_timeout, {}))


def record_cpython(results: Sequence[ModuleComparison], backends: Sequence[str], module_timeout: float,
                   test_timeout: float, store: dict[str, Any]) -> dict[str, Any]:
    """`store` (compat_store's results) with these modules' entries put in."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    entries = [compat_store.summarize(r.module, r.native, {b: r.enclave[b] for b in backends}, now,
                                      platform.python_version()) for r in results]
    return compat_store.merge(store or {"modules": []}, entries, CPYTHON_MODULES, module_timeout, test_timeout)
