"""--enclave=process: the outer pytest process re-runs the session inside one process enclave.

The outer process computes every policy (the session's, each mark's, and the bound: the session plus every mark's
grants) and writes them as plain data to a spec; `python -m posix_shim.pytest_plugin SPEC -- ARGS` is the host,
serving a child that runs pytest with `--enclave-inner=SPEC`; inside, each test's policy is swapped into the
child's policy object, never wider than the bound the host enforces.  Marks found at collection that need
grants beyond the bound make the child exit with RESTART_STATUS, and the session restarts once with them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence

import pytest

from ..enclave import BACKENDS, Enclave
from ..policy.model import Policy, from_data
from .marks import MARK_BOOLS, MARK_LISTS, grants_only, mark_settings, policy_file, skip_other_backend
from .record import INTERNAL_DIRS, RECORD, Record, recording, watch
from .sessions import PlainSession

# Exit status of an inner session that found marks needing grants its host was not started with.
RESTART_STATUS = 86
SPEC_VERSION = 1


def inner_args(args: Sequence[str]) -> list[str]:
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


class OuterProcess:
    """The pytest process the user started: computes the policies, serves the inner session, reports its
    status (restarting it once when its marks need grants beyond the bound)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.plain = PlainSession(config)
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
            file = policy_file(self.config)
            harness = [f"--allow-read={self.config.rootpath}", *(f"--allow-read={d}" for d in INTERNAL_DIRS),
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
                       *inner_args(self.args), *extra_args, *self._setup_args(), f"--enclave-inner={self.spec}"]
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
        bound_flags = sorted({f for m in marks for f in grants_only(m)})
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


def serve(spec_path: str, args: list[str]) -> int:
    """The host of an --enclave=process session (`python -m posix_shim.pytest_plugin SPEC -- ARGS`): a process
    enclave whose policy is the spec's bound, running `pytest ARGS` inside."""
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    bound = from_data(spec["bound"])
    with Enclave(policy=bound, backend="process") as enclave:
        return enclave.run_module("pytest", args)


class InnerProcess(PlainSession):
    """The session inside the process enclave: the child's policy object is the host's bound; each test runs with
    its own rules swapped into it (narrower or equal, never wider than what the host enforces)."""

    backend = "process"

    def __init__(self, config: pytest.Config, spec_path: str) -> None:
        super().__init__(config)
        from enclave_libc import runtime

        rt = runtime.RT
        if not rt or not isinstance(rt.access, Policy):
            raise pytest.UsageError("--enclave-inner is internal to --enclave=process (no enclave is running here)")
        self.rt = rt
        with open(spec_path, encoding="utf-8") as f:
            spec = json.load(f)
        if spec.get("version") != SPEC_VERSION:
            raise pytest.UsageError(f"posix_shim: spec version {spec.get('version')!r} is not {SPEC_VERSION}")
        self.policies: dict[tuple[str, ...], Policy] = {
            (): from_data(spec["session"])}  # type: ignore[dict-item]
        for flags, data in spec["marks"]:
            self.policies[tuple(flags)] = from_data(data)  # type: ignore[assignment]
        self.needs = spec["needs"]
        self.spec_trace: str | None = spec.get("trace")

    def pytest_collection_modifyitems(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        skip_other_backend(items, "process")
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
        yield from recording(item)

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        yield from recording(item)

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Iterator[None]:
        yield from recording(item)

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        flags, _ = mark_settings(item)
        record = item.stash.setdefault(RECORD, Record())
        undo = watch(self.rt, record, bool(self.spec_trace))
        live = self.rt.access
        assert isinstance(live, Policy)  # checked in __init__, and the runtime never replaces it
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


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m posix_shim.pytest_plugin SPEC -- PYTEST-ARGS (internal to pytest "
              "--enclave=process)", file=sys.stderr)
        return 2
    return serve(argv[0], argv[2:])

