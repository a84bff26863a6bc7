"""The process an enclave runs in: who it is, and what it may not do.

Identity, decided call by call (docs/time-env.md has the table):
* getpid: the enclave's *own* identity, never the host's (issue 13: a pid the program can name is a pid it
  could aim process-level calls at).  On the process backend, the child's own pid; on sim, where enclave and
  host share one process, a per-enclave virtual pid above the kernel's pid_max (so it never names a real
  process).  getppid, getuid, geteuid, getgid, getegid: the host's values, asked once per enclave (`getids`)
  and then served inside (the host is the enclave's parent); asking once means a host cannot change who the
  enclave is mid-run.  When the policy does not enable the `getids` call, a fixed virtual identity is served
  instead (pid 1, ppid 0, uid/gid 65534 "nobody"), so logging and tempfile keep working.
* getresuid/getresgid: the same ids, (uid, euid, euid); getpgrp/getpgid/getsid of itself: its own pid on sim.
* Process-level calls act only on the enclave itself: kill, prlimit, setpriority/getpriority, the sched_*
  calls, signal.pthread_kill.  On any other pid they are refused (ENOSYS naming the call).  On sim the enclave's
  process *is* the host's, so the calls that would change it - setrlimit/prlimit with limits, setpriority,
  nice, sched_setaffinity/setparam/setscheduler, abort, pthread_kill of another thread, and a signal to itself
  that has no handler and would end or stop the process - are refused there too: a sim enclave lowering
  RLIMIT_CPU would kill its host.  No enclave object (`RT = None`) serves nothing.
* getgroups: asked once per enclave (`getgroups`), then served inside.
* uname, getlogin: asked on every call (the host's kernel and terminal, as natively).
* gethostname: the sockets family's ocall (socket.gethostname); umask: kept inside (files.py).
* getpgrp, getsid, getpriority, getresuid/getresgid, times, cpu_count, getloadavg: not interposed.

Outside the subset, refused with `Unsupported` (OSError ENOSYS) naming the call: fork, forkpty, the exec and
spawn families, posix_spawn(p), system, popen, subprocess of anything but the interpreter (its
`_posixsubprocess.fork_exec`, so `subprocess.run` reports the refusal instead of a traceback from a half-started
child; the interpreter itself becomes a child enclave, and a program the policy names runs on the host:
enclave_libc/children.py), multiprocessing's fork start method (os.fork; spawn is served by children.py, and is
the default inside), kill/killpg of any process but the enclave itself (or its child enclaves: children.py),
pidfd_open, and changing the process's identity (setuid and friends, setsid, setpgid).  `os.kill` of the
enclave's own pid is served by the real signal machinery of the process that runs the enclave, so
`os.kill(os.getpid(), signal.SIGUSR1)` runs the program's handler as natively.  The wait family answers ECHILD
for anything but a child enclave.

The policy's `--allow-run` (`native.run = true`) is an escape hatch the program asks for by name: then these
calls (not the identity changes) go to the real OS, and what they start runs *outside* the enclave, with the
real descriptors of the process that runs the enclave rather than the enclave's fds.
"""

from __future__ import annotations

import _signal
import errno
import itertools
import operator
import os as _os
import posix
import sys
import threading
from collections.abc import Callable
from typing import Any

from ocall_bridge import originals
from ocall_bridge.calls import uses
from ocall_bridge.errors import HostViolation

from . import runtime
from .errors import Unsupported

# The real functions this module falls through to are the registry's (ocall_bridge.originals), never whatever
# the module attribute holds at the time.
_real_getpid, _real_kill, _real_fork = (originals.get("posix", n) for n in ("getpid", "kill", "fork"))
_real_fork_exec = originals.get("_posixsubprocess", "fork_exec")
_uname_result = _os.uname_result
_strerror = originals.get("posix", "strerror")


# What every replacement refuses (`_active`): called with no enclave, it serves nothing of the host's.
_NO_ENCLAVE = "any call with no enclave active"
_OTHERS = "another process's pid"
_SIM_CHANGE = "on sim, any change to the process the host shares"

# -- identity ----------------------------------------------------------------------------------------------

_nesting = threading.local()
VIRTUAL_IDS = (1, 0, 65534, 65534, 65534, 65534)  # pid, ppid, uid, euid, gid, egid when the policy denies getids


def _ids(rt: runtime.EnclaveRuntime) -> tuple[int, ...]:
    ids = rt.ids
    if ids is None:
        # Logging a violation of this very call reads os.getpid() (LogRecord.process): bound the recursion a
        # host lying on every getids would otherwise cause.
        depth = getattr(_nesting, "depth", 0)
        if depth >= 2:
            raise HostViolation("getids", "the host went on lying while an earlier lie was being reported")
        _nesting.depth = depth + 1
        try:
            ids = rt.ids = tuple(rt.ocall.getids())
        except Unsupported:
            # The policy keeps the host's identity from the enclave: a fixed virtual one, as a container gives
            # (pid 1, no parent, nobody), rather than failing every os.getpid() - which logging calls per record.
            ids = rt.ids = VIRTUAL_IDS
        finally:
            _nesting.depth = depth
    return ids


def _active(call: str) -> runtime.EnclaveRuntime:
    """The active enclave, or a refusal: a replacement called with no enclave (say `RT = None` from inside)
    falls through to nothing of the host's."""
    rt = runtime.RT
    if not rt:
        raise Unsupported(call, "no enclave is active")
    return rt


def _id(index: int, call: str) -> int:
    return _ids(_active(call))[index]


VIRTUAL_PID_BASE = 1 << 22  # above the largest pid_max Linux allows: a virtual pid never names a real process
_virtual_pids = itertools.count(VIRTUAL_PID_BASE + 1)


def shares_host_process(rt: runtime.EnclaveRuntime) -> bool:
    """Whether the enclave runs in the host's own process (sim).  Anything but the process transport counts as
    shared, so an unknown transport gets the stricter rules."""
    shared = rt.extra.get("shares_host_process")
    if shared is None:
        shared = rt.extra["shares_host_process"] = getattr(rt.client.transport, "name", None) != "process"
    return shared


def _own_pid(rt: runtime.EnclaveRuntime) -> int:
    pid = rt.extra.get("pid")
    if pid is None:
        ids = _ids(rt)
        if ids is VIRTUAL_IDS or ids == VIRTUAL_IDS:
            pid = VIRTUAL_IDS[0] if shares_host_process(rt) else _real_getpid()
        else:
            pid = next(_virtual_pids) if shares_host_process(rt) else _real_getpid()
        rt.extra["pid"] = pid
    return pid


@uses("getids", partial=_NO_ENCLAVE)
def getpid() -> int:
    return _own_pid(_active("getpid"))


@uses("getids", partial=_NO_ENCLAVE)
def getppid() -> int:
    rt = _active("getppid")
    ids = _ids(rt)
    return ids[1] if ids == VIRTUAL_IDS else ids[0]  # the host is the enclave's parent


def _id_reader(index: int, name: str) -> Callable[[], int]:
    """One of the ids the host answers once per enclave (`getids`): the same for four functions of os."""

    @uses("getids", partial=_NO_ENCLAVE)
    def read() -> int:
        return _id(index, name)

    read.__name__ = read.__qualname__ = name
    return read


getuid, geteuid, getgid, getegid = (_id_reader(i, n) for i, n in enumerate(("getuid", "geteuid", "getgid",
                                                                            "getegid"), start=2))


@uses("getids", partial=_NO_ENCLAVE)
def getresuid() -> tuple[int, int, int]:
    ids = _ids(_active("getresuid"))
    return ids[2], ids[3], ids[3]


@uses("getids", partial=_NO_ENCLAVE)
def getresgid() -> tuple[int, int, int]:
    ids = _ids(_active("getresgid"))
    return ids[4], ids[5], ids[5]


@uses("getgroups", partial=_NO_ENCLAVE)
def getgroups() -> list[int]:
    rt = _active("getgroups")
    groups = rt.extra.get("groups")
    if groups is None:
        groups = rt.extra["groups"] = [gid for (gid,) in rt.ocall.getgroups()]
    return list(groups)


@uses("uname", partial=_NO_ENCLAVE)
def uname() -> _os.uname_result:
    rt = _active("uname")
    return _uname_result(rt.ocall.uname())


@uses("getlogin", partial=_NO_ENCLAVE)
def getlogin() -> str:
    rt = _active("getlogin")
    return rt.ocall.getlogin()


# -- signals -----------------------------------------------------------------------------------------------


def _native_run(rt: runtime.EnclaveRuntime | None) -> bool:
    """Whether process calls go to the real OS: only when the policy lets the program start processes
    (--allow-run / native.run), an escape hatch whose processes run outside the enclave.  No enclave object
    grants nothing (fail closed: `RT = None` from inside must not open the real calls)."""
    if not rt:
        return False
    allowed = getattr(rt.access, "native_allowed", None)
    return bool(allowed is not None and allowed("run"))


@uses("getids", partial=f"{_OTHERS} (unless --allow-run); on sim, a signal that would end the process")
def kill(pid: Any, signal: Any, /) -> None:
    pid, sig = operator.index(pid), operator.index(signal)
    rt = runtime.RT
    if rt and pid == _own_pid(rt):
        _no_fatal_signal("kill", rt, sig)
        # The process running the enclave's code receives it: its handlers are the program's.
        return _real_kill(_real_getpid(), sig)
    if _native_run(rt):  # --allow-run: other processes are the real OS's business
        return _real_kill(pid, sig)
    own = _own_pid(_active("kill"))
    raise Unsupported("kill", f"an enclave can signal only itself (pid {own}), not pid {pid}")


# Signals whose default action is to do nothing: everything else, left at SIG_DFL, ends or stops the process.
_HARMLESS_BY_DEFAULT = frozenset(int(getattr(_signal, name)) for name in ("SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH")
                                 if hasattr(_signal, name))
_UNCATCHABLE = frozenset(int(getattr(_signal, name)) for name in ("SIGKILL", "SIGSTOP") if hasattr(_signal, name))
_getsignal = originals.get("_signal", "getsignal")


def _no_fatal_signal(call: str, rt: runtime.EnclaveRuntime, sig: int) -> None:
    """On sim, a signal to itself that would end or stop the process is refused: that process is the host."""
    if sig == 0 or not shares_host_process(rt):
        return
    if sig in _UNCATCHABLE or (sig not in _HARMLESS_BY_DEFAULT and _getsignal(sig) == _signal.SIG_DFL):
        raise Unsupported(call, f"signal {sig} has no handler here and would end or stop the process: {_SHARED}")


def _no_children(original: Any) -> Any:
    def wait(*args: Any, **kwargs: Any) -> Any:
        if _native_run(runtime.RT):
            return original(*args, **kwargs)
        raise OSError(errno.ECHILD, _strerror(errno.ECHILD))  # ChildProcessError, as natively without children

    wait.__name__ = wait.__qualname__ = original.__name__
    return uses()(wait)


# -- process-level calls: on the enclave itself only -------------------------------------------------------
_real = {name: originals.get("posix", name) for name in (
    "nice", "getpriority", "setpriority", "sched_setaffinity", "sched_getaffinity", "sched_setparam",
    "sched_getparam", "sched_setscheduler", "sched_getscheduler", "sched_rr_get_interval", "getpgid", "getsid",
    "getpgrp", "abort") if originals.get("posix", name, None) is not None}
_real_setrlimit, _real_prlimit = originals.get("resource", "setrlimit"), originals.get("resource", "prlimit", None)
_real_pthread_kill = originals.get("_signal", "pthread_kill")
_get_ident = threading.get_ident
_SHARED = ("on the sim backend the enclave runs in the host's own process, so this would change the host "
           "(the process backend gives the enclave a process of its own)")


def _self_only(call: str, pid: Any) -> runtime.EnclaveRuntime:
    """The active enclave if `pid` names it (0 or its own pid), else a refusal naming the call."""
    rt = _active(call)
    pid = operator.index(pid)
    if pid != 0 and pid != _own_pid(rt):
        raise Unsupported(call, f"an enclave can act only on itself (pid {_own_pid(rt)}), not on pid {pid}")
    return rt


def _not_shared(call: str, rt: runtime.EnclaveRuntime) -> None:
    if shares_host_process(rt):
        raise Unsupported(call, _SHARED)


@uses(partial=_SIM_CHANGE)
def nice(increment: Any, /) -> int:
    _not_shared("nice", _active("nice"))
    return _real["nice"](increment)


@uses("getids", partial=f"{_OTHERS}, or `which` other than PRIO_PROCESS")
def getpriority(which: Any, who: Any) -> int:
    if operator.index(which) != posix.PRIO_PROCESS:
        raise Unsupported("getpriority", "an enclave can ask only about its own process")
    _self_only("getpriority", who)
    return _real["getpriority"](which, 0)


@uses("getids", partial=f"{_OTHERS}, or `which` other than PRIO_PROCESS; {_SIM_CHANGE}")
def setpriority(which: Any, who: Any, priority: Any) -> None:
    if operator.index(which) != posix.PRIO_PROCESS:
        raise Unsupported("setpriority", "an enclave can change only its own process")
    _not_shared("setpriority", _self_only("setpriority", who))
    return _real["setpriority"](which, 0, priority)


def _on_self(name: str, changes: bool) -> Any:
    real = _real[name]

    def call(pid: Any, /, *args: Any) -> Any:
        rt = _self_only(name, pid)
        if changes:
            _not_shared(name, rt)
        return real(0, *args)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"os.{name} of the enclave itself only" + (" (refused on sim)." if changes else ".")
    return uses("getids", partial=_OTHERS + (f"; {_SIM_CHANGE}" if changes else ""))(call)


@uses("getids", partial=_OTHERS)
def getpgid(pid: Any, /) -> int:
    rt = _self_only("getpgid", pid)
    return _own_pid(rt) if shares_host_process(rt) else _real["getpgid"](0)


@uses("getids", partial=_OTHERS)
def getsid(pid: Any, /) -> int:
    rt = _self_only("getsid", pid)
    return _own_pid(rt) if shares_host_process(rt) else _real["getsid"](0)


@uses("getids", partial=_NO_ENCLAVE)
def getpgrp() -> int:
    rt = _active("getpgrp")
    return _own_pid(rt) if shares_host_process(rt) else _real["getpgrp"]()


@uses(partial=_SIM_CHANGE)
def abort() -> None:
    _not_shared("abort", _active("abort"))
    _real["abort"]()


@uses(partial=_SIM_CHANGE)
def setrlimit(resource: Any, limits: Any, /) -> None:
    _not_shared("resource.setrlimit", _active("resource.setrlimit"))
    _real_setrlimit(resource, limits)


@uses("getids", partial=f"{_OTHERS}; {_SIM_CHANGE} (new limits)")
def prlimit(pid: Any, resource: Any, limits: Any = None, /) -> tuple[int, int]:
    rt = _self_only("resource.prlimit", pid)
    if _real_prlimit is None:  # a platform without prlimit(2): as natively, there is no resource.prlimit
        raise AttributeError("module 'resource' has no attribute 'prlimit'")
    if limits is None:
        return _real_prlimit(0, resource)
    _not_shared("resource.prlimit", rt)
    return _real_prlimit(0, resource, limits)


@uses(partial="on sim, another thread, or a signal that would end the process")
def pthread_kill(thread_id: Any, signalnum: Any, /) -> None:
    rt = _active("signal.pthread_kill")
    if shares_host_process(rt) and operator.index(thread_id) != _get_ident():
        raise Unsupported("signal.pthread_kill", f"only the calling thread can be signalled: {_SHARED}")
    _no_fatal_signal("signal.pthread_kill", rt, operator.index(signalnum))
    _real_pthread_kill(thread_id, signalnum)


_real_raise_signal = originals.get("_signal", "raise_signal")


@uses(partial="on sim, a signal that would end the process")
def raise_signal(signalnum: Any, /) -> None:
    _no_fatal_signal("signal.raise_signal", _active("signal.raise_signal"), operator.index(signalnum))
    _real_raise_signal(signalnum)


# -- refused -----------------------------------------------------------------------------------------------


def _caller_module(depth: int = 2) -> str:
    try:
        return sys._getframe(depth).f_globals.get("__name__", "") or ""
    except ValueError:  # pragma: no cover - shallower stack than asked
        return ""


def _refuser(name: str, detail: str, original: Any = None) -> Any:
    """A replacement that refuses `name`; with `original`, the policy's --allow-run lets the real call through."""
    def refused(*args: Any, **kwargs: Any) -> Any:
        if original is not None and _native_run(runtime.RT):
            return original(*args, **kwargs)
        raise Unsupported(name, detail)

    refused.__name__ = refused.__qualname__ = name
    refused.__doc__ = f"Refused inside an enclave: {detail}."
    return uses(partial=f"every call: {detail}" + (" (unless --allow-run)" if original is not None else ""))(refused)


_NO_PROCESSES = "an enclave cannot create processes"


@uses(partial="every program (unless --allow-run): children.py serves the interpreter")
def fork_exec(args: Any, executable_list: Any, *rest: Any) -> int:
    """`_posixsubprocess.fork_exec`, under subprocess and multiprocessing: refused before anything starts."""
    if _native_run(runtime.RT):
        return _real_fork_exec(args, executable_list, *rest)
    raise Unsupported(*fork_exec_refusal(args, executable_list, _caller_module()))


def refused_fork_exec(args: Any, executable_list: Any, caller: str) -> Unsupported:
    """The refusal of a fork_exec called from module `caller` (subprocess, multiprocessing, anything)."""
    return Unsupported(*fork_exec_refusal(args, executable_list, caller))


def fork_exec_refusal(args: Any, executable_list: Any, caller: str) -> tuple[str, str]:
    """(call, detail) of the refusal of a fork_exec called from module `caller`."""
    program = args[0] if isinstance(args, list | tuple) and args else executable_list
    if isinstance(program, bytes):
        program = _os.fsdecode(program)
    if caller.startswith("multiprocessing"):
        return "multiprocessing", f"cannot start a worker process ({_NO_PROCESSES}; use threads)"
    name = "subprocess.Popen" if caller == "subprocess" else "_posixsubprocess.fork_exec"
    hint = f" (allow a host program by name with --allow-run={_os.path.basename(program)})" \
        if isinstance(program, str) and program else ""
    return name, f"cannot run {program!r}: {_NO_PROCESSES}{hint}"


@uses(partial="every call (unless --allow-run)")
def fork() -> int:
    if _native_run(runtime.RT):
        return _real_fork()
    caller = _caller_module()
    if caller.startswith("multiprocessing"):
        raise Unsupported("multiprocessing", f"the 'fork' start method cannot start a process ({_NO_PROCESSES})")
    raise Unsupported("fork", _NO_PROCESSES)


REFUSED_CREATE = ("forkpty", "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
                  "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe",
                  "posix_spawn", "posix_spawnp", "system", "popen")
REFUSED_IDENTITY = ("setuid", "setgid", "seteuid", "setegid", "setreuid", "setregid", "setresuid", "setresgid",
                    "setgroups", "initgroups", "setsid", "setpgid", "setpgrp")
WAIT = ("wait", "waitpid", "wait3", "wait4", "waitid")

#: Every call this module refuses, for the docs and the compatibility matrix.
REFUSED = ("fork", *REFUSED_CREATE, "_posixsubprocess.fork_exec", "killpg", "pidfd_open", *REFUSED_IDENTITY)

PATCHES: dict[Any, Any] = {
    **originals.patches("posix", {
        "getresuid": getresuid,
        "getresgid": getresgid,
        "getpriority": getpriority,
        "setpriority": setpriority,
        "nice": nice,
        "getpgid": getpgid,
        "getsid": getsid,
        "getpgrp": getpgrp,
        "abort": abort,
        "getpid": getpid,
        "getppid": getppid,
        "getuid": getuid,
        "geteuid": geteuid,
        "getgid": getgid,
        "getegid": getegid,
        "getgroups": getgroups,
        "uname": uname,
        "getlogin": getlogin,
        "kill": kill,
        "killpg": _refuser("killpg", "an enclave can signal only itself", originals.get("posix", "killpg")),
        "fork": fork,
    }),
    **originals.patches("resource", {"setrlimit": setrlimit}),
    **originals.patches("_signal", {"pthread_kill": pthread_kill, "raise_signal": raise_signal}),
    **originals.patches("_posixsubprocess", {"fork_exec": fork_exec}),
}
for _name in REFUSED_CREATE:
    # exec*/spawn*/popen are partly Python functions of os.py: patch each object where it lives.
    _original = originals.get("os", _name, None)
    if _original is not None:
        detail = "an enclave cannot replace its program" if _name.startswith("exec") else _NO_PROCESSES
        PATCHES[_original] = _refuser(_name, detail, _original)
for _name in REFUSED_IDENTITY:
    _original = originals.get("posix", _name, None)
    if _original is not None:
        PATCHES[_original] = _refuser(_name, "an enclave cannot change the identity of the process it runs in")
for _name in WAIT:
    _original = originals.get("posix", _name, None)
    if _original is not None:
        PATCHES[_original] = _no_children(_original)
if _real_prlimit is not None:
    PATCHES[_real_prlimit] = prlimit
for _name, _changes in (("sched_setaffinity", True), ("sched_setparam", True), ("sched_setscheduler", True),
                        ("sched_getaffinity", False), ("sched_getparam", False), ("sched_getscheduler", False),
                        ("sched_rr_get_interval", False)):
    if _name in _real:
        PATCHES[_real[_name]] = _on_self(_name, _changes)
_pidfd_open = originals.get("posix", "pidfd_open", None)
if _pidfd_open is not None:
    PATCHES[_pidfd_open] = _refuser("pidfd_open", "an enclave can see no other process", _pidfd_open)

__all__ = ["PATCHES", "REFUSED", "getpid", "getppid", "kill", "fork_exec", "uname", "getgroups", "getlogin"]
