"""Tripwires for what the enclave cannot serve: native libraries (ctypes, cffi) and new processes.

Native code loaded by the program would make system calls directly, around the ocall boundary and its policy;
a child process would run outside the enclave altogether.  Neither can be served, so both are refused with
ENOSYS (`enclave_libc.errors.Unsupported`) and a message that says why and which flag would allow it - never
silently allowed.

Two layers: the time/process family patches the process entry points (`enclave_libc/process.py`), and this
module installs one audit hook (PEP 578) that sees the events CPython raises however the code got there:
`ctypes.dlopen` / `ctypes.dlsym` / `ctypes.call_function` (so a library loaded before the enclave started cannot
be used from inside either), `subprocess.Popen`, `os.system`, `os.exec`, `os.spawn`, `os.posix_spawn`, `os.fork`,
`os.forkpty`.  cffi raises no audit event, so `_cffi_backend.load_library` (behind `cffi.FFI.dlopen`) is
wrapped.

The same hook is the fail-closed wall behind the interposer (issue 13): the C functions that touch the host raise
audit events (`open`, `os.remove`, `socket.__new__`, `mmap.__new__`, `resource.prlimit`, ... GUARDED), and while an
enclave is entered each of those is refused unless the Python frame making the call is the runtime's own host side
(a (code object, module globals) pair of a trusted module).  So a real function reached around the interposer - a
freshly built `posix` or `_io`, `_io.FileIO` found through `__subclasses__()`, `_socket.socket` through an MRO, an
original captured in a default argument or found in a registry - is refused with ENOSYS naming the event.
Introspection that would reach the hook's own state (gc.get_objects/referrers/referents, sys._current_frames,
settrace/setprofile) is refused while sealed.

Audit hooks cannot be removed, so the hook is *sealed* by `enter()` and unsealed by `leave(key)`: its state lives
in the hook's own default arguments (see `_make_hook`), not in `enclave_libc.runtime.RT` or any module global a
program could rebind; the policy's grants (`--allow-ffi`, `--allow-run`) are taken when it is sealed.

What Python cannot hide (docs/threat-model.md, "Python-level escapes"): a C call that raises no audit event
(read/write on a descriptor number, stat) made with an original taken from the runtime's own modules, and a
program that rewrites the runtime's Python objects (its policy object, its module globals).  On sim that is the
limit of a Python-level wall; on the process backend the kernel's filter is the wall.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import types
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from enclave_libc import runtime
from enclave_libc.errors import Unsupported

# event -> (what the policy must grant, the call named in the message)
EVENTS: dict[str, tuple[str, str]] = {
    "ctypes.dlopen": ("ffi", "ctypes.CDLL"),
    "ctypes.dlsym": ("ffi", "ctypes.dlsym"),
    "ctypes.dlsym/handle": ("ffi", "ctypes.dlsym"),
    "ctypes.call_function": ("ffi", "ctypes.call_function"),
    "ctypes.cdata": ("ffi", "ctypes.from_address"),
    "subprocess.Popen": ("run", "subprocess.Popen"),
    "os.system": ("run", "os.system"),
    "os.exec": ("run", "os.exec*"),
    "os.spawn": ("run", "os.spawn*"),
    "os.posix_spawn": ("run", "os.posix_spawn"),
    "os.fork": ("run", "os.fork"),
    "os.forkpty": ("run", "os.forkpty"),
    "pty.spawn": ("run", "pty.spawn"),
}

WHY = {
    "ffi": "native code would make system calls around the enclave's ocalls and policy (allow with --allow-ffi, "
           "or native.ffi = true in the policy)",
    "run": "a new process would run outside the enclave (allow a host program by name with --allow-run=NAME, or "
           "allow_run = [\"NAME\"] in the policy; --allow-run alone, or native.run = true, lets every process "
           "start natively)",
}

# What the hook refuses while an enclave is entered, whoever calls it (introspection that would reach the runtime's
# private state, or rewrite its frames' locals): refused with the call named.
INTROSPECTION: dict[str, str] = {
    "sys.addaudithook": "sys.addaudithook",  # a program's hook would see the seal's events (and outlive a sim run)
    "gc.get_objects": "gc.get_objects",
    "gc.get_referrers": "gc.get_referrers",
    "gc.get_referents": "gc.get_referents",
    "sys._current_frames": "sys._current_frames",
    "sys.settrace": "sys.settrace",
    "sys.setprofile": "sys.setprofile",
    "sys.monitoring.register_callback": "sys.monitoring.register_callback",
}

# Events raised by the C functions that touch the host (files, sockets, processes, limits, signals): while an
# enclave is entered they are refused unless the Python frame that made the call is the runtime's own host side.
# The enclave's replacements never raise them (they make ocalls), so whoever raises one holds a real function:
# a freshly built module, a C type reached through __subclasses__()/__mro__, a default argument, an original
# found in a registry.  These are the events CPython raises for those calls (docs: "Audit events table").
GUARDED = frozenset({
    "open", "os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.link", "os.symlink", "os.truncate",
    "os.chmod", "os.chown", "os.utime", "os.chdir", "os.chflags", "os.lchflags", "os.listdir", "os.scandir",
    "os.listxattr", "os.getxattr", "os.setxattr", "os.removexattr", "os.putenv", "os.unsetenv", "os.kill",
    "os.killpg", "os.lockf", "fcntl.fcntl", "fcntl.ioctl", "fcntl.flock", "fcntl.lockf",
    "socket.__new__", "socket.bind", "socket.connect", "socket.sendto", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyaddr", "socket.gethostname", "socket.sethostname",
    "socket.getnameinfo", "socket.getservbyname", "socket.getservbyport", "mmap.__new__", "resource.setrlimit",
    "resource.prlimit", "signal.pthread_kill", "syslog.openlog", "syslog.syslog", "os.system", "os.exec",
    "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
})

# The modules whose code may raise a GUARDED event while an enclave is entered: the host side (on sim it runs in
# this process, on the calling thread, during an ocall) and the two enclave families that make real calls on the
# enclave's own behalf (kill of itself, the audit events of putenv).  Deliberately not posix_shim.program or the
# transports: they call the program's own callbacks (signal handlers, atexit), and a callback that is a C
# function (functools.partial(posix.open, ...)) would otherwise make its call with their frame as the caller.
TRUSTED_PREFIXES = ("ocall_bridge.host.",)
# enclave_libc.fdtable: the one fd space's own descriptor operations (dup with a floor, fchdir to the enclave's
# cwd) on descriptors the enclave owns; it calls nothing of the program's.
TRUSTED_MODULES = ("enclave_libc.process", "enclave_libc.env", "enclave_libc.fdtable", "posix_shim.trace",
                   "ocall_bridge.host")

SEAL_EVENT = "posix_shim.seal"  # the hook's own event: enter / leave / trust / query

_installed = False
_lock = threading.Lock()


def refusal(what: str, call: str, detail: str = "") -> Unsupported:
    """The error a program sees for a refused escape."""
    return Unsupported(call, f"{detail + ': ' if detail else ''}{WHY[what]}")


def _text(value: Any) -> str:
    """A path or command for a message, formatted without calling anything the program defined."""
    if type(value) is str or type(value) is bytes:
        return repr(value)
    if type(value) is list and value and type(value[0]) in (str, bytes):
        return repr(value[0])
    return "<" + type(value).__name__ + ">"


def _describe(event: str, args: tuple) -> str:
    if event == "ctypes.dlopen" and args:
        return f"loading {_text(args[0])} is refused"
    if event in ("ctypes.dlsym", "ctypes.dlsym/handle") and len(args) > 1:
        return f"looking up {_text(args[1])} is refused"
    if event == "subprocess.Popen" and len(args) > 1:
        if type(args[0]) is str and args[0]:
            return f"running {_text(args[1])} is refused (--allow-run={args[0].rsplit('/', 1)[-1]} would allow it)"
        return f"running {_text(args[1])} is refused"
    if event in ("os.system", "os.exec", "os.spawn", "os.posix_spawn") and args:
        return f"running {_text(args[0])} is refused"
    return "refused"


def _native_allowed(what: str) -> bool:
    """Whether the active enclave's policy grants `what` (ffi, run), read when the hook is sealed (and by the
    cffi guard).  No enclave object grants nothing."""
    rt = runtime.RT
    allowed = getattr(getattr(rt, "access", None), "native_allowed", None)
    try:
        return bool(allowed is not None and allowed(what))
    except Exception:
        return False


def _programs() -> frozenset[str]:
    """"run:NAME" and "run:PATH" for each host program the active enclave's policy names (--allow-run=NAME)."""
    run_programs = getattr(getattr(runtime.RT, "access", None), "run_programs", None)
    try:
        programs = dict(run_programs()) if run_programs is not None else {}
    except Exception:
        return frozenset()
    return frozenset(f"run:{word}" for name, where in programs.items() for word in (name, where))


def _armed(what: str) -> bool:
    """For the cffi guard: armed when the seal says an enclave is entered and its policy does not grant `what`."""
    return sealed() and not _native_allowed(what)


# The same rule as a compiled matcher: filtering sys.modules' names with it runs in C (each sim ecall asks).
_trusted_name = re.compile("|".join([*(re.escape(m) + r"\Z" for m in TRUSTED_MODULES),
                                     *(re.escape(p) for p in TRUSTED_PREFIXES)])).match


def _trusted_modules() -> tuple[tuple[str, int], ...]:
    """(name, id) of the trusted runtime modules loaded now: what the trusted code pairs were computed from."""
    modules = sys.modules
    return tuple((name, id(module)) for name in filter(_trusted_name, list(modules))
                 if (module := modules.get(name)) is not None)


def _trust() -> None:
    """Give the hook the trusted code pairs, computed again only when the trusted modules changed (each sim run
    and call seals the hook: a full walk every time would add milliseconds to each).  What they were computed
    from is kept in the hook itself, not in a module global a program could rewrite between two runs."""
    modules = _trusted_modules()
    box: list[Any] = []
    sys.audit(SEAL_EVENT, "trusted", box)
    if not box or box[0] != modules:
        sys.audit(SEAL_EVENT, "trust", modules, _scan_trusted_code())


def _scan_trusted_code() -> frozenset[tuple[Any, int]]:
    """(code object, id of its module's globals) for every function of the trusted runtime modules now loaded.

    A pair, not a file name: a program can compile code claiming any file name, and can run one of our code
    objects with globals of its own (types.FunctionType), but it cannot make our code object run with our
    module's very globals except by calling our function - which is the residual risk the docs name."""
    pairs: set[tuple[Any, int]] = set()
    for name, module in list(sys.modules.items()):
        if module is None or not (name in TRUSTED_MODULES or name.startswith(TRUSTED_PREFIXES)):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        gid = id(namespace)
        todo: list[Any] = list(namespace.values())
        seen: set[int] = set()
        while todo:
            obj = todo.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if isinstance(obj, (staticmethod, classmethod)):
                todo.append(obj.__func__)
            elif isinstance(obj, property):
                todo += [obj.fget, obj.fset, obj.fdel]
            elif isinstance(obj, types.FunctionType):
                if obj.__globals__ is namespace:
                    stack = [obj.__code__]
                    while stack:
                        code = stack.pop()
                        pairs.add((code, gid))
                        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
            elif isinstance(obj, type) and obj.__module__ == name:
                todo += list(vars(obj).values())
    return frozenset(pairs)


def _make_hook() -> Callable[..., None]:
    """The one audit hook.  Its state lives in its own default arguments, nowhere else.

    Why there: a closure cell or a module global can be rebound by a program that reaches it - a module global
    by plain assignment (`enclave_libc.runtime.RT = None` changed nothing here), a closure cell through the
    hook's frame, which a refusal's traceback hands out and whose `f_locals` writes through to the cells on
    Python 3.13 (PEP 667).  Default arguments are copied into each call's locals, so rewriting a frame changes
    nothing for the next call; and `hook.__defaults__` itself can only be set by the hook (setting it raises
    "object.__setattr__", which the hook refuses for itself from any other frame).  The values are immutable
    (tuples, frozensets, read-only mapping views), every builtin the hook uses is bound in too (a program may
    rebind `builtins.id`), and nothing the program defines is called while the hook decides.  Reaching the hook
    object takes gc (refused while sealed) or such a frame; tracers that could rewrite a running frame
    (settrace, setprofile, sys.monitoring) are refused while sealed."""

    def hook(event: str, args: tuple, state: tuple = ()) -> None:
        if event == "object.__getattr__" or event == "sys._getframe":  # the frequent ones (and our own f_code)
            return
        keys = state[0]
        if not keys and event != "posix_shim.seal" and event != "object.__setattr__":
            return  # not sealed: every other event costs this much (literals: a code object is immutable)
        (keys, trusted, sessions, me, own, getframe, ident, typeof, guarded, introspection, events,
         refuse, describe, text, error, seal_event, interpreters) = state
        if event == "object.__setattr__":
            if args and args[0] is me and getframe(1).f_code is not own:
                raise error("object.__setattr__", "the audit hook's state is its own")
            return
        if event == seal_event:
            op = args[0] if args else None
            if op == "query" and typeof(args[1]) is list:  # no program-defined append runs here
                args[1].append(len(keys) > 0)
                return
            if op == "trusted" and typeof(args[1]) is list:
                args[1].append(trusted[0])
                return
            if op == "enter" and len(args) == 3 and typeof(args[2]) is frozenset:
                # The policy's grants (ffi, run) are taken now, once: rewriting the runtime's objects later
                # (`RT = ...`) does not change what this hook allows.
                keys = keys + ((ident(args[1]), args[2]),)
            elif op == "leave":
                # The innermost key, handed over by the session itself (`leave`): anyone else who saw the key
                # cannot unseal from a frame of their own.
                frame = getframe(1)
                if not (keys and keys[-1][0] == ident(args[1])
                        and (frame.f_code, ident(frame.f_globals)) in sessions):
                    return
                keys = keys[:-1]
            elif op == "trust" and not keys and len(args) == 3 and typeof(args[1]) is tuple \
                    and typeof(args[2]) is frozenset:
                trusted = (args[1], args[2])  # only while no enclave is entered: a program cannot extend it
            else:
                return
            me.__defaults__ = ((keys, trusted) + state[2:],)
            return
        if not keys:
            return
        if event in guarded:
            if event == "mmap.__new__" and args and args[0] == -1:  # anonymous memory: nothing of the host's
                return
            frame = getframe(1)
            if (frame.f_code, ident(frame.f_globals)) in trusted[1]:
                return
            entry = events.get(event)
            if entry is not None:
                if entry[0] in keys[-1][1]:
                    return
                raise refuse(entry[0], entry[1], describe(event, args))
            raise error(event, "the real call is reserved to the host side (" + (text(args[0]) if args else "")
                        + "): inside an enclave it is served by the enclave's own " + event.split(".")[0]
                        + " functions, or not at all")
        call = introspection.get(event)
        if call is not None:
            raise error(call, "it would reach the runtime's private state or rewrite its frames")
        entry = events.get(event)
        if entry is None:
            return
        what, call = entry
        if event == "ctypes.dlopen" and args and args[0] is None:
            # dlopen(NULL) loads nothing new (`import ctypes` does it for ctypes.pythonapi); every function looked
            # up in it is still refused by "ctypes.dlsym".
            return
        if what in keys[-1][1]:
            return
        if event == "subprocess.Popen" and args and (typeof(args[0]) is str or typeof(args[0]) is bytes) \
                and (args[0] in interpreters or (typeof(args[0]) is str and "run:" + args[0] in keys[-1][1])):
            # The interpreter itself (the enclave's fork_exec asks the host for a child enclave: children.py), or
            # a host program the policy names (--allow-run=NAME, sealed in as "run:NAME"), which the host runs.
            return
        raise refuse(what, call, describe(event, args))

    sessions = frozenset({(leave.__code__, id(leave.__globals__))})  # who may unseal: `leave` below
    hook.__defaults__ = (((), ((), frozenset()), sessions, hook, hook.__code__, sys._getframe, id, type, GUARDED,
                          MappingProxyType(dict(INTROSPECTION)), MappingProxyType(dict(EVENTS)), refusal,
                          _describe, _text, Unsupported, SEAL_EVENT,
                          frozenset({sys.executable, os.fsencode(sys.executable)})),)
    return hook


def sealed() -> bool:
    """Whether an enclave is entered in this process, as the audit hook knows it (False before install)."""
    box: list[bool] = []
    sys.audit(SEAL_EVENT, "query", box)
    return bool(box and box[0]) if box else False


def enter() -> object:
    """Seal: from now on the hook refuses; returns the key `leave` needs."""
    install()
    _trust()
    key = object()
    grants = frozenset(what for what in ("ffi", "run") if _native_allowed(what)) | _programs()
    sys.audit(SEAL_EVENT, "enter", key, grants)
    return key


def leave(key: object) -> None:
    """Unseal what `enter` sealed (a key that is not the innermost one changes nothing)."""
    sys.audit(SEAL_EVENT, "leave", key)


def _guard_cffi() -> None:
    """cffi raises no audit event: wrap the loader its `FFI.dlopen` calls (`backend.load_library`, looked up at
    call time).  The C-level `dlopen` of a pre-built out-of-line module cannot be wrapped from Python: that gap
    is the hardened (seccomp) backend's to close."""
    try:
        import _cffi_backend
    except ImportError:
        return
    original = _cffi_backend.load_library
    if getattr(original, "__posix_shim_tripwire__", False):
        return
    armed = _armed  # bound now: rebinding the module global later does not disarm the guard

    def load_library(*args: Any, **kwargs: Any) -> Any:
        if armed("ffi"):
            raise refusal("ffi", "cffi.FFI.dlopen", f"loading {args[0] if args else None!r} is refused")
        return original(*args, **kwargs)

    load_library.__posix_shim_tripwire__ = True  # type: ignore[attr-defined]
    _cffi_backend.load_library = load_library


def install() -> None:
    """Install the audit hook and the cffi guards (idempotent; they stay dormant outside an enclave)."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        sys.addaudithook(_make_hook())  # not kept anywhere else: see _make_hook
        _guard_cffi()
        _installed = True


__all__ = ["install", "refusal", "enter", "leave", "sealed", "EVENTS", "GUARDED", "WHY"]
