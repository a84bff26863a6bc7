"""Time, environment, randomness and process identity inside the enclave.

End-to-end programs run through the real CLI on every backend and are compared with a native run; the checks on
the host's answers are driven by in-process sim enclaves whose host functions are replaced by lying ones.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import signal
import subprocess
import sys
import time
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, program, run_native, run_shim

from enclave_libc import env
from ocall_bridge.access import Access
from ocall_bridge.originals import time as real_time  # lying host functions run with interposition installed
from posix_shim import Enclave

TZDIR = next((p for p in zoneinfo.TZPATH if os.path.isfile(os.path.join(p, "Europe", "Paris"))), None)
needs_tzdata = pytest.mark.skipif(TZDIR is None, reason="no system tzdata with Europe/Paris")
# The tzdata folder is named explicitly: whether the default policy grants it is the policy's business.
TZ_OPTIONS = [f"--allow-read={TZDIR}"] if TZDIR else []


class Policy(Access):
    """A small policy for in-process enclaves: every call and path, only the named variables, no native run."""

    def __init__(self, env: tuple[str, ...] = (), values: dict[str, str] | None = None,
                 deny_calls: tuple[str, ...] = ()) -> None:
        self.env = env
        self.values = values or {}
        self.deny_calls = deny_calls

    def call_allowed(self, name: str) -> bool:
        return name not in self.deny_calls

    def env_allowed(self, name: str) -> bool:
        return name in self.env

    def env_values(self) -> dict[str, str]:
        return dict(self.values)

    def native_allowed(self, what: str) -> bool:
        return False


def _run_inside(code: str, capfd: pytest.CaptureFixture[str], policy: Access | None = None,
                lie: dict[str, Any] | None = None) -> tuple[int, str, str, Any]:
    """Run `code` in a sim enclave whose host functions named in `lie` are replaced; (status, out, err, enclave).

    The run asks the host on every clock read (`strict_time`): these tests tell each read its own lie.  The
    cached clock's lies are told in tests/test_time_cache.py."""
    enclave = Enclave(policy=policy or Policy(), backend="sim", strict_time=True)
    with enclave:
        host = enclave._backend.host
        for name, fn in (lie or {}).items():
            entry = next(e for e in host.entries.values() if e.codec.call.name == name)
            entry.fn = fn
        capfd.readouterr()
        # The sim backend interposes the whole test process, so a collection during the run would let
        # hypothesis's gc callback (it reads time.perf_counter) take answers meant for the program.
        gc.collect()
        gc.disable()
        try:
            status = enclave.run_code(code)
        finally:
            gc.enable()
        out, err = capfd.readouterr()
        return status, out, err, enclave._backend


# -- the program of the issue: behaves inside as outside ----------------------------------------------------

TIME_PROGRAM = program("time_env_time_program.py")


@needs_tzdata
def test_time_program_behaves_as_natively(tmp_path: Path, backend: str) -> None:
    inside = run_shim(["-c", TIME_PROGRAM], backend=backend, cwd=tmp_path, options=TZ_OPTIONS, timeout=30)
    native = run_native(["-c", TIME_PROGRAM], cwd=tmp_path, timeout=30)
    assert inside.stderr == native.stderr == b""
    assert inside.returncode == native.returncode == 0
    assert inside.stdout == native.stdout
    assert b"2024-03-31 03:30 CEST +0200" in inside.stdout  # the DST switch, from the tzdata file


def test_time_goes_through_the_enclave(capfd: pytest.CaptureFixture[str]) -> None:
    """A host that says it is 2001-09-09 01:46:40 UTC is believed by every way Python reads the wall clock."""
    def fixed(host: Any, clock: int) -> int:
        if clock == time.CLOCK_REALTIME:
            return 1_000_000_000 * 1_000_000_000 + 250_000_123
        return real_time.clock_gettime_ns(clock)

    code = r'''
import datetime, time
print(time.time(), time.time_ns(), time.gmtime()[:6])
print(datetime.datetime.now(datetime.timezone.utc).isoformat())
print(datetime.datetime.utcnow().isoformat(), datetime.date.today().year)
print(time.strftime("%Y", time.gmtime()), time.clock_gettime(time.CLOCK_REALTIME))
'''
    status, out, err, _ = _run_inside(code, capfd, lie={"clock_gettime": fixed})
    assert status == 0, err
    assert out.splitlines() == [
        "1000000000.2500001 1000000000250000123 (2001, 9, 9, 1, 46, 40)",
        "2001-09-09T01:46:40.250000+00:00",
        "2001-09-09T01:46:40.250000 2001",
        "2001 1000000000.2500001",
    ]
    # Outside the enclave the same process reads the real clock again.
    import datetime

    assert datetime.datetime.now().year > 2020 and time.time() > 1.6e9


@needs_tzdata
def test_tzdata_is_read_through_enclave_file_calls(capfd: pytest.CaptureFixture[str]) -> None:
    opened: list[bytes] = []

    def record(entry: Any, args: tuple) -> None:
        if entry.codec.call.name == "open":
            opened.append(args[0])

    enclave = Enclave(policy=Policy(), backend="sim")
    with enclave:
        enclave._backend.host.before.append(record)
        status = enclave.run_code("import zoneinfo; print(zoneinfo.ZoneInfo.no_cache('Europe/Paris').key)")
    assert status == 0
    assert "Europe/Paris" in capfd.readouterr().out
    assert os.fsencode(os.path.join(TZDIR, "Europe", "Paris")) in opened


# -- the host's lies about time are refused ------------------------------------------------------------------


def test_backwards_monotonic_answer_is_refused(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # A microsecond apart, then a second back: the second answer is believable against the enclave's own counter
    # (validate.Plausibility._clock), the third runs backwards, which enclave_libc/time.py refuses.
    answers = iter([5_000_000_000, 5_000_001_000, 4_000_000_000])

    def backwards(host: Any, clock: int) -> int:
        return next(answers) if clock == time.CLOCK_MONOTONIC else real_time.clock_gettime_ns(clock)

    code = r'''
import errno, time
a = time.monotonic()
b = time.monotonic()
print("first", a, b)
try:
    c = time.monotonic()
except OSError as exc:
    print("refused", exc.errno == errno.EIO, type(exc).__name__)
    print(exc)
else:
    print("accepted", c)
'''
    # The runtime's records go to the host's stderr and do not propagate (ocall_bridge/logs.py); let pytest see them.
    monkeypatch.setattr(logging.getLogger("posix_shim"), "propagate", True)
    with caplog.at_level(logging.ERROR, logger="posix_shim.enclave"):
        status, out, err, backend = _run_inside(code, capfd, lie={"clock_gettime": backwards})
    assert status == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["first 5.0 5.000001", "refused True HostViolation"]
    assert "ran backwards: 4000000000 ns after 5000001000 ns" in lines[2]
    assert "accepted" not in out
    assert any("ran backwards" in r.getMessage() for r in caplog.records)  # logged
    assert [v.call for v in backend.client.violations] == ["clock_gettime"]


def test_sleep_cut_short_is_refused(capfd: pytest.CaptureFixture[str]) -> None:
    def insomniac(host: Any, ns: int) -> int:
        return ns  # claims the whole sleep, sleeps not at all

    code = r'''
import time
try:
    time.sleep(0.3)
except OSError as exc:
    print("refused", exc.errno, exc)
'''
    status, out, err, _ = _run_inside(code, capfd, lie={"sleep": insomniac})
    assert status == 0, err
    # Caught by the enclave's own counter before its monotonic clock is even asked (validate.Plausibility._slept).
    assert out.startswith(f"refused {errno.EIO} [Errno 5] posix_shim: host violation in sleep: a sleep of 50000000 ns "
                          f"came back after"), out


def test_host_admitting_a_short_sleep_is_refused(capfd: pytest.CaptureFixture[str]) -> None:
    def short(host: Any, ns: int) -> int:
        real_time.sleep(ns / 2e9)
        return ns // 2

    status, out, err, _ = _run_inside("import time\ntry:\n time.sleep(0.01)\nexcept OSError as e: print(e.errno)",
                                      capfd, lie={"sleep": short})
    assert (status, out.strip()) == (0, str(errno.EIO)), err


def test_a_host_lying_on_every_clock_read_gives_eio_not_recursion(capfd: pytest.CaptureFixture[str]) -> None:
    """Logging a clock violation reads the clock: a host that always lies must still end in one clean EIO."""
    def impossible(host: Any, clock: int) -> int:
        raise OSError(errno.ECHILD, "not an errno clock_gettime may return")

    code = ("import time\ntry:\n time.time()\n"
            "except RecursionError: print('recursion')\nexcept OSError as e: print(e.errno)")
    status, out, err, _ = _run_inside(code, capfd, lie={"clock_gettime": impossible})
    assert (status, out.strip()) == (0, str(errno.EIO)), err


def test_monotonic_floor_raced_by_threads_has_no_false_alarm(capfd: pytest.CaptureFixture[str]) -> None:
    code = r'''
import threading, time
errors = []
def spin():
    last = 0
    for _ in range(1500):
        try:
            now = time.monotonic_ns()
        except OSError as exc:
            errors.append(exc)
            return
        if now < last:
            errors.append(("went back", now, last))
        last = now
threads = [threading.Thread(target=spin) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join(30)
print("errors", errors)
'''
    status, out, err, backend = _run_inside(code, capfd)
    assert (status, out.strip()) == (0, "errors []"), err
    assert backend.client.violations == []


def test_sleep_arguments_fail_as_natively(tmp_path: Path, backend: str) -> None:
    code = r'''
import time
for arg in (-1, float("nan"), float("inf"), 10**20, "1", None):
    try:
        time.sleep(arg)
    except Exception as exc:
        print(repr(arg), type(exc).__name__, exc)
time.sleep(0); time.sleep(False); time.sleep(0.001)
for clock in (99, "x"):
    try:
        time.clock_gettime(clock)
    except Exception as exc:
        print(repr(clock), type(exc).__name__, exc)
print(time.clock_getres(time.CLOCK_MONOTONIC) > 0, time.process_time() >= 0, time.thread_time() >= 0)
try:
    time.clock_settime(time.CLOCK_REALTIME, 0)
except OSError as exc:
    print("settime", exc.errno)
'''
    inside = run_shim(["-c", code], backend=backend, cwd=tmp_path)
    native = run_native(["-c", code], cwd=tmp_path)
    assert inside.returncode == 0, inside.stderr
    inside_lines, native_lines = inside.stdout.splitlines(), native.stdout.splitlines()
    assert inside_lines[:-1] == native_lines[:len(inside_lines) - 1]
    assert inside_lines[-1] == f"settime {errno.ENOSYS}".encode()  # the enclave never sets the host's clock


@pytest.mark.parametrize("backend_name", ["sim", "process"])
def test_ctrl_c_interrupts_a_sleep(tmp_path: Path, backend_name: str) -> None:
    from conftest import BACKENDS

    if backend_name not in BACKENDS:
        pytest.skip(f"no {backend_name} backend in this build")
    script = tmp_path / "nap.py"
    script.write_text("import time\nprint('ready', flush=True)\ntime.sleep(30)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "posix_shim", "--backend", backend_name, str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert time.monotonic() - sent < 2
    assert proc.returncode == 130
    assert err.strip().endswith(b"KeyboardInterrupt")


# -- the environment ------------------------------------------------------------------------------------------

ENV_PROGRAM = r'''
import os, posix
print(os.environ.get("POSIX_SHIM_TEST_SECRET"), os.getenv("POSIX_SHIM_TEST_SECRET"),
      b"POSIX_SHIM_TEST_SECRET" in os.environb, "POSIX_SHIM_TEST_SECRET" in dict(os.environ))
'''


def test_host_secret_is_invisible_by_default_and_visible_when_allowed(tmp_path: Path, backend: str) -> None:
    env = {"POSIX_SHIM_TEST_SECRET": "s3cret"}
    hidden = run_shim(["-c", ENV_PROGRAM], backend=backend, cwd=tmp_path, env=env)
    shown = run_shim(["-c", ENV_PROGRAM], backend=backend, cwd=tmp_path, env=env,
                     options=["--allow-env=POSIX_SHIM_TEST_SECRET"])
    assert hidden.returncode == shown.returncode == 0, hidden.stderr + shown.stderr
    assert hidden.stdout == b"None None False False\n"
    assert shown.stdout == b"s3cret s3cret True True\n"


def test_environment_is_the_enclaves_own(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSIX_SHIM_T_ALLOWED", "from-host")
    monkeypatch.setenv("POSIX_SHIM_T_HIDDEN", "secret")
    monkeypatch.setenv("POSIX_SHIM_T_OVERRIDDEN", "host-value")
    host_environ = os.environ
    policy = Policy(env=("POSIX_SHIM_T_ALLOWED", "POSIX_SHIM_T_OVERRIDDEN"),
                    values={"POSIX_SHIM_T_OVERRIDDEN": "policy-value", "POSIX_SHIM_T_SET": "set"})
    code = r'''
import os, posix
print(sorted(k for k in os.environ if k.startswith("POSIX_SHIM_T")))
print(os.environ["POSIX_SHIM_T_ALLOWED"], os.environ["POSIX_SHIM_T_OVERRIDDEN"], os.environ["POSIX_SHIM_T_SET"])
print(sorted(k for k in posix.environ if k.startswith(b"POSIX_SHIM_T")) == sorted(
    k for k in os.environb if k.startswith(b"POSIX_SHIM_T")), type(os.environ).__mro__[1].__name__)
os.environ["POSIX_SHIM_T_NEW"] = "1"
del os.environ["POSIX_SHIM_T_ALLOWED"]
os.putenv("POSIX_SHIM_T_PUT", "2")
os.unsetenv("POSIX_SHIM_T_HIDDEN")
print(os.environ.get("POSIX_SHIM_T_NEW"), os.environ.get("POSIX_SHIM_T_ALLOWED"), os.getenv("POSIX_SHIM_T_PUT"))
for bad in (("A=B", "x"), ("A\0", "x"), ("", "x")):
    try:
        os.putenv(*bad)
    except (ValueError, OSError) as exc:
        print(type(exc).__name__, exc)
'''
    status, out, err, _ = _run_inside(code, capfd, policy=policy)
    assert status == 0, err
    assert out.splitlines() == [
        "['POSIX_SHIM_T_ALLOWED', 'POSIX_SHIM_T_OVERRIDDEN', 'POSIX_SHIM_T_SET']",
        "from-host policy-value set",
        "True _Environ",
        "1 None None",
        "ValueError illegal environment variable name",
        "ValueError embedded null byte",
        "OSError [Errno 22] Invalid argument",
    ]
    # The host's environment is untouched: its os.environ object, its values, and what a child inherits.
    assert os.environ is host_environ
    assert os.environ["POSIX_SHIM_T_ALLOWED"] == "from-host" and os.environ["POSIX_SHIM_T_HIDDEN"] == "secret"
    assert "POSIX_SHIM_T_NEW" not in os.environ
    child = subprocess.run(["env"], capture_output=True, timeout=10).stdout
    assert b"POSIX_SHIM_T_PUT" not in child and b"POSIX_SHIM_T_HIDDEN=secret" in child


RT_OFF_READS_ENVIRON = """
import enclave_libc.runtime as r, os, sys
saved, r.RT = r.RT, None
try:
    os.environ.get("POSIX_SHIM_T_KEPT")
    refused = False
except Exception:
    refused = True
finally:
    r.RT = saved
sys.exit(3 if refused else 4)
"""


def _kept_mapping_restored_after_leaving() -> tuple[dict[str, str | None], bytes]:
    """What `pytest --enclave=sim` does to a test body's `monkeypatch.setenv`: set inside a sim enclave, restored
    by the fixture's teardown after the enclave is left.  (the enclave's values after the restore, what a child
    started by the host inherits)."""
    from posix_shim.session import inside
    from posix_shim.sim_backend import SimBackend

    backend = SimBackend(Policy(env=("POSIX_SHIM_T_KEPT",), values={"POSIX_SHIM_T_KEPT": "policy"}))
    patch = pytest.MonkeyPatch()
    try:
        with inside(backend.rt):
            patch.setenv("POSIX_SHIM_T_KEPT", "inside")
            patch.setenv("POSIX_SHIM_T_NEW", "new")
            kept = os.environ
    finally:
        backend.close()
    patch.undo()  # outside: the teardown's restore
    seen = {name: kept.get(name) for name in ("POSIX_SHIM_T_KEPT", "POSIX_SHIM_T_NEW")}
    return seen, subprocess.run(["env"], capture_output=True, timeout=10).stdout


def test_a_mapping_kept_from_inside_restores_that_enclave_not_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSIX_SHIM_T_KEPT", "host")
    seen, child = _kept_mapping_restored_after_leaving()
    # The restore lands in the environment it was taken from (the policy's value back, the new one gone) ...
    assert seen == {"POSIX_SHIM_T_KEPT": "policy", "POSIX_SHIM_T_NEW": None}
    # ... and the host's is untouched, its os.environ and the C environment a child inherits.
    assert os.environ["POSIX_SHIM_T_KEPT"] == "host" and "POSIX_SHIM_T_NEW" not in os.environ
    assert b"POSIX_SHIM_T_KEPT=host\n" in child and b"POSIX_SHIM_T_NEW" not in child
    # A later enclave does not see the one before it: with its runtime switched off, the mapping refuses.
    with Enclave(policy=Policy(), backend="sim") as enclave:
        assert enclave.run_code(RT_OFF_READS_ENVIRON) == 3
    # Control: os._Environ's own __setitem__ calls whatever os.putenv is - outside, the host's, which takes the
    # enclave's value into the host's C environment.
    monkeypatch.setattr(env.EnclaveEnviron, "__setitem__", os._Environ.__setitem__)
    monkeypatch.setenv("POSIX_SHIM_T_KEPT", "host")
    _, child = _kept_mapping_restored_after_leaving()
    assert b"POSIX_SHIM_T_KEPT=policy\n" in child


def test_host_filters_the_environment_itself() -> None:
    from ocall_bridge.host.process import environ as host_environ
    from ocall_bridge.host.runtime import Host

    os.environ["POSIX_SHIM_T_PAGE"] = "x"
    try:
        host = Host(Policy(env=("POSIX_SHIM_T_PAGE", "PATH")))
        assert host_environ(host, b"") == [(b"PATH", os.environb[b"PATH"]), (b"POSIX_SHIM_T_PAGE", b"x")]
        assert host_environ(host, b"PATH") == [(b"POSIX_SHIM_T_PAGE", b"x")]
        assert host_environ(host, b"POSIX_SHIM_T_PAGE") == []
    finally:
        del os.environ["POSIX_SHIM_T_PAGE"]


def test_enclave_drops_variables_a_lying_host_slips_in(capfd: pytest.CaptureFixture[str]) -> None:
    pages = {b"": [(b"ALLOWED", b"1"), (b"SMUGGLED", b"2")], b"SMUGGLED": [(b"AAA", b"3")]}

    def leaky(host: Any, after: bytes) -> list[tuple[bytes, bytes]]:
        return pages.get(after, [])  # ignores the policy, then goes backwards in name order

    status, out, err, _ = _run_inside("import os; print(sorted(os.environ))", capfd,
                                      policy=Policy(env=("ALLOWED", "AAA")), lie={"environ": leaky})
    assert (status, out.strip()) == (0, "['ALLOWED']"), err


# -- randomness ------------------------------------------------------------------------------------------------


def test_randomness_never_asks_the_host(capfd: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[str, tuple]] = []
    enclave = Enclave(policy=Policy(), backend="sim")
    code = r'''
import os, random, secrets, uuid
print("start", flush=True)
samples = [os.urandom(32), os.getrandom(32), secrets.token_bytes(32), uuid.uuid4().bytes,
           random.SystemRandom().getrandbits(128).to_bytes(16, "big")]
random.seed(); a = random.random(); random.seed(); b = random.random()
version = uuid.uuid4().version
print("end", flush=True)
print([len(s) for s in samples], len(set(samples)), a != b, version)
'''
    with enclave:
        enclave.run_code("import os, random, secrets, uuid")  # imports (file ocalls) out of the way
        enclave._backend.host.before.append(lambda entry, args: calls.append((entry.codec.call.name, args)))
        capfd.readouterr()
        status = enclave.run_code(code)
    out = capfd.readouterr().out
    assert status == 0
    assert out.splitlines() == ["start", "end", "[32, 32, 32, 16, 16] 5 True 4"]
    writes = [i for i, (name, args) in enumerate(calls) if name == "write"]
    start, end = (next(i for i in writes if marker in bytes(calls[i][1][1])) for marker in (b"start", b"end"))
    between = calls[start + 1:end]
    assert [name for name, _ in between] == ["write"] * len(between)  # only the rest of the "start" line left
    assert all(bytes(args[1]).strip() == b"" for _, args in between)


# -- identity and processes -----------------------------------------------------------------------------------


def test_identity_is_the_enclaves_own_and_the_host_is_its_parent(tmp_path: Path, backend: str) -> None:
    """getpid never answers the host's pid (issue 13): on process the child's own, on sim a virtual one above
    pid_max; the host (the runner) is the parent; uid/gid are the host's."""
    code = r'''
import os, platform
print(os.getpid(), os.getppid(), os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups()))
print(tuple(os.uname()) == tuple(platform.uname())[:5], os.uname().sysname)
'''
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "posix_shim", "--backend", backend, "-c", code], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    ids, names = out.decode().splitlines()
    pid, rest = ids.split(" ", 1)
    expected = [proc.pid, os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups())]
    assert rest == " ".join(map(str, expected))  # the parent is the runner: the process the user sees
    assert int(pid) != proc.pid
    if backend == "sim":
        assert int(pid) > 1 << 22  # above any pid_max: it names no real process
    assert names == f"True {os.uname().sysname}"


def test_identity_is_virtual_when_the_policy_denies_it(capfd: pytest.CaptureFixture[str]) -> None:
    code = "import logging, os\nprint(os.getpid(), os.getppid(), os.getuid(), logging.makeLogRecord({}).process)"
    status, out, err, _ = _run_inside(code, capfd, policy=Policy(deny_calls=("getids",)))
    assert (status, out) == (0, "1 0 65534 1\n"), err


def test_signal_to_itself_is_delivered_and_others_are_refused(tmp_path: Path, backend: str) -> None:
    code = r'''
import errno, os, signal
got = []
signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
os.kill(os.getpid(), signal.SIGUSR1)
for _ in range(1000):
    if got: break
print("handled", got == [signal.SIGUSR1])
os.kill(os.getpid(), 0)
for pid in (1, os.getppid(), 0, -1):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        print(pid == 1 or pid <= 0 or "ppid", exc.errno == errno.ENOSYS)
try:
    os.waitpid(-1, 0)
except ChildProcessError as exc:
    print("no children", exc.errno == errno.ECHILD)
'''
    result = run_shim(["-c", code], backend=backend, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == ["handled True", "True True", "ppid True", "True True",
                                                   "True True", "no children True"]


def test_subprocess_run_is_outside_the_subset(tmp_path: Path, backend: str) -> None:
    code = r'''
import errno, subprocess
try:
    subprocess.run(["ls"])
except OSError as exc:
    print(exc.errno == errno.ENOSYS, "outside the enclave's supported POSIX subset" in str(exc))
    print(exc)
'''
    result = run_shim(["-c", code], backend=backend, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first, message = result.stdout.decode().splitlines()
    assert first == "True True"
    assert "subprocess" in message


PROCESS_CALLS = program("time_env_process_calls.py")


def test_process_creation_is_refused_with_enosys(capfd: pytest.CaptureFixture[str]) -> None:
    status, out, err, _ = _run_inside(PROCESS_CALLS, capfd)
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == 13, out  # multiprocessing's spawn is served: tests/test_children.py
    for line in lines:
        name, code, named = line.split(" ", 2)
        assert code == "ENOSYS", line
        assert named == "True", line
