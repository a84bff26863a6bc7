"""The few raw kernel entry points confinement needs, through cffi's ABI mode.

ABI mode (``FFI().dlopen(None)``, i.e. the already-loaded libc) needs no compiler and no headers, and binds
``syscall(2)`` and ``prctl(2)`` directly: nothing here goes through ``os``, which the enclave's interposition
may have replaced by the time the child confines itself.
"""

from __future__ import annotations

import os
from typing import Any

import cffi

from .syscalls import NR

_ffi = cffi.FFI()
_ffi.cdef(
    """
    long syscall(long number, ...);
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5);
    struct sock_fprog { unsigned short len; void *filter; };
    struct landlock_ruleset_attr { uint64_t handled_access_fs; uint64_t handled_access_net; uint64_t scoped; };
    """
)
_libc: Any = _ffi.dlopen(None)


class KernelError(OSError):
    """A confinement syscall failed; ``errno`` and the call's name are in the message."""


def syscall(name: str, *args: Any) -> int:
    """``syscall(NR[name], args...)``; raises :class:`KernelError` on -1.

    Integer arguments are passed as ``long`` (variadic calls need explicit C types in cffi); cdata pointers are
    passed as they are.
    """
    c_args = [a if isinstance(a, _ffi.CData) else _ffi.cast("long", a) for a in args]
    _ffi.errno = 0
    result = int(_libc.syscall(_ffi.cast("long", NR[name]), *c_args))
    if result == -1:
        err = _ffi.errno
        raise KernelError(err, f"{name}: {os.strerror(err)}")
    return result


def syscall_errno(name: str, *args: Any) -> int:
    """Like :func:`syscall` but returns ``-errno`` instead of raising: for probes that expect a failure."""
    try:
        return syscall(name, *args)
    except KernelError as exc:
        return -(exc.errno or 0)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    _ffi.errno = 0
    result = int(_libc.prctl(option, arg2, arg3, arg4, arg5))
    if result == -1:
        err = _ffi.errno
        raise KernelError(err, f"prctl({option}): {os.strerror(err)}")
    return result


def new(ctype: str, init: Any = None) -> Any:
    return _ffi.new(ctype, init)


def from_bytes(data: bytes) -> Any:
    """A C buffer holding *data*; keep the returned object alive while the kernel may read it."""
    return _ffi.new("char[]", data)


def buffer(cdata: Any, size: int) -> bytes:
    """The first *size* bytes of a C buffer, copied."""
    return bytes(_ffi.buffer(cdata, size))


def cast(ctype: str, value: Any) -> Any:
    return _ffi.cast(ctype, value)


NULL = _ffi.NULL
