"""The pytest plugin: test your own code under the enclave's rules (docs/pytest.md).

    pytest --enclave            # each test body inside a sim enclave
    pytest --enclave=process    # the whole session inside one process enclave

Registered through the `pytest11` entry point, so installing posix_shim is enough; without `--enclave` it only
adds the `enclave` marker and fixture and changes nothing else.

Why two shapes.  A test body is a closure over fixtures (tmp_path, capsys, monkeypatch, objects of the
project), and none of that is plain data, so it cannot be sent as an ecall to another process.

* **sim**: the enclave lives in the pytest process, so each test's call phase runs inside a fresh sim enclave
  (`session.inside`: interposition installed; the standard streams are given back to pytest's capture), with
  that test's policy.  Collection, fixtures and reporting stay outside, exactly as without the plugin: assertion
  rewriting, tracebacks, capsys and monkeypatch are pytest's own.
* **process**: the pytest process re-runs itself *inside* one process enclave (this module's `__main__` is the
  host; the child runs `pytest` with the same arguments plus `--enclave-inner=SPEC`).  Collection, fixtures and
  tests all run in the child; per-test marks are applied by switching the child's policy for each test, inside
  a bound the host enforces (the session policy plus every mark's grants).  If the marks found at collection
  need grants the host was not started with, the child says so and the session restarts once with them.

Policies are computed once, here in the outer pytest process, with `policy.parse` and sent as plain data
(`Policy.to_data` / `policy.from_data`), so the host and the child judge with the same rules.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from . import policy as policy_mod
from .enclave import BACKENDS, Enclave

if TYPE_CHECKING:
    from pluggy import Result

# Exit status of an inner session that found marks needing grants its host was not started with.
RESTART_STATUS = 86
SPEC_VERSION = 1

# Keyword arguments of @pytest.mark.enclave and the policy flag each one becomes.
MARK_LISTS = {f"{verb}_{kind}": f"--{verb}-{kind}" for verb in ("allow", "deny") for kind in
              ("read", "write", "net", "env")}
MARK_BOOLS = {"allow_ffi": "--allow-ffi", "allow_run": "--allow-run"}
MARK_KEYS = (*MARK_LISTS, *MARK_BOOLS, "backend")


def _package_dir(file: str | None) -> str:
    if file is None:  # a namespace package has no __init__.py; these three are regular packages
        raise ImportError("posix_shim's own packages must be regular packages (with __init__.py)")
    return os.path.dirname(os.path.abspath(file)) + os.sep


_INTERNAL_DIRS = tuple(_package_dir(m) for m in (
    __file__, __import__("enclave_libc").__file__, __import__("ocall_bridge").__file__))

_HINT = re.compile(r"allow with --allow-(read|write|net|env)=([^\s,)]+)")


# ---------------------------------------------------------------------------------------------------------------
# Options and configuration
# ---------------------------------------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("posix_shim", "run tests inside a posix_shim enclave (docs/pytest.md)")
    group.addoption("--enclave", nargs="?", const="sim", default=None, choices=BACKENDS, metavar="BACKEND",
                    help="run every test inside an enclave: sim (default: each test body in a sim enclave) or "
                         "process (the whole session inside one process enclave)")
    group.addoption("--enclave-policy", metavar="FILE", default=None,
                    help="the policy for the tests (default: [tool.posix_shim] of the nearest pyproject.toml)")
    group.addoption("--enclave-trace", metavar="DIR", default=None,
                    help="write the ocall trace of each failing test to DIR/<test id>.trace")
    group.addoption("--enclave-inner", metavar="SPEC", default=None, help=argparse.SUPPRESS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "enclave(allow_read=[...], allow_write=[...], allow_net=[...], allow_env=[...], deny_read=[...], "
                   "..., allow_ffi=False, allow_run=False, backend=None): this test's policy on top of the "
                   "session's, and the backend it needs (posix_shim --enclave)")
    inner = config.getoption("enclave_inner")
    state: _Plain
    if inner:
        state = _InnerProcess(config, inner)
    elif config.getoption("enclave") == "sim":
        state = _SimSession(config)
    else:
        state = _Plain(config)
    config.stash[_STATE] = state
    config.pluginmanager.register(state, "posix_shim-enclave-session")


_STATE = pytest.StashKey["_Plain"]()


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """--enclave=process: run this very session again inside a process enclave, and report its status."""
    if config.getoption("enclave") != "process" or config.getoption("enclave_inner"):
        return None
    if any(config.getoption(name, False) for name in ("help", "version")):
        return None
    return _OuterProcess(config).run()


# ---------------------------------------------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------------------------------------------

def _policy_file(config: pytest.Config) -> str | None:
    given = config.getoption("enclave_policy")
    if given:
        return os.path.abspath(given)
    found = policy_mod.find_pyproject(str(config.rootpath))
    try:
        if found and policy_mod.load_toml(found, ("tool", "posix_shim")) is not None:
            return found
    except policy_mod.PolicyError as exc:
        raise pytest.UsageError(f"posix_shim: {exc}") from None
    return None


def _as_list(key: str, value: Any) -> list[str]:
    if isinstance(value, str | os.PathLike):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str | os.PathLike) for v in value):
        raise pytest.UsageError(f"@pytest.mark.enclave({key}=...) takes a string or a list of strings, not "
                                f"{value!r}")
    return [os.fspath(v) for v in value]


def mark_settings(item: pytest.Item) -> tuple[tuple[str, ...], str | None]:
    """(policy flags, backend) of the item's @pytest.mark.enclave marks (class and module marks included; the
    closest `backend` wins).  Relative paths are taken from the rootdir, as [tool.posix_shim] paths are from
    the pyproject's folder."""
    flags: list[str] = []
    backend = None
    root = str(item.config.rootpath)
    for mark in reversed(list(item.iter_markers("enclave"))):  # farthest first, so the closest backend wins
        if mark.args:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.enclave takes keyword arguments only "
                                    f"({', '.join(MARK_KEYS)})")
        for key, value in mark.kwargs.items():
            if key == "backend":
                if value is not None and value not in BACKENDS:
                    raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.enclave(backend={value!r}): choose one "
                                            f"of {', '.join(BACKENDS)}")
                backend = value or backend
            elif key in MARK_BOOLS:
                if value:
                    flags.append(MARK_BOOLS[key])
            elif key in MARK_LISTS:
                for v in _as_list(key, value):
                    if key.endswith(("_read", "_write")):
                        v = os.path.join(root, os.path.expanduser(v))
                    flags.append(f"{MARK_LISTS[key]}={v}")
            else:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.enclave: unknown argument {key!r} (known: "
                                        f"{', '.join(MARK_KEYS)})")
    return tuple(sorted(set(flags))), backend


def _grants_only(flags: Sequence[str]) -> list[str]:
    return [f for f in flags if f.startswith("--allow-")]


class _Plain:
    """Without --enclave: only the `enclave` fixture uses the policies."""

    backend: str | None = None

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._base: list[str] | None = None
        self._cache: dict[tuple[str, ...], policy_mod.Policy] = {}

    def harness_flags(self) -> list[str]:
        """What pytest itself needs inside: the project (tests, conftest, sources), this runtime's own packages
        (an editable install is not on sys.path, so the defaults do not cover it, and the plugin is imported
        inside) and its temporary folders."""
        flags = [f"--allow-read={self.config.rootpath}", *(f"--allow-read={d}" for d in _INTERNAL_DIRS)]
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            base = factory.getbasetemp()
            flags += [f"--allow-read={base}", f"--allow-write={base}"]
        return flags

    def base_flags(self) -> list[str]:
        if self._base is None:
            file = _policy_file(self.config)
            self._base = ([f"--policy={file}"] if file else []) + self.harness_flags()
        return self._base

    def policy_for(self, flags: tuple[str, ...]) -> policy_mod.Policy:
        found = self._cache.get(flags)
        if found is None:
            try:
                found = policy_mod.parse([*self.base_flags(), *flags], "module", "pytest",
                                         str(self.config.invocation_params.dir))
            except policy_mod.PolicyError as exc:
                raise pytest.UsageError(f"posix_shim: {exc}") from None
            self._cache[flags] = found
        return found

    def fixture_enclave(self, item: pytest.Item) -> Enclave:
        flags, backend = mark_settings(item)
        return Enclave(policy=self.policy_for(flags), backend=backend or self.backend or "sim")

    def trace_dir(self) -> str | None:
        return self.config.getoption("enclave_trace")

    # Reporting is shared by every mode: a record per test, filled by the modes that run tests inside.
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Generator[None, Result[pytest.TestReport], None]:
        record: _Record | None = item.stash.get(_RECORD, None)
        if record is not None and call.excinfo is not None and not item.config.getoption("fulltrace"):
            _hide_runtime_frames(call.excinfo)
        outcome = yield
        report = outcome.get_result()
        if record is not None and report.failed:
            record.failed = True
            if record.denials:
                report.sections.append(("posix_shim policy", record.denial_text()))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        yield
        self.finish(item)

    def finish(self, item: pytest.Item) -> None:
        """After a test: the trace of a failing one goes to --enclave-trace DIR."""
        record: _Record | None = item.stash.get(_RECORD, None)
        trace_dir = self.trace_dir()
        if record is not None and record.failed and trace_dir:
            record.write_trace(trace_dir, item.nodeid)


def _hide_runtime_frames(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Take the runtime's own frames (the trusted libc, the boundary, this front end) out of a test's
    traceback: to the test they are what libc is to a native run, so the last frame shown is the test's or its
    library's call.  The frames are unlinked from the raw traceback (as `program.print_exception` does for a
    program), because pytest rebuilds its entries from the raw links when it cuts the traceback."""
    from _pytest._code import Traceback

    from .program import _strip

    head = excinfo.tb
    if str(Traceback(head)[0].path).startswith(_INTERNAL_DIRS):
        return  # nothing of the test's own above the runtime: keep everything
    _strip(excinfo.value, set())
    excinfo.traceback = Traceback(head)


# ---------------------------------------------------------------------------------------------------------------
# What a test did at the boundary
# ---------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Record:
    denials: list[tuple[str, str, int]] = dataclasses.field(default_factory=list)
    events: list[Any] | None = None
    failed: bool = False
    recording: bool = False  # the trace keeps the test's own phases only, not pytest's reporting in between

    def denial_text(self) -> str:
        lines = []
        for call, reason, err in self.denials:
            what = "refused (ENOSYS)" if err != 13 else "denied"
            lines.append(f"{call}() {what}: {reason}")
            hint = _HINT.search(reason)
            if hint:
                kind, value = hint.groups()
                lines.append(f"    to allow it in this test only: @pytest.mark.enclave(allow_{kind}=[{value!r}])")
        lines.append("(the session's policy: [tool.posix_shim] in pyproject.toml or --enclave-policy FILE; "
                     "see docs/pytest.md)")
        return "\n".join(lines)

    def write_trace(self, directory: str, nodeid: str) -> None:
        from .trace import format_text

        os.makedirs(directory, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:200] or "test"
        lines = [f"# posix_shim trace of the failing test {nodeid}"]
        lines += [format_text(ev) for ev in self.events or ()]
        if self.events is None:
            lines.append("# (nothing ran inside an enclave)")
        with open(os.path.join(directory, name + ".trace"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


_RECORD = pytest.StashKey[_Record]()


def _watch(rt: Any, record: _Record, trace: bool) -> Callable[[], None]:
    """Record the runtime's policy denials (and, with `trace`, every ocall) into `record`; returns the undo.

    Denials are seen where the enclave's guard reports them (`client.denied`), whether or not the library that
    made the call lets the PermissionError reach the test.  Ocalls are seen at the guarded stubs (`rt.ocall`),
    which the families look up on each call, so this is the enclave's view: arguments sent, answers accepted.
    """
    client = rt.client
    original_denied = client.denied

    def denied(call: str, args: tuple, reason: str, err: int = 13) -> None:
        record.denials.append((call, reason, err))
        original_denied(call, args, reason, err)

    client.denied = denied
    undo_ocalls: Callable[[], None] = lambda: None
    if trace:
        undo_ocalls = _trace_ocalls(rt, record)

    def undo() -> None:
        undo_ocalls()
        if client.__dict__.get("denied") is denied:
            del client.denied

    return undo


def _trace_ocalls(rt: Any, record: _Record) -> Callable[[], None]:
    from enclave_libc.errors import PolicyDenied
    from ocall_bridge.calls import BY_NAME
    from ocall_bridge.originals import time as real_time

    from .trace import TraceEvent

    if record.events is None:
        record.events = []
    events = record.events
    perf = real_time.perf_counter_ns  # the host's clock: the enclave's is itself an ocall
    tid = threading.get_native_id
    namespace = rt.ocall
    originals = dict(vars(namespace))

    def traced(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        family = BY_NAME[name].family if name in BY_NAME else ""

        def call(*args: Any) -> Any:
            if not record.recording:
                return fn(*args)
            t0 = perf()
            try:
                result = fn(*args)
            except OSError as exc:
                marks = (f"denied: {exc.reason}",) if isinstance(exc, PolicyDenied) else ()
                events.append(TraceEvent(tid(), name, args, None, exc.errno or 5, perf() - t0, marks, family))
                raise
            events.append(TraceEvent(tid(), name, args, result, 0, perf() - t0, (), family))
            return result

        return call

    for name, fn in originals.items():
        setattr(namespace, name, traced(name, fn))
    return lambda: namespace.__dict__.update(originals)


# ---------------------------------------------------------------------------------------------------------------
# --enclave=sim: each test's call phase inside a sim enclave
# ---------------------------------------------------------------------------------------------------------------

class _SimSession(_Plain):
    backend = "sim"

    def pytest_sessionstart(self) -> None:
        self.policy_for(())  # a policy that cannot be used stops the session before any test, as a usage error

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        _skip_other_backend(items, "sim")

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        # trylast: innermost, so pytest's own wrappers (capture, logging) switch file descriptors outside the
        # enclave, as they would without it; only the test body runs inside.
        from .session import inside
        from .sim_backend import SimBackend

        if "enclave" in getattr(item, "fixturenames", ()):
            # The test drives an enclave of its own (the fixture).  Sim enclaves do not nest (sim.NESTED), so its
            # body is not wrapped.
            yield
            return
        flags, _ = mark_settings(item)
        record = item.stash.setdefault(_RECORD, _Record())
        backend = SimBackend(self.policy_for(flags))
        undo = _watch(backend.rt, record, bool(self.trace_dir()))
        streams = (sys.stdin, sys.stdout, sys.stderr)
        try:
            with inside(backend.rt):
                # The standard streams stay pytest's (its capture: capsys, capfd, -s), as outside; everything else
                # - files, sockets, time, the environment - is the enclave's.  `inside` restores them on the way
                # out as it found them.
                sys.stdin, sys.stdout, sys.stderr = streams
                record.recording = True
                try:
                    yield
                finally:
                    record.recording = False
        finally:
            undo()
            backend.close()


def _skip_other_backend(items: list[pytest.Item], backend: str) -> None:
    for item in items:
        wanted = mark_settings(item)[1]
        if wanted and wanted != backend:
            item.add_marker(pytest.mark.skip(reason=f"@pytest.mark.enclave(backend={wanted!r}): runs with "
                                                    f"--enclave={wanted}"))


# ---------------------------------------------------------------------------------------------------------------
# --enclave=process: the outer pytest process re-runs the session inside a process enclave
# ---------------------------------------------------------------------------------------------------------------

def _inner_args(args: Sequence[str]) -> list[str]:
    """The invocation's arguments without this plugin's outer options (both `--opt=V` and `--opt V`)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--enclave":
            i += 2 if i + 1 < len(args) and args[i + 1] in BACKENDS else 1
            continue
        if word in ("--enclave-policy", "--enclave-trace", "--enclave-inner"):
            i += 2
            continue
        if word.startswith(("--enclave=", "--enclave-policy=", "--enclave-trace=", "--enclave-inner=")):
            i += 1
            continue
        out.append(word)
        i += 1
    return out


def _wait_for(cmd: list[str]) -> int:
    """Run the inner session and return its status.  A Ctrl-C reaches it too (same process group; the runner
    forwards it to the enclave), so this process waits for it to report the interruption as pytest does."""
    proc = subprocess.Popen(cmd)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def _user_basetemp(args: Sequence[str]) -> bool:
    return any(a == "--basetemp" or a.startswith("--basetemp=") for a in args)


class _OuterProcess:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.plain = _Plain(config)
        self.args = list(config.invocation_params.args)
        self.dir = tempfile.mkdtemp(prefix="posix-shim-pytest-")
        self.spec = os.path.join(self.dir, "spec.json")
        self.needs = os.path.join(self.dir, "needs.json")

    def _basetemp(self) -> tuple[list[str], str]:
        """(extra arguments, the folder to grant).  pytest's own numbered temporary folder is made here, outside
        (old ones are cleaned as usual), and the inner session gets a fresh `--basetemp` inside it.  pytest
        deletes and re-creates its basetemp, and a granted root that is deleted stays gone for the host's
        confinement, so the grant is the folder above it; with the user's own --basetemp, that is its parent."""
        if _user_basetemp(self.args):
            return [], os.path.dirname(os.path.abspath(self.config.getoption("basetemp")))
        from _pytest.tmpdir import TempPathFactory

        base = TempPathFactory.from_config(self.config, _ispytest=True).getbasetemp()
        return [f"--basetemp={base / 'enclave'}"], str(base)

    def _setup_args(self) -> list[str]:
        """The rootdir and configuration file this (outer) session found, fixed for the inner one.  Left to
        itself, the inner session would look for them again in every folder above the tests, and the policy
        hides files there (a stat of /home/pytest.ini is refused, not "missing")."""
        config = self.config
        inifile = str(config.inipath) if config.inipath else os.devnull  # /dev/null: no configuration file
        out = [f"--rootdir={config.rootpath}", "-c", inifile]
        if config.inipath is None and not any(a == "--confcutdir" or a.startswith("--confcutdir=")
                                              for a in self.args):
            out.append(f"--confcutdir={config.rootpath}")  # conftest.py files are not looked for above it
        return out

    def run(self) -> int:
        import shutil

        try:
            extra_args, base = self._basetemp()
            file = _policy_file(self.config)
            harness = [f"--allow-read={self.config.rootpath}", *(f"--allow-read={d}" for d in _INTERNAL_DIRS),
                       f"--allow-read={base}", f"--allow-write={base}",
                       f"--allow-read={self.dir}", f"--allow-write={self.needs}"]
            trace_dir = self.config.getoption("enclave_trace")
            if trace_dir:
                trace_dir = os.path.abspath(trace_dir)
                os.makedirs(trace_dir, exist_ok=True)
                harness += [f"--allow-read={trace_dir}", f"--allow-write={trace_dir}"]
            self.plain._base = ([f"--policy={file}"] if file else []) + harness
            marks: list[tuple[str, ...]] = []
            for attempt in (1, 2):
                self._write_spec(marks, trace_dir)
                cmd = [sys.executable, "-m", "posix_shim.pytest_plugin", self.spec, "--",
                       *_inner_args(self.args), *extra_args, *self._setup_args(), f"--enclave-inner={self.spec}"]
                # pytest would rewrite an installed plugin's packages, which the enclave runtime imported first
                for package in ("posix_shim", "enclave_libc", "ocall_bridge"):
                    cmd += ["-W", f"ignore:Module already imported so cannot be rewritten; {package}:"
                                  f"pytest.PytestAssertRewriteWarning"]
                status = _wait_for(cmd)
                if status != RESTART_STATUS or attempt == 2 or not os.path.exists(self.needs):
                    return status
                with open(self.needs, encoding="utf-8") as f:
                    wanted = json.load(f)  # written inside the enclave: plain JSON, checked before use
                os.unlink(self.needs)
                kinds = (*MARK_LISTS.values(), *MARK_BOOLS.values())
                if not isinstance(wanted, list) or not all(
                        isinstance(m, list) and all(isinstance(f, str) and f.split("=", 1)[0] in kinds for f in m)
                        for m in wanted):  # only policy flags of the kinds a mark makes can come back
                    raise pytest.UsageError(f"posix_shim: the inner session asked for {wanted!r}")
                marks = sorted({*marks, *(tuple(m) for m in wanted)})
                print(f"posix_shim: restarting the session with the grants of {len(marks)} "
                      f"@pytest.mark.enclave mark(s) in the process enclave's bound", file=sys.stderr)
            return status  # pragma: no cover - the loop returns
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _write_spec(self, marks: list[tuple[str, ...]], trace_dir: str | None) -> None:
        bound_flags = sorted({f for m in marks for f in _grants_only(m)})
        spec = {
            "version": SPEC_VERSION,
            "bound": self.plain.policy_for(tuple(bound_flags)).to_data(),
            "session": self.plain.policy_for(()).to_data(),
            "marks": [[list(m), self.plain.policy_for(m).to_data()] for m in marks],
            "needs": self.needs,
            "trace": trace_dir,
        }
        with open(self.spec, "w", encoding="utf-8") as f:
            json.dump(spec, f)


def _recording(item: pytest.Item) -> Iterator[None]:
    """The body of a hookwrapper that marks the record as recording around the hook."""
    record: _Record | None = item.stash.get(_RECORD, None)
    if record is None:
        yield
        return
    record.recording = True
    try:
        yield
    finally:
        record.recording = False


def serve(spec_path: str, args: list[str]) -> int:
    """The host of an --enclave=process session (`python -m posix_shim.pytest_plugin SPEC -- ARGS`): a process
    enclave whose policy is the spec's bound, running `pytest ARGS` inside."""
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    bound = policy_mod.from_data(spec["bound"])
    with Enclave(policy=bound, backend="process") as enclave:
        return enclave.run_module("pytest", args)


class _InnerProcess(_Plain):
    """The session inside the process enclave: the child's policy object is the host's bound; each test runs with
    its own rules swapped into it (narrower or equal, never wider than what the host enforces)."""

    backend = "process"

    def __init__(self, config: pytest.Config, spec_path: str) -> None:
        super().__init__(config)
        from enclave_libc import runtime

        rt = runtime.RT
        if not rt or not isinstance(rt.access, policy_mod.Policy):
            raise pytest.UsageError("--enclave-inner is internal to --enclave=process (no enclave is running here)")
        self.rt = rt
        with open(spec_path, encoding="utf-8") as f:
            spec = json.load(f)
        if spec.get("version") != SPEC_VERSION:
            raise pytest.UsageError(f"posix_shim: spec version {spec.get('version')!r} is not {SPEC_VERSION}")
        self.policies: dict[tuple[str, ...], policy_mod.Policy] = {
            (): policy_mod.from_data(spec["session"])}  # type: ignore[dict-item]
        for flags, data in spec["marks"]:
            self.policies[tuple(flags)] = policy_mod.from_data(data)  # type: ignore[assignment]
        self.needs = spec["needs"]
        self.spec_trace: str | None = spec.get("trace")

    def pytest_collection_modifyitems(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        _skip_other_backend(items, "process")
        wanted = {mark_settings(item)[0] for item in items} - set(self.policies)
        if wanted:
            with open(self.needs, "w", encoding="utf-8") as f:
                json.dump(sorted(list(m) for m in wanted), f)
            pytest.exit("posix_shim: @pytest.mark.enclave grants beyond the session's bound; restarting",
                        returncode=RESTART_STATUS)

    def fixture_enclave(self, item: pytest.Item) -> Enclave:
        pytest.fail("the enclave fixture starts an enclave of its own, which cannot be done inside the "
                    "--enclave=process session (it is already one enclave; starting processes is refused there); "
                    "run this test with --enclave=sim or without --enclave", pytrace=False)

    def trace_dir(self) -> str | None:
        return self.spec_trace

    # The test's own phases, innermost (trylast): what the fixtures and the body did, not pytest's capture and
    # reporting around them.
    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Iterator[None]:
        yield from _recording(item)

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        yield from _recording(item)

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Iterator[None]:
        yield from _recording(item)

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        flags, _ = mark_settings(item)
        record = item.stash.setdefault(_RECORD, _Record())
        undo = _watch(self.rt, record, bool(self.spec_trace))
        live = self.rt.access
        assert isinstance(live, policy_mod.Policy)  # checked in __init__, and the runtime never replaces it
        saved = dict(live.__dict__)
        chosen = self.policies.get(flags, self.policies[()])
        live.__dict__.update(chosen.__dict__)
        live.__dict__["calls"] = saved["calls"]  # the guards were built with the bound's calls
        try:
            yield
        finally:
            live.__dict__.clear()
            live.__dict__.update(saved)
            undo()
        self.finish(item)


# ---------------------------------------------------------------------------------------------------------------
# The fixture
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def enclave(request: pytest.FixtureRequest) -> Iterator[Enclave]:
    """A started `posix_shim.Enclave` with this test's policy (the session's, plus its @pytest.mark.enclave
    grants) and backend (the mark's, else --enclave's, else sim): `enclave.run_path(...)`, `enclave.call(...)`.
    Closed after the test."""
    state = request.config.stash.get(_STATE, None) or _Plain(request.config)
    with state.fixture_enclave(request.node) as started:
        yield started


def _main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m posix_shim.pytest_plugin SPEC -- PYTEST-ARGS (internal to pytest "
              "--enclave=process)", file=sys.stderr)
        return 2
    return serve(argv[0], argv[2:])


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
