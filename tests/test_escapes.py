"""Python-level escapes (issue 13): each attack is refused, and a negative control switches off exactly the
defence that refuses it and shows the attack then gets through.

The attacks run inside a sim enclave in this very process, so a control can monkeypatch the one function or
table entry it switches off; the last tests run the same attacks on every backend through the command line.
What Python cannot hide on sim (the runtime's own module globals, C calls without an audit event) is stated in
docs/threat-model.md; these tests cover the routes the issue names.
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, printed_in_sim, program, run_shim

from enclave_libc import closed, env
from enclave_libc import process as eprocess
from ocall_bridge.access import Access
from posix_shim import Enclave, interpose, tripwires


class Guarded(Access):
    """Every call, every path except those under `secret`, no host environment, no native escapes."""

    def __init__(self, secret: Path) -> None:
        self.secret = os.fsencode(secret)

    def check(self, call: str, kind: str, resource: Any) -> str | None:
        if isinstance(resource, bytes) and (resource == self.secret or resource.startswith(self.secret + b"/")):
            return f"no {kind} access to {os.fsdecode(resource)}"
        return None

    def env_allowed(self, name: str) -> bool:
        return False

    def env_values(self) -> dict[str, str]:
        return {}

    def native_allowed(self, what: str) -> bool:
        return False


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "key.txt").write_bytes(b"the host's secret\n")
    return folder


def attempt(secret: Path, code: str, capfd: pytest.CaptureFixture[str]) -> str:
    """Run `code` in a sim enclave where `secret` is denied; it prints one line: `ok <result>` or
    `refused <errno> <message>`.  Returns that line."""
    program = "import os, sys\nSECRET = " + repr(str(secret)) + "\ntry:\n" + textwrap.indent(
        textwrap.dedent(code), "    ") + "\nexcept OSError as exc:\n    print('refused', exc.errno, exc)\n" \
        "else:\n    print('ok', RESULT)\n"
    return printed_in_sim(Guarded(secret), program, capfd).strip().splitlines()[-1]


# -- freshly built C modules ---------------------------------------------------------------------------------

FRESH = {
    "module_from_spec": "import importlib.util\nm = importlib.util.module_from_spec(importlib.util.find_spec('posix'))",
    "create_builtin": "import _imp, importlib.machinery\n"
                      "m = _imp.create_builtin(importlib.machinery.ModuleSpec('posix', None))",
    "del sys.modules": "saved = sys.modules.pop('posix')\ntry:\n    import posix as m\nfinally:\n"
                       "    sys.modules['posix'] = saved",
    "reload": "import importlib, posix\nm = importlib.reload(posix)",
}


@pytest.mark.parametrize("how", sorted(FRESH))
def test_a_fresh_posix_module_is_the_enclaves(how: str, secret: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # stat raises no audit event: only the by-name patching of the fresh module stands between it and the host.
    line = attempt(secret, FRESH[how] + "\nRESULT = m.stat(SECRET + '/key.txt').st_size", capfd)
    assert line.startswith(f"refused {errno.EACCES} posix_shim: stat("), line


def test_control_without_fresh_module_patching_stat_reaches_the_host(secret: Path, capfd: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # (An executed module: CPython's own stat crashes on a module_from_spec posix that was never executed.)
    monkeypatch.setattr(interpose, "_seal_fresh", lambda module, name=None: None)
    line = attempt(secret, FRESH["del sys.modules"] + "\nRESULT = m.stat(SECRET + '/key.txt').st_size", capfd)
    assert line == "ok 18"


def test_a_fresh_posixsubprocess_refuses_fork_exec(secret: Path, capfd: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code = ("import importlib.util\n"
            "m = importlib.util.module_from_spec(importlib.util.find_spec('_posixsubprocess'))\n"
            "try:\n    m.fork_exec(['sh', '-c', 'true'], [b'/bin/sh'])\n"
            "except TypeError as exc:\n    RESULT = 'native: ' + str(exc)")
    line = attempt(secret, code, capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: _posixsubprocess.fork_exec() is outside"), line
    # Control: unpatched, the fresh module's fork_exec is the native one - it answers with its own argument
    # check, so the same call with its 23 arguments would run sh (no audit event guards fork_exec itself).
    monkeypatch.setattr(interpose, "_seal_fresh", lambda module, name=None: None)
    line = attempt(secret, code, capfd)
    # (3.11: "fork_exec() takes exactly 23 arguments", 3.12+: "fork_exec expected 23 arguments, got 2".)
    assert line.startswith("ok native: fork_exec") and "23 arguments" in line, line


def test_a_fresh_termios_or_posixshmem_is_refused_by_name(secret: Path, capfd: pytest.CaptureFixture[str]) -> None:
    line = attempt(secret, "import _posixshmem\nRESULT = _posixshmem.shm_open('/posix_shim_x', os.O_CREAT | "
                           "os.O_RDWR, 0o600)", capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: posixshmem.shm_open() is outside"), line


# -- C types reached through __subclasses__() and __mro__ ----------------------------------------------------

FILEIO = ("import _io\nFileIO = [c for c in _io._RawIOBase.__subclasses__() if c.__module__ == '_io' "
          "and c.__name__ == 'FileIO'][0]\nwith FileIO(SECRET + '/key.txt') as f:\n    RESULT = f.read()")
SOCKET = ("real = [c for c in object.__subclasses__() if c.__module__ == '_socket' and c.__name__ == 'socket'][0]\n"
          "s = real(2, 1)\nRESULT = s.fileno() >= 0\ns.close()")


@pytest.mark.parametrize("code, event", [(FILEIO, "open"), (SOCKET, "socket.__new__")])
def test_the_real_c_types_are_refused_by_the_audit_hook(code: str, event: str, secret: Path,
                                                        capfd: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    line = attempt(secret, code, capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: {event}() is outside"), line
    # Control: the hook not sealed (enter() hands out a key but seals nothing) - the real type reaches the host.
    monkeypatch.setattr(tripwires, "enter", lambda: object())
    line = attempt(secret, code, capfd)
    assert line in ("ok b\"the host's secret\\n\"", "ok True"), line


# -- references captured in default arguments ----------------------------------------------------------------

TEMPFILE_UNLINK = ("import tempfile\ncloser = tempfile._TemporaryFileCloser(open(os.devnull), SECRET + '/key.txt')\n"
                   "closer.close()\nRESULT = 'deleted'")


def test_a_default_argument_holds_the_enclaves_function(secret: Path, capfd: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    line = attempt(secret, TEMPFILE_UNLINK, capfd)
    assert line.startswith(f"refused {errno.EACCES} posix_shim: unlink("), line  # served, and denied by policy
    assert (secret / "key.txt").exists()
    # Control 1: defaults not swapped - tempfile calls the real unlink; the audit hook is what refuses it now.
    monkeypatch.setattr(interpose.Interposer, "_patch_defaults", lambda self, namespace: None)
    line = attempt(secret, TEMPFILE_UNLINK, capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: os.remove() is outside"), line
    # Control 2: and without the seal either, the file the program may not even stat is gone.
    monkeypatch.setattr(tripwires, "enter", lambda: object())
    assert attempt(secret, TEMPFILE_UNLINK, capfd) == "ok deleted"
    assert not (secret / "key.txt").exists()


def test_defaults_are_given_back_after_the_enclave() -> None:
    import tempfile

    # Where tempfile keeps its captured unlink: close(self, unlink=...) on 3.11, cleanup(..., unlink) on 3.12+.
    holder = next(f for f in (getattr(tempfile._TemporaryFileCloser, n, None) for n in ("close", "cleanup"))
                  if f is not None and f.__defaults__ and os.unlink in f.__defaults__)
    before = holder.__defaults__
    with Enclave(backend="sim") as enclave:
        enclave.run_code("pass")
    assert holder.__defaults__ == before and os.unlink in before


# -- every public callable is served or refused ----------------------------------------------------------------

INVENTORY = program("escapes_inventory.py")


def test_every_public_callable_is_served_or_refused(secret: Path, capfd: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert attempt(secret, INVENTORY, capfd) == "ok []"
    line = attempt(secret, "RESULT = os.getgrouplist('root', 0)", capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: os.getgrouplist() is outside"), line
    # Control: the refusal table without getgrouplist - it runs natively (NSS reads the host's group files).
    needs = closed.needs_serving
    monkeypatch.setattr(closed, "needs_serving", lambda m, n, v: n != "getgrouplist" and needs(m, n, v))
    monkeypatch.setattr(closed, "_table_cache", [None, {}])  # computed again with that rule
    assert attempt(secret, "RESULT = os.getgrouplist('root', 0)", capfd) == "ok [0]"


# -- the runtime's own switches ------------------------------------------------------------------------------

RT_NONE = ("import enclave_libc.runtime as r\nsaved, r.RT = r.RT, None\ntry:\n"
           "    RESULT = os.environ.get('POSIX_SHIM_TEST_SECRET')\nfinally:\n    r.RT = saved")


def test_rt_none_does_not_expose_the_host_environment(secret: Path, capfd: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSIX_SHIM_TEST_SECRET", "hunter2")
    line = attempt(secret, RT_NONE, capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: os.environ() is outside"), line
    # Control: the old fall-through (no enclave -> the host's dict) hands the program the host's variable.
    real = env.current_data
    monkeypatch.setattr(env, "current_data", lambda: env._host_posix_environ if env.runtime.RT is None else real())
    assert attempt(secret, RT_NONE, capfd) == "ok hunter2"


TRIPWIRE_SWITCH = ("import enclave_libc.runtime as r, posix_shim.tripwires as t\n"
                   "t._native_allowed = t._armed = lambda what: True\nt.EVENTS = {}; t.GUARDED = frozenset()\n"
                   "saved, r.RT = r.RT, None\ntry:\n    import ctypes\n"
                   "    RESULT = ctypes.CDLL('libc.so.6').getpid() > 0\nfinally:\n    r.RT = saved")


def test_the_tripwire_cannot_be_switched_off_from_inside(secret: Path, capfd: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("_native_allowed", "_armed", "EVENTS", "GUARDED"):
        monkeypatch.setattr(tripwires, name, getattr(tripwires, name))  # the program rebinds them: undo after
    line = attempt(secret, TRIPWIRE_SWITCH, capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: ctypes.CDLL() is outside"), line
    # Control: the hook not sealed - the same program loads libc.
    monkeypatch.setattr(tripwires, "enter", lambda: object())
    assert attempt(secret, TRIPWIRE_SWITCH, capfd) == "ok True"


GRANTING_RT = ("import enclave_libc.runtime as r, types\n"
               "grant = types.SimpleNamespace(native_allowed=lambda what: True)\n"
               "saved, r.RT = r.RT, types.SimpleNamespace(access=grant)\ntry:\n    import ctypes\n"
               "    RESULT = ctypes.CDLL('libc.so.6').getpid() > 0\nfinally:\n    r.RT = saved")


def test_a_forged_runtime_does_not_grant_ffi(secret: Path, capfd: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The hook took the policy's grants when it was sealed; a program's stand-in for RT changes nothing.
    line = attempt(secret, GRANTING_RT, capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: ctypes.CDLL() is outside"), line
    # Control: without the seal's own record, the forged runtime is all there is to ask - and libc loads.
    real_enter = tripwires.enter

    def enter_then_unseal() -> object:
        key = real_enter()
        tripwires.leave(key)
        return key

    monkeypatch.setattr(tripwires, "enter", enter_then_unseal)
    assert attempt(secret, GRANTING_RT, capfd) == "ok True"


HOOK_STATE = program("escapes_hook_state.py")


def test_the_hooks_own_state_cannot_be_rewritten(secret: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with Enclave(policy=Guarded(secret), backend="sim") as enclave:
        capfd.readouterr()
        enclave.run_code("import os, sys\ntry:\n" + textwrap.indent(HOOK_STATE, "    ")
                         + "\nexcept OSError as exc:\n    print('refused', exc.errno, exc)\n")
        out, _ = capfd.readouterr()
    assert out.splitlines()[0] == f"defaults {errno.ENOSYS}"
    assert out.splitlines()[1].startswith(f"refused {errno.ENOSYS} posix_shim: ctypes.CDLL() is outside")


def test_gc_cannot_find_the_originals(secret: Path, capfd: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import gc\nRESULT = any(getattr(o, '__name__', '') == 'listdir' and type(o).__name__ == " \
           "'builtin_function_or_method' for o in gc.get_objects())"
    line = attempt(secret, code, capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: gc.get_objects() is outside"), line
    monkeypatch.setattr(tripwires, "enter", lambda: object())
    assert attempt(secret, code, capfd) == "ok True"


def test_a_program_cannot_add_an_audit_hook_of_its_own(secret: Path, capfd: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Its hook would see the seal's events and, on sim, outlive the run in the host's process.  CPython drops a
    # hook whose addition an existing hook refuses with an Exception, silently: so the proof is that it sees
    # nothing.
    code = "seen = []\nsys.addaudithook(lambda event, args: seen.append(event))\nsys.audit('posix_shim.test')\n" \
           "RESULT = 'posix_shim.test' in seen"
    assert attempt(secret, code, capfd) == "ok False"
    monkeypatch.setattr(tripwires, "enter", lambda: object())
    assert attempt(secret, code, capfd) == "ok True"  # (a hook that only appends stays in this test process)


# -- the host cannot be harmed --------------------------------------------------------------------------------

def test_getpid_is_never_the_hosts_on_sim(secret: Path, capfd: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    line = attempt(secret, "RESULT = os.getpid()", capfd)
    assert line != f"ok {os.getpid()}" and int(line.split()[1]) > 1 << 22
    # Control: treated as a process of its own, sim would answer the real pid - the host's.
    monkeypatch.setattr(eprocess, "shares_host_process", lambda rt: False)
    assert attempt(secret, "RESULT = os.getpid()", capfd) == f"ok {os.getpid()}"


LIMITS = [
    ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (1, 1))\nRESULT = 'lowered'", "resource.setrlimit"),
    ("import resource\nRESULT = resource.prlimit(0, resource.RLIMIT_NOFILE, (16, 16))", "resource.prlimit"),
    ("RESULT = os.setpriority(os.PRIO_PROCESS, 0, 19)", "setpriority"),
    ("RESULT = os.nice(19)", "nice"),
    ("RESULT = os.sched_setaffinity(0, {0})", "sched_setaffinity"),
]


@pytest.mark.parametrize("code, call", LIMITS, ids=[c for _, c in LIMITS])
def test_sim_never_changes_the_host_process(code: str, call: str, secret: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    before = (resource.getrlimit(resource.RLIMIT_CPU), resource.getrlimit(resource.RLIMIT_NOFILE),
              os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0))
    line = attempt(secret, code, capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: {call}() is outside the enclave's supported POSIX "
                           f"subset: on the sim backend the enclave runs in the host's own process"), line
    assert (resource.getrlimit(resource.RLIMIT_CPU), resource.getrlimit(resource.RLIMIT_NOFILE),
            os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0)) == before


def test_control_sim_limits_would_reach_the_host(secret: Path, capfd: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Harmless on purpose: the control sets RLIMIT_CORE to what it already is, and that goes through.
    monkeypatch.setattr(eprocess, "shares_host_process", lambda rt: False)
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    line = attempt(secret, f"import resource\nresource.setrlimit(resource.RLIMIT_CORE, ({soft}, {hard}))\n"
                           "RESULT = 'set'", capfd)
    assert line == "ok set"


OTHERS = program("escapes_others.py")


def test_process_level_calls_on_other_pids_are_refused(tmp_path: Path, backend: str) -> None:
    r = run_shim(["-c", OTHERS], backend=backend, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["ENOSYS", "True"]


ATTACKS = program("escapes_attacks.py")


def test_the_attacks_are_refused_on_every_backend(tmp_path: Path, backend: str) -> None:
    folder = tmp_path / "hidden"
    folder.mkdir()
    (folder / "key.txt").write_bytes(b"secret")
    work = tmp_path / "work"
    work.mkdir()
    (work / "attacks.py").write_text(ATTACKS)
    r = run_shim(["attacks.py", str(folder / "key.txt")], backend=backend, cwd=work)
    assert r.returncode == 0, r.stderr
    # The stat of a file outside every grant answers ENOENT (not in the enclave's view: access.Absent), the read
    # EACCES; neither escapes.
    assert r.stdout.decode().split() == ["ENOENT", "EACCES", "ENOSYS", "EACCES", "ENOSYS", "ENOSYS", "ENOSYS"]
    assert (folder / "key.txt").read_bytes() == b"secret"


def test_help_and_policy_check_say_what_sim_does_not_confine(tmp_path: Path) -> None:
    helped = run_shim(["--help"], cwd=tmp_path)
    assert helped.returncode == 0
    assert b"confines" in helped.stdout and b"Python only" in helped.stdout.replace(b"\n", b" ").replace(b"  ", b" ")
    checked = subprocess.run([sys.executable, "-m", "posix_shim", "policy", "check"], cwd=tmp_path,
                             capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert b"note: on --backend sim these rules bind Python code only: native code" in checked.stdout


FATAL_SELF_SIGNAL = "import signal\nos.kill(os.getpid(), signal.SIGTERM)\nRESULT = 'still here'"


def test_sim_refuses_a_fatal_signal_to_itself(secret: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # On sim the enclave's process is the host's: SIGTERM with no handler would end the host (here: pytest).
    line = attempt(secret, FATAL_SELF_SIGNAL, capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: kill() is outside"), line
    line = attempt(secret, "import signal\nsignal.raise_signal(signal.SIGKILL)\nRESULT = 'still here'", capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: signal.raise_signal() is outside"), line
    # With a handler of its own the signal is the program's business, and delivered.
    handled = ("import signal\ngot = []\nsignal.signal(signal.SIGTERM, lambda s, f: got.append(s))\n"
               "os.kill(os.getpid(), signal.SIGTERM)\nsignal.signal(signal.SIGTERM, signal.SIG_DFL)\nRESULT = got")
    assert attempt(secret, handled, capfd) == f"ok [{int(__import__('signal').SIGTERM)}]"


def test_control_without_the_check_a_sim_enclave_kills_its_host(tmp_path: Path) -> None:
    # In a runner of its own (it dies): the check switched off, the enclave's SIGTERM ends the host process.
    runner = ("import sys\nfrom enclave_libc import process\nfrom posix_shim import Enclave\n"
              "process._no_fatal_signal = lambda call, rt, sig: None\n"
              "with Enclave(backend='sim') as e:\n"
              "    e.run_code('import os, signal\\nos.kill(os.getpid(), signal.SIGTERM)')\n"
              "print('host survived')\n")
    r = subprocess.run([sys.executable, "-c", runner], cwd=tmp_path, capture_output=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == -15 and b"host survived" not in r.stdout, (r.returncode, r.stderr)
    r = subprocess.run([sys.executable, "-c", runner.replace("process._no_fatal_signal = lambda call, rt, sig: None\n",
                                                             "")], cwd=tmp_path, capture_output=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0 and r.stdout == b"host survived\n", r.stderr


# -- the interposition index's tag reader (ctypes) is no memory reader for the program ------------------------

READ_MEMORY = ("import sys\nreader = sys.modules['posix_shim.interpose_index']._reader[0]\n"
               "view = reader._view(id(sys.modules), 64)\nRESULT = 'read ' + str(len(bytes(view)))")


def test_the_index_tag_reader_cannot_read_memory_from_inside(secret: Path, capfd: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The interposer imports ctypes to read dict version tags (posix_shim/interpose_index.py) and keeps neither
    a memory view nor a resolved C function: making a view from inside needs a symbol lookup, which the sealed
    audit hook refuses."""
    line = attempt(secret, READ_MEMORY, capfd)
    assert line.startswith(f"refused {errno.ENOSYS} posix_shim: ctypes.dlsym() is outside"), line
    # Control: without the seal the same program reads the host process's memory.
    monkeypatch.setattr(tripwires, "enter", lambda: object())
    assert attempt(secret, READ_MEMORY, capfd) == "ok read 64"
