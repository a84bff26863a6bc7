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

from ocall_bridge.records import XATTR_SIZE_MAX

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


def _value(stub: Any, head: tuple, tail: tuple = ()) -> bytes:
    """stub(*head, size, *tail) for the first size the value fits: CPython's own steps (posixmodule.c's sizes)."""
    for size in (128, XATTR_SIZE_MAX):
        try:
            return stub(*head, size, *tail)
        except OSError as exc:
            if exc.errno != errno.ERANGE or size == XATTR_SIZE_MAX:
                raise
    raise AssertionError("unreachable")


def _run(path: Any, p: bytes | int, by_fd: Any, by_path: Any, args: tuple, follow_symlinks: bool) -> Any:
    """by_fd(fd, *args) for an fd, by_path(full path, *args, follow) for a path; an error names `path`."""
    try:
        if isinstance(p, int):
            return by_fd(p, *args)
        return by_path(runtime.RT.resolve(p), *args, follow_symlinks)
    except OSError as exc:
        raise with_filename(exc, path) from None


@interposed("getxattr", "fgetxattr")
def getxattr(path: Any, attribute: Any, *, follow_symlinks: bool = True) -> bytes:
    p = _target(path, "getxattr", follow_symlinks)
    name = _path(attribute, "getxattr", arg="attribute")
    rt = runtime.RT
    return _run(path, p, lambda fd, n: _value(rt.fds.stubs.fgetxattr, (fd, n)),
                lambda full, n, follow: _value(rt.ocall.getxattr, (full, n), (follow,)), (name,), follow_symlinks)


@interposed("setxattr", "fsetxattr")
def setxattr(path: Any, attribute: Any, value: Any, flags: int = 0, *, follow_symlinks: bool = True) -> None:
    p = _target(path, "setxattr", follow_symlinks)
    name = _path(attribute, "setxattr", arg="attribute")
    data = bytes(memoryview(value))  # a bytes-like value, as the native Py_buffer converter takes
    rt = runtime.RT
    _run(path, p, rt.fds.stubs.fsetxattr, rt.ocall.setxattr, (name, data, flags), follow_symlinks)


@interposed("listxattr", "flistxattr")
def listxattr(path: Any = None, *, follow_symlinks: bool = True) -> list[str]:
    p = _target("." if path is None else path, "listxattr", follow_symlinks)
    rt = runtime.RT
    names = _run(path, p, rt.fds.stubs.flistxattr, rt.ocall.listxattr, (), follow_symlinks)
    return [_fsdecode(name) for name, in names]


@interposed("removexattr", "fremovexattr")
def removexattr(path: Any, attribute: Any, *, follow_symlinks: bool = True) -> None:
    p = _target(path, "removexattr", follow_symlinks)
    name = _path(attribute, "removexattr", arg="attribute")
    rt = runtime.RT
    _run(path, p, rt.fds.stubs.fremovexattr, rt.ocall.removexattr, (name,), follow_symlinks)
