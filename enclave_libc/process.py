"""The process an enclave runs in: who it is, and what it may not do.

Identity, decided call by call (docs/time-env.md has the table):
* getpid, getppid, getuid, geteuid, getgid, getegid: the *host's* values, asked once per enclave (`getids`) and
  then served inside.  The pid a user sees and signals is the host's (on the process backend the enclave's own
  process is an implementation detail); asking once means a host cannot change who the enclave is mid-run.
  When the policy does not enable the `getids` call, a fixed virtual identity is served instead (pid 1, ppid 0,
  uid/gid 65534 "nobody"), so logging and tempfile keep working.
* getgroups: asked once per enclave (`getgroups`), then served inside.
* uname, getlogin: asked on every call (the host's kernel and terminal, as natively).
* gethostname: the sockets family's ocall (socket.gethostname); umask: kept inside (files.py).
* getpgrp, getsid, getpriority, getresuid/getresgid, times, cpu_count, getloadavg: not interposed.

Outside the subset, refused with `Unsupported` (OSError ENOSYS) naming the call: fork, forkpty, the exec and
spawn families, posix_spawn(p), system, popen, subprocess (its `_posixsubprocess.fork_exec`, so
`subprocess.run` reports the refusal instead of a traceback from a half-started child), multiprocessing's start
methods (fork -> os.fork, spawn and forkserver -> fork_exec), kill/killpg of any process but the enclave itself,
pidfd_open, and changing the process's identity (setuid and friends, setsid, setpgid).  `os.kill` of the
enclave's own pid is served by the real signal machinery of the process that runs the enclave, so
`os.kill(os.getpid(), signal.SIGUSR1)` runs the program's handler as natively.  The wait family answers ECHILD:
an enclave never has children.

The policy's `--allow-run` (`native.run = true`) is an escape hatch the program asks for by name: then these
calls (not the identity changes) go to the real OS, and what they start runs *outside* the enclave, with the
real descriptors of the process that runs the enclave rather than the enclave's fds.
"""

from __future__ import annotations

import _posixsubprocess
import errno
import operator
import os as _os
import posix
import sys
import threading
from typing import Any

from ocall_bridge.errors import HostViolation

from . import runtime
from .errors import Unsupported

_real_getpid, _real_kill, _real_fork = posix.getpid, posix.kill, posix.fork
_real_fork_exec = _posixsubprocess.fork_exec
_uname_result = _os.uname_result
_strerror = _os.strerror


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


def _id(index: int, real: Any) -> int:
    rt = runtime.RT
    if rt is None:
        return real()
    return _ids(rt)[index]


def getpid() -> int:
    return _id(0, posix.getpid)


def getppid() -> int:
    return _id(1, posix.getppid)


def getuid() -> int:
    return _id(2, posix.getuid)


def geteuid() -> int:
    return _id(3, posix.geteuid)


def getgid() -> int:
    return _id(4, posix.getgid)


def getegid() -> int:
    return _id(5, posix.getegid)


def getgroups() -> list[int]:
    rt = runtime.RT
    if rt is None:
        return posix.getgroups()
    groups = rt.extra.get("groups")
    if groups is None:
        groups = rt.extra["groups"] = [gid for (gid,) in rt.ocall.getgroups()]
    return list(groups)


def uname() -> _os.uname_result:
    rt = runtime.RT
    if rt is None:
        return posix.uname()
    return _uname_result(rt.ocall.uname())


def getlogin() -> str:
    rt = runtime.RT
    if rt is None:
        return posix.getlogin()
    return rt.ocall.getlogin()


# -- signals -----------------------------------------------------------------------------------------------


def _native_run(rt: runtime.EnclaveRuntime | None) -> bool:
    """Whether process calls go to the real OS: outside any enclave, or when the policy lets the program start
    processes (--allow-run / native.run), an escape hatch whose processes run outside the enclave."""
    if rt is None:
        return True
    allowed = getattr(rt.access, "native_allowed", None)
    return bool(allowed is not None and allowed("run"))


def kill(pid: Any, signal: Any, /) -> None:
    pid, sig = operator.index(pid), operator.index(signal)
    rt = runtime.RT
    if _native_run(rt):
        return _real_kill(pid, sig)
    own = _ids(rt)[0]
    if pid not in (own, _real_getpid()):
        raise Unsupported("kill", f"an enclave can signal only itself (pid {own}), not pid {pid}")
    # The process running the enclave's code receives it: its handlers are the program's.
    return _real_kill(_real_getpid(), sig)


def _no_children(original: Any) -> Any:
    def wait(*args: Any, **kwargs: Any) -> Any:
        if _native_run(runtime.RT):
            return original(*args, **kwargs)
        raise OSError(errno.ECHILD, _strerror(errno.ECHILD))  # ChildProcessError, as natively without children

    wait.__name__ = wait.__qualname__ = original.__name__
    return wait


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
    return refused


_NO_PROCESSES = "an enclave cannot create processes"


def fork_exec(args: Any, executable_list: Any, *rest: Any) -> int:
    """`_posixsubprocess.fork_exec`, under subprocess and multiprocessing: refused before anything starts."""
    if _native_run(runtime.RT):
        return _real_fork_exec(args, executable_list, *rest)
    caller = _caller_module()
    program = args[0] if isinstance(args, list | tuple) and args else executable_list
    if isinstance(program, bytes):
        program = _os.fsdecode(program)
    if caller.startswith("multiprocessing"):
        raise Unsupported("multiprocessing", f"cannot start a worker process ({_NO_PROCESSES}; use threads)")
    name = "subprocess.Popen" if caller == "subprocess" else "_posixsubprocess.fork_exec"
    raise Unsupported(name, f"cannot run {program!r}: {_NO_PROCESSES}")


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
    posix.getpid: getpid,
    posix.getppid: getppid,
    posix.getuid: getuid,
    posix.geteuid: geteuid,
    posix.getgid: getgid,
    posix.getegid: getegid,
    posix.getgroups: getgroups,
    posix.uname: uname,
    posix.getlogin: getlogin,
    posix.kill: kill,
    posix.killpg: _refuser("killpg", "an enclave can signal only itself", posix.killpg),
    posix.fork: fork,
    _posixsubprocess.fork_exec: fork_exec,
}
for _name in REFUSED_CREATE:
    # exec*/spawn*/popen are partly Python functions of os.py: patch each object where it lives.
    _original = getattr(_os, _name, None)
    if _original is not None:
        detail = "an enclave cannot replace its program" if _name.startswith("exec") else _NO_PROCESSES
        PATCHES[_original] = _refuser(_name, detail, _original)
for _name in REFUSED_IDENTITY:
    _original = getattr(posix, _name, None)
    if _original is not None:
        PATCHES[_original] = _refuser(_name, "an enclave cannot change the identity of the process it runs in")
for _name in WAIT:
    _original = getattr(posix, _name, None)
    if _original is not None:
        PATCHES[_original] = _no_children(_original)
if hasattr(posix, "pidfd_open"):
    PATCHES[posix.pidfd_open] = _refuser("pidfd_open", "an enclave can see no other process", posix.pidfd_open)

__all__ = ["PATCHES", "REFUSED", "getpid", "getppid", "kill", "fork_exec", "uname", "getgroups", "getlogin"]
