"""Extended attributes inside the enclave: os.getxattr, setxattr, listxattr and removexattr on their ocalls.

A path or an enclave fd, as natively (follow_symlinks with an fd is the native ValueError); the attribute name is
str or bytes.  A value is asked as CPython asks it: 128 bytes first, then (on ERANGE) Linux's largest size,
XATTR_SIZE_MAX; the table holds the host to the size asked each time.  The policy reads the path's grant: read for
get and list, write for set and remove.
"""

from __future__ import annotations

import errno
import os as _os
from typing import Any

from ocall_bridge.calls import XATTR_SIZE_MAX

from .. import runtime
from ..errors import with_filename
from ..patches import interposed
from .args import _path

_fsdecode = _os.fsdecode


def _target(path: Any, func: str, follow_symlinks: bool) -> bytes | int:
    p = _path(path, func, allow_fd=True)
    if isinstance(p, int) and not follow_symlinks:
        raise ValueError(f"{func}: cannot use fd and follow_symlinks together")
    return p


def _value(stub: Any, *args: Any) -> bytes:
    """stub(*args, size) for the first size the value fits: CPython's own steps (posixmodule.c's buffer sizes)."""
    for size in (128, XATTR_SIZE_MAX):
        try:
            return stub(*args, size)
        except OSError as exc:
            if exc.errno != errno.ERANGE or size == XATTR_SIZE_MAX:
                raise
    raise AssertionError("unreachable")


@interposed("getxattr", "fgetxattr")
def getxattr(path: Any, attribute: Any, *, follow_symlinks: bool = True) -> bytes:
    p = _target(path, "getxattr", follow_symlinks)
    name = _path(attribute, "getxattr", arg="attribute")
    rt = runtime.RT
    try:
        if isinstance(p, int):
            return _value(rt.fds.stubs.fgetxattr, p, name)
        full = rt.resolve(p)
        return _value(lambda size: rt.ocall.getxattr(full, name, size, follow_symlinks))
    except OSError as exc:
        raise with_filename(exc, path) from None


@interposed("setxattr", "fsetxattr")
def setxattr(path: Any, attribute: Any, value: Any, flags: int = 0, *, follow_symlinks: bool = True) -> None:
    p = _target(path, "setxattr", follow_symlinks)
    name = _path(attribute, "setxattr", arg="attribute")
    data = bytes(memoryview(value))  # a bytes-like value, as the native Py_buffer converter takes
    rt = runtime.RT
    try:
        if isinstance(p, int):
            rt.fds.stubs.fsetxattr(p, name, data, flags)
        else:
            rt.ocall.setxattr(rt.resolve(p), name, data, flags, follow_symlinks)
    except OSError as exc:
        raise with_filename(exc, path) from None


@interposed("listxattr", "flistxattr")
def listxattr(path: Any = None, *, follow_symlinks: bool = True) -> list[str]:
    p = _target("." if path is None else path, "listxattr", follow_symlinks)
    rt = runtime.RT
    try:
        names = rt.fds.stubs.flistxattr(p) if isinstance(p, int) else rt.ocall.listxattr(rt.resolve(p),
                                                                                          follow_symlinks)
    except OSError as exc:
        raise with_filename(exc, path) from None
    return [_fsdecode(name) for name, in names]


@interposed("removexattr", "fremovexattr")
def removexattr(path: Any, attribute: Any, *, follow_symlinks: bool = True) -> None:
    p = _target(path, "removexattr", follow_symlinks)
    name = _path(attribute, "removexattr", arg="attribute")
    rt = runtime.RT
    try:
        if isinstance(p, int):
            rt.fds.stubs.fremovexattr(p, name)
        else:
            rt.ocall.removexattr(rt.resolve(p), name, follow_symlinks)
    except OSError as exc:
        raise with_filename(exc, path) from None
