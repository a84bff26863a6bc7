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

Audit hooks cannot be removed, so the hook is armed only while an enclave is active (`enclave_libc.runtime.RT`)
and its policy does not grant the escape (`--allow-ffi`, `--allow-run`).  The host side of the sim backend never
uses these, and Python's own imports of extension modules raise "import", not "ctypes.dlopen".
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from enclave_libc import runtime
from enclave_libc.errors import Unsupported

# event -> (what the policy must grant, the call named in the message)
EVENTS: dict[str, tuple[str, str]] = {
    "ctypes.dlopen": ("ffi", "ctypes.CDLL"),
    "ctypes.dlsym": ("ffi", "ctypes.dlsym"),
    "ctypes.dlsym/handle": ("ffi", "ctypes.dlsym"),
    "ctypes.call_function": ("ffi", "ctypes.call_function"),
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
    "run": "a new process would run outside the enclave (allow with --allow-run, or native.run = true in the "
           "policy)",
}

_installed = False
_lock = threading.Lock()
# Code of our own that must load a library while an enclave is active (none today) can set this per thread.
_exempt = threading.local()


def refusal(what: str, call: str, detail: str = "") -> Unsupported:
    """The error a program sees for a refused escape."""
    return Unsupported(call, f"{detail + ': ' if detail else ''}{WHY[what]}")


def _describe(event: str, args: tuple) -> str:
    if event == "ctypes.dlopen" and args:
        return f"loading {args[0]!r} is refused"
    if event in ("ctypes.dlsym", "ctypes.dlsym/handle") and len(args) > 1:
        return f"looking up {args[1]!r} is refused"
    if event == "subprocess.Popen" and len(args) > 1:
        return f"running {args[1]!r} is refused"
    if event == "os.system" and args:
        return f"running {args[0]!r} is refused"
    if event in ("os.exec", "os.spawn", "os.posix_spawn") and args:
        return f"running {args[0]!r} is refused"
    return "refused"


def _armed(what: str) -> bool:
    rt = runtime.RT
    if rt is None or getattr(_exempt, "on", False):
        return False
    allowed = getattr(rt.access, "native_allowed", None)
    return not (allowed is not None and allowed(what))


def _hook(event: str, args: tuple) -> None:
    entry = EVENTS.get(event)
    if entry is None:  # the common case for every other audited event: one dict miss
        return
    what, call = entry
    if event == "ctypes.dlopen" and args and args[0] is None:
        # dlopen(NULL) loads nothing new (`import ctypes` does it for ctypes.pythonapi); every function looked up
        # in it is still refused by "ctypes.dlsym".
        return
    if _armed(what):
        raise refusal(what, call, _describe(event, args))


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

    def load_library(*args: Any, **kwargs: Any) -> Any:
        if _armed("ffi"):
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
        sys.addaudithook(_hook)
        _guard_cffi()
        _installed = True


__all__ = ["install", "refusal", "EVENTS", "WHY"]
