"""The few raw kernel entry points confinement needs, through ctypes.

``syscall(2)`` and ``prctl(2)`` of the already-loaded libc, bound directly: nothing here goes through ``os``,
which the enclave's interposition may have replaced by the time the child confines itself.  (Confinement runs
before interposition and before the enclave's audit hook, so the ctypes calls are not the program's.)

ctypes rather than cffi: cffi's ABI mode parses its C declarations with pycparser at every start, which cost
the enclave process ~15-20 ms of its start-up for four declarations; the two structures are spelled here as
ctypes structures instead, with the kernel's layout (both are fixed by the kernel ABI).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from .syscalls import NR

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)

NULL = None


class SockFprog(ctypes.Structure):
    """``struct sock_fprog`` (linux/filter.h): the filter's length in instructions and its address."""

    # A char pointer: a buffer from `from_bytes` can be assigned to it (and is kept alive by the structure).
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(ctypes.c_char)))


class LandlockRulesetAttr(ctypes.Structure):
    """``struct landlock_ruleset_attr`` (linux/landlock.h), as of ABI 6; older kernels read a prefix of it."""

    _fields_ = (("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64))


class KernelError(OSError):
    """A confinement syscall failed; ``errno`` and the call's name are in the message."""


def _arg(value: Any) -> Any:
    """A variadic argument: integers as ``long``, None as a NULL pointer, a structure by reference, and buffers
    and arrays as they are (ctypes passes their address)."""
    if isinstance(value, int):
        return ctypes.c_long(value)
    if isinstance(value, ctypes.Structure):
        return ctypes.byref(value)
    return value


def syscall(name: str, *args: Any) -> int:
    """``syscall(NR[name], args...)``; raises :class:`KernelError` on -1."""
    ctypes.set_errno(0)
    result = int(_syscall(ctypes.c_long(NR[name]), *(_arg(a) for a in args)))
    if result == -1:
        err = ctypes.get_errno()
        raise KernelError(err, f"{name}: {os.strerror(err)}")
    return result


def syscall_errno(name: str, *args: Any) -> int:
    """Like :func:`syscall` but returns ``-errno`` instead of raising: for probes that expect a failure."""
    try:
        return syscall(name, *args)
    except KernelError as exc:
        return -(exc.errno or 0)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    ctypes.set_errno(0)
    result = int(_prctl(option, arg2, arg3, arg4, arg5))
    if result == -1:
        err = ctypes.get_errno()
        raise KernelError(err, f"prctl({option}): {os.strerror(err)}")
    return result


_SCALARS: dict[str, Any] = {"char": ctypes.c_char, "uint16_t": ctypes.c_uint16, "uint32_t": ctypes.c_uint32,
                            "uint64_t": ctypes.c_uint64}
_STRUCTS: dict[str, type[ctypes.Structure]] = {"struct sock_fprog": SockFprog,
                                               "struct landlock_ruleset_attr": LandlockRulesetAttr}


def new(ctype: str, init: Any = None) -> Any:
    """A zeroed C object, in the C spelling the callers use: ``"struct NAME *"`` (a structure, passed to
    :func:`syscall` by reference), ``"T *"`` (one T, initialized to *init*) or ``"T[N]"`` (an array, optionally
    initialized from the list *init*), T one of char, uint16_t, uint32_t, uint64_t."""
    spelled = ctype.strip()
    if spelled.endswith("*"):
        base = spelled[:-1].strip()
        if base in _STRUCTS:
            return _STRUCTS[base]()
        array = (_SCALARS[base] * 1)()
        if init is not None:
            array[0] = init
        return array
    base, _, count = spelled.partition("[")
    array = (_SCALARS[base.strip()] * int(count.rstrip("]")))()
    for i, value in enumerate(init or ()):
        array[i] = value
    return array


def from_bytes(data: bytes) -> Any:
    """A C buffer holding *data* (NUL-terminated); keep the returned object alive while the kernel may read it."""
    return ctypes.create_string_buffer(data)


def buffer(cdata: Any, size: int) -> bytes:
    """The first *size* bytes of a C buffer, copied."""
    return ctypes.string_at(cdata, size)
