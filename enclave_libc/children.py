"""Child processes, the enclave way: Python children are new enclaves the host starts.

An enclave cannot fork (its memory is not the host's to copy) and must not exec (a program outside the enclave
would run with the enclave's process), but what `subprocess.run([sys.executable, ...])` and multiprocessing ask
for is a *new Python program*, and that the host can start as a new enclave of the same backend under its own
copy of the policy (ocall_bridge/host/children.py).  So `_posixsubprocess.fork_exec`, under subprocess and
multiprocessing's spawn, is served here when it runs the interpreter:

* the command line must be the interpreter's own form (`ocall_bridge/pyargv.py`, checked here for the message
  and again by the host, which decides);
* the child's standard streams are the enclave fds subprocess passes (its pipes, or the enclave's own 0-2),
  sent as host handles, and so is each of `pass_fds` (multiprocessing's pipes), which the child enclave finds at
  the same number; it gets nothing else (close_fds is always in effect);
* its working directory is the enclave's (or `cwd=`), its environment the one its policy gives it: `env=` is
  refused, since the host cannot put the enclave's chosen variables into the environment the child's runner
  starts with (LD_PRELOAD would reach the runner) and dropping them would be a lie;
* preexec_fn, user/group changes and new sessions are refused, naming the argument.

multiprocessing's default start method inside is spawn (`swap`), and its SemLock is the hosts' (semaphores.py).
A program the policy names with --allow-run=NAME is run by the host instead (outside the enclave), with the same
stdio rules and no passed descriptors.

The pid the host answers is then the enclave's child: `os.waitpid` and `os.kill` of it are served by the host
(which only lets this enclave name the children it started); any other pid goes to enclave_libc/process.py
(ECHILD, or refused).  Anything but the interpreter is refused there too, as before (process.fork_exec).
"""

from __future__ import annotations

import errno
import operator
import os as _os
import posix
import sys
from collections.abc import Callable
from typing import Any

from ocall_bridge import originals
from ocall_bridge.calls import uses
from ocall_bridge.pyargv import NotPythonArgv, python_command

from . import process, runtime, semaphores
from .errors import PolicyDenied, Unsupported

_fsencode, _fsdecode = originals.get("os", "fsencode"), originals.get("os", "fsdecode")
_WNOHANG = posix.WNOHANG
_process_kill = process.kill
# What fork_exec and posix_spawn refuse, whatever else they serve.
_ONLY = ("a program that is neither the interpreter nor one the policy names; pass_fds, env=, a new session, "
         "group, user or umask for a child")
_real_fork_exec = originals.get("_posixsubprocess", "fork_exec")
_process_waitpid = process.PATCHES[originals.get("posix", "waitpid")]


def interpreter() -> bytes:
    """The interpreter a child enclave runs: the one this enclave runs on."""
    return _fsencode(sys.executable)


def _children(rt: runtime.EnclaveRuntime) -> set[int]:
    kids = rt.extra.get("children")
    if kids is None:
        kids = rt.extra["children"] = set()
    return kids


def _handle(rt: runtime.EnclaveRuntime, fd: int, inherit: int) -> int:
    """The host handle behind enclave fd `fd` (-1: the enclave's own `inherit` stream, if open); -1 for none."""
    if fd < 0:
        fd = inherit
        if fd not in rt.fds:
            return -1
    return rt.fds.get(fd).handle


def _caller_module() -> str:
    """The module that called fork_exec (subprocess, multiprocessing.util): the refusal names what it runs."""
    try:
        return sys._getframe(2).f_globals.get("__name__", "") or ""
    except ValueError:  # pragma: no cover - shallower stack than asked
        return ""


def _what_starts(call: str, words: list[str], program: str | None) -> str:
    """How a start is named in refusals; a child enclave (no host program) must be given a Python command line.

    The enclave checks first for a clear message; the host checks again (ocall_bridge/host/children.py)."""
    if program is not None:
        return f"the host program {program!r}"
    try:
        python_command(words[1:])
    except NotPythonArgv as exc:
        raise PolicyDenied(call, words[0], f"a child enclave runs only a Python command line: {exc}") from None
    return "a child enclave"


def allowed_program(rt: runtime.EnclaveRuntime, word: str) -> str | None:
    """The name under which the policy lets this enclave run `word` as a host program (--allow-run=NAME): the
    name itself, or the path it was resolved to when the policy was loaded; None when it is not allowed."""
    programs: dict[str, str] = getattr(rt.access, "run_programs", dict)()
    if word in programs and "/" not in word:
        return word
    for name, where in programs.items():
        if word == where:
            return name
    return None


@uses("spawn", "run_program", partial=_ONLY)
def fork_exec(args: Any, executable_list: Any, *more: Any) -> int:
    """`_posixsubprocess.fork_exec`: the interpreter becomes a child enclave, a program the policy names runs on
    the host (--allow-run=NAME); anything else is refused."""
    rt = runtime.RT
    if process._native_run(rt):  # --allow-run alone: the real call, outside the enclave
        return _real_fork_exec(args, executable_list, *more)
    caller = _caller_module()
    executables = [_fsencode(e) for e in executable_list] if isinstance(executable_list, list | tuple) else []
    words = [_fsdecode(a) if isinstance(a, bytes) else str(a) for a in args] if isinstance(args, list | tuple) else []
    own = interpreter()
    program = None
    if rt and words and own not in executables:
        program = allowed_program(rt, words[0])
    if not rt or len(more) < 12 or not words or (own not in executables and program is None):
        raise process.refused_fork_exec(args, executable_list, caller)
    # close_fds is always in effect; the parent's ends of the pipes (p2cwrite, c2pread, errread) stay its own.
    fds_to_keep, cwd, env, p2cread, c2pwrite, errwrite = (more[i] for i in (1, 2, 3, 4, 7, 9))
    errpipe_write, rest = more[11], more[12:]
    call = "multiprocessing" if caller.startswith("multiprocessing") else "subprocess.Popen"
    what = _what_starts(call, words, program)
    extra = [fd for fd in fds_to_keep or () if fd != errpipe_write]
    if extra and program is not None:
        raise Unsupported(call, f"pass_fds {extra}: {what} gets only its standard streams")
    # 0-2 are the child's standard streams already (multiprocessing passes its stderr so): the rest keep their number.
    passed = [(fd, rt.fds.get(fd).handle) for fd in extra if fd > 2]
    if env is not None:
        raise Unsupported(call, f"env=: the environment of {what} is the one the policy gives it (leave env out, "
                                f"or grant the variables with --allow-env / env.set)")
    # restore_signals, call_setsid, pgid_to_set, gid, extra_groups, uid, child_umask, preexec_fn
    names = ("start_new_session", "process_group", "group", "extra_groups", "user", "umask", "preexec_fn")
    defaults = (False, -1, None, None, None, -1, None)
    for name, value, default in zip(names, rest[1:8], defaults, strict=False):
        if value != default:
            raise Unsupported(call, f"{name}={value!r}: {what} is started by the host as it is")
    stdio = (_handle(rt, p2cread, 0), _handle(rt, c2pwrite, 1), _handle(rt, errwrite, 2))
    return _launch(rt, own, program, words, cwd, stdio, passed)


def _launch(rt: runtime.EnclaveRuntime, own: bytes, program: str | None, words: list[str], cwd: Any,
            stdio: tuple[int, int, int], passed: list[tuple[int, int]]) -> int:
    """Ask the host for the child (the interpreter as a child enclave, or the named host program); its pid."""
    where = rt.cwd if cwd is None else rt.resolve(_fsencode(cwd))
    argv = b"\0".join(_fsencode(w) for w in words)
    try:
        if program is None:
            pid = rt.ocall.spawn(own, argv, where, *stdio, passed)
        else:
            pid = rt.ocall.run_program(program, argv, where, *stdio)
    except PolicyDenied:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR) and cwd is not None:
            raise OSError(exc.errno, _os.strerror(exc.errno), cwd) from None
        raise
    _children(rt).add(pid)
    return pid


_refused_posix_spawn = process.PATCHES.get(originals.get("posix", "posix_spawn", None))


@uses("spawn", "run_program", partial=_ONLY)
def posix_spawn(path: Any, argv: Any, env: Any, *, file_actions: Any = (), setpgroup: Any = None,
                resetids: bool = False, setsid: bool = False, setsigmask: Any = (), setsigdef: Any = (),
                scheduler: Any = None) -> int:
    """`os.posix_spawn`, which subprocess uses instead of fork_exec where it can (3.13 with close_fds): the same
    children as fork_exec.  Its file actions may only place the child's standard streams (and close or
    close-from, which a child gets anyway); anything else is refused, naming it."""
    rt = runtime.RT
    words = [_fsdecode(a) if isinstance(a, bytes) else str(a) for a in argv] if isinstance(argv, list | tuple) \
        else []
    own = interpreter()
    program = None
    is_own = bool(rt) and _fsencode(path) == own
    if rt and words and not is_own and not process._native_run(rt):
        program = allowed_program(rt, words[0]) or allowed_program(rt, _fsdecode(_fsencode(path)))
    if not rt or process._native_run(rt) or not words or not (is_own or program):
        assert _refused_posix_spawn is not None  # this replacement is installed only over a real posix_spawn
        return _refused_posix_spawn(path, argv, env, file_actions=file_actions, setpgroup=setpgroup,
                                    resetids=resetids, setsid=setsid, setsigmask=setsigmask, setsigdef=setsigdef,
                                    scheduler=scheduler)
    call = "subprocess.Popen" if _caller_module() == "subprocess" else "posix_spawn"
    what = _what_starts(call, words, program)
    if env is not None and env is not _os.environ and dict(env) != dict(_os.environ):
        raise Unsupported(call, f"env=: the environment of {what} is the one the policy gives it (leave env out, "
                                f"or grant the variables with --allow-env / env.set)")
    for name, value in (("setpgroup", setpgroup), ("resetids", resetids), ("setsid", setsid),
                        ("scheduler", scheduler)):
        if value not in (None, False):
            raise Unsupported(call, f"{name}={value!r}: {what} is started by the host as it is")
    streams = [-1, -1, -1]
    for action in file_actions or ():
        kind = action[0]
        if kind == posix.POSIX_SPAWN_DUP2 and action[2] in (0, 1, 2):
            streams[action[2]] = action[1]
        elif kind not in (posix.POSIX_SPAWN_CLOSE, getattr(posix, "POSIX_SPAWN_CLOSEFROM", None)):
            raise Unsupported(call, f"file action {action!r}: {what} gets only its standard streams")
    stdio = (_handle(rt, streams[0], 0), _handle(rt, streams[1], 1), _handle(rt, streams[2], 2))
    return _launch(rt, own, program, words, None, stdio, [])


@uses("waitchild")
def waitpid(pid: Any, options: Any, /) -> tuple[int, int]:
    """`os.waitpid` of a child enclave asks the host; any other pid is process.py's (ECHILD)."""
    pid, options = operator.index(pid), operator.index(options)
    rt = runtime.RT
    if rt and pid in _children(rt):
        got, status = rt.ocall.waitchild(pid, bool(options & _WNOHANG))
        if got:
            _children(rt).discard(pid)
        return got, status
    return _process_waitpid(pid, options)


@uses("signalchild", "getids", partial="a pid that is neither the enclave nor a child enclave")
def kill(pid: Any, signal: Any, /) -> None:
    """`os.kill` of a child enclave asks the host; any other pid is process.py's (itself only)."""
    rt = runtime.RT
    if rt and operator.index(pid) in _children(rt):
        return rt.ocall.signalchild(operator.index(pid), operator.index(signal))
    return _process_kill(pid, signal)


def _spawn_by_default(mpc: Any) -> Callable[[], None]:
    """Make spawn the fallback of multiprocessing's default context; returns the undo."""
    default = mpc._default_context
    saved = default._default_context
    spawn = mpc._concrete_contexts.get("spawn")
    if spawn is not None and saved is mpc._concrete_contexts.get("fork"):
        default._default_context = spawn

    def undo() -> None:
        default._default_context = saved

    return undo


def _del_safe_waitpid(subprocess: Any) -> Callable[[], None]:
    """3.13's subprocess polls through `_del_safe.waitpid`, a class attribute it took from os at import: point it
    at this module's waitpid (a child enclave is the host's child, not this process's); returns the undo."""
    holder = getattr(subprocess, "_del_safe", None)
    saved = getattr(holder, "__dict__", {}).get("waitpid") if isinstance(holder, type) else None
    if holder is None or saved is None or not callable(saved):
        return lambda: None
    holder.waitpid = staticmethod(waitpid)

    def undo() -> None:
        holder.waitpid = saved

    return undo


# What must change in a module when it is (or already was) imported inside an enclave.
_ON_IMPORT: dict[str, Callable[[Any], Callable[[], None]]] = {
    "multiprocessing.context": lambda module: _spawn_by_default(module),
    "subprocess": lambda module: _del_safe_waitpid(module),
}


class _PatchOnImport:
    """A meta path finder for the modules of `_ON_IMPORT` alone: the module loads as usual (through whatever finds
    it), then it is changed.  Importing them eagerly instead would cost every enclave's start the import (and
    its file calls, which traces and fault injection would count)."""

    def __init__(self) -> None:
        self.undo: list[Callable[[], None]] = []

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in _ON_IMPORT:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _Loader(spec.loader, self)  # type: ignore[assignment]  # duck-typed Loader
                return spec
            if spec is not None:
                return spec
        return None


class _Loader:
    def __init__(self, inner: Any, hook: _PatchOnImport) -> None:
        self.inner, self.hook = inner, hook

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.inner.exec_module(module)
        self.hook.undo.append(_ON_IMPORT[module.__name__](module))

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename ... as the real loader answers them
        return getattr(self.inner, name)


def swap() -> Callable[[], None]:
    """multiprocessing's default start method inside an enclave is spawn (fork cannot be served; spawn's children
    are child enclaves): the interposer calls this on install and the undo it returns on uninstall.  The default
    context's *fallback* is changed, not its chosen method, so `set_start_method(...)` still works as natively
    (and an explicit 'fork' is still refused, by name).  Done now if multiprocessing is loaded, else when it is."""
    hook = _PatchOnImport()
    for name, change in _ON_IMPORT.items():
        loaded = sys.modules.get(name)
        if loaded is not None:
            hook.undo.append(change(loaded))
    sys.meta_path.insert(0, hook)

    def undo() -> None:
        try:
            sys.meta_path.remove(hook)
        except ValueError:
            pass
        for each in reversed(hook.undo):
            each()

    return undo


PATCHES: dict[Any, Any] = {
    **originals.patches("posix", {"waitpid": waitpid, "kill": kill}),
    **({originals.get("posix", "posix_spawn"): posix_spawn} if _refused_posix_spawn is not None else {}),
    **originals.patches("_multiprocessing", {"SemLock": semaphores.SemLock, "sem_unlink": semaphores.sem_unlink}),
    **originals.patches("_posixsubprocess", {"fork_exec": fork_exec}),
}

__all__ = ["PATCHES", "allowed_program", "fork_exec", "posix_spawn", "swap", "interpreter", "kill", "waitpid"]
