"""The working directory and umask inside the enclave: kept inside, never the host's.

The enclave resolves every relative path against its own cwd (`rt.resolve`), so chdir only checks the folder
(a stat ocall) and remembers it, canonical as getcwd(3) reports it; umask is applied to modes before they leave.
On the process backend the process's real cwd and umask follow, for native code.
"""

from __future__ import annotations

import errno
import os as _os
import posixpath
import stat as _stat
from typing import Any

from ocall_bridge import originals

from .. import runtime
from ..errors import oserror, with_filename
from ..fdtable import follow_cwd
from ..patches import interposed
from .args import _by_fd, _fd_of, _path
from .fdio import close, open

_fsdecode = _os.fsdecode


@interposed("getcwd")
def getcwd() -> str:
    return _fsdecode(runtime.RT.cwd)


@interposed("getcwd")
def getcwdb() -> bytes:
    return runtime.RT.cwd


@interposed("chdir", "stat", "fstat", "lstat", "readlink", "open", "close")
def chdir(path: Any) -> None:
    p = _path(path, "chdir", allow_fd=True)
    if isinstance(p, int):
        return _by_fd(fchdir, p)
    rt = runtime.RT
    try:
        full = rt.resolve(p)
        st = rt.ocall.stat(full)
    except OSError as exc:
        raise with_filename(exc, path) from None
    if not _stat.S_ISDIR(st[0]):
        raise oserror(errno.ENOTDIR, path)
    rt.cwd = _canonical(full)
    _follow_cwd(rt)


@interposed("fchdir", "fstat", "lstat", "readlink", "open", "close")
def fchdir(fd: Any) -> None:
    rt = runtime.RT
    fd = _fd_of(fd)
    of = rt.fds.get(fd)
    if of.path is None or not _stat.S_ISDIR(rt.fds.stubs.fstat(fd)[0]):
        raise oserror(errno.ENOTDIR)
    rt.cwd = _canonical(of.path)
    _follow_cwd(rt)


def _follow_cwd(rt: runtime.EnclaveRuntime) -> None:
    """On a backend whose process is the enclave's own (process), keep the process's real cwd equal to the
    enclave's: native code's relative paths are forwarded to the host, which resolves them against it.  Never on
    sim, whose process is the host's.  A folder the policy lets the program stat but not open keeps the old one."""
    if not rt.owns_process:
        return
    try:
        fd = open(rt.cwd, _os.O_RDONLY | _os.O_DIRECTORY)
    except OSError:
        return
    try:
        if rt.fds.is_native(fd):
            follow_cwd(fd)
    finally:
        close(fd)


def _canonical(path: bytes) -> bytes:
    """The cwd as getcwd(3) would report it: symlinks resolved, no '.' or '..'.

    Resolved through the enclave's own lstat/readlink ocalls, so the host cannot hand back a cwd the policy
    never saw.
    """
    parts: list[bytes] = []
    pending = [c for c in path.split(b"/") if c]
    hops = 0
    while pending:
        comp = pending.pop(0)
        if comp == b".":
            continue
        if comp == b"..":
            if parts:
                parts.pop()
            continue
        candidate = b"/" + b"/".join([*parts, comp])
        st = runtime.RT.ocall.lstat(candidate)
        if _stat.S_ISLNK(st[0]):
            hops += 1
            if hops > 40:
                raise oserror(errno.ELOOP, path)
            target = runtime.RT.ocall.readlink(candidate)
            if target.startswith(b"/"):
                parts = []
            pending = [c for c in target.split(b"/") if c] + pending
            continue
        parts.append(comp)
    return posixpath.normpath(b"/" + b"/".join(parts))


_real_umask = originals.get("posix", "umask")


@interposed("umask")
def umask(mask: int) -> int:
    rt = runtime.RT
    previous, rt.umask = rt.umask, mask & 0o777
    if rt.owns_process:
        _real_umask(rt.umask)  # what the host applies to native code's creations (it reads the process's)
    return previous
