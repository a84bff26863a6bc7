"""The `os` path functions inside the enclave: metadata, names, permissions and times, on the `files` ocalls.

Same signatures, return types and exceptions as `posix`: paths may be str, bytes or PathLike and come back in the
caller's type; errors carry the caller's own argument as filename; a function that also takes an fd (stat, chmod,
utime...) serves it with the fd call.  Every path leaves absolute (`rt.resolve`: the enclave's cwd or dir_fd),
where the policy is asked before it goes and the host resolves it beneath the policy's roots.
"""

from __future__ import annotations

import errno
import os as _os
import sys
from typing import Any

from .. import runtime
from ..errors import HostGone, HostViolation, oserror, with_filename
from ..patches import interposed
from .args import _by_fd, _id, _like, _path, _statvfs, _times_ns, stat_result
from .fdio import fstat, ftruncate


def _path_call(func: str, call: str, path: Any, *extra: Any, dir_fd: int | None = None) -> Any:
    rt = runtime.RT
    try:
        return getattr(rt.ocall, call)(rt.resolve(_path(path, func), dir_fd), *extra)
    except OSError as exc:
        raise with_filename(exc, path) from None


def _two_path_call(func: str, call: str, src: Any, dst: Any, *extra: Any, src_dir_fd: int | None = None,
                   dst_dir_fd: int | None = None) -> None:
    rt = runtime.RT
    try:
        getattr(rt.ocall, call)(rt.resolve(_path(src, func, arg="src"), src_dir_fd),
                                rt.resolve(_path(dst, func, arg="dst"), dst_dir_fd), *extra)
    except OSError as exc:
        raise with_filename(exc, src, dst) from None


@interposed("stat", "lstat", "fstat")
def stat(path: Any, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> _os.stat_result:
    p = _path(path, "stat", allow_fd=True)
    if isinstance(p, int):
        return _by_fd(fstat, p)
    rt = runtime.RT
    try:
        full = rt.resolve(p, dir_fd)
        st = rt.ocall.stat(full) if follow_symlinks else rt.ocall.lstat(full)
    except OSError as exc:
        raise with_filename(exc, path) from None
    return stat_result(st)


@interposed("stat", "lstat", "fstat")
def lstat(path: Any, *, dir_fd: int | None = None) -> _os.stat_result:
    _path(path, "lstat")  # lstat's own words for a bad path, and it takes no fd
    return stat(path, dir_fd=dir_fd, follow_symlinks=False)


@interposed("access")
def access(path: Any, mode: int, *, dir_fd: int | None = None, effective_ids: bool = False,
           follow_symlinks: bool = True) -> bool:
    rt = runtime.RT
    p = _path(path, "access")
    if mode & ~7:
        return False  # access(2) answers EINVAL for an unknown mode bit: "no"
    try:
        rt.ocall.access(rt.resolve(p, dir_fd), mode, follow_symlinks)
    except (HostViolation, HostGone):
        raise
    except OSError:
        return False  # access(2) failing for any reason, a policy denial included, means "no"
    return True


@interposed("unlink")
def unlink(path: Any, *, dir_fd: int | None = None) -> None:
    _path_call("unlink", "unlink", path, dir_fd=dir_fd)


@interposed("unlink")
def remove(path: Any, *, dir_fd: int | None = None) -> None:
    _path_call("remove", "unlink", path, dir_fd=dir_fd)


@interposed("rename")
def rename(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
    _two_path_call("rename", "rename", src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


@interposed("replace")
def replace(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
    _two_path_call("replace", "replace", src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


@interposed("link")
def link(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None,
         follow_symlinks: bool = True) -> None:
    _two_path_call("link", "link", src, dst, follow_symlinks, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


@interposed("symlink")
def symlink(src: Any, dst: Any, target_is_directory: bool = False, *, dir_fd: int | None = None) -> None:
    rt = runtime.RT
    try:
        # The target is stored as given (it is link content, not a path to resolve here).
        rt.ocall.symlink(_path(src, "symlink", arg="src"), rt.resolve(_path(dst, "symlink", arg="dst"), dir_fd))
    except OSError as exc:
        raise with_filename(exc, src, dst) from None


@interposed("readlink")
def readlink(path: Any, *, dir_fd: int | None = None) -> str | bytes:
    return _like(path, _path_call("readlink", "readlink", path, dir_fd=dir_fd))


@interposed("mkdir")
def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
    _path_call("mkdir", "mkdir", path, mode & ~runtime.RT.umask & 0o7777, dir_fd=dir_fd)


@interposed("rmdir")
def rmdir(path: Any, *, dir_fd: int | None = None) -> None:
    _path_call("rmdir", "rmdir", path, dir_fd=dir_fd)


@interposed("mkfifo")
def mkfifo(path: Any, mode: int = 0o666, *, dir_fd: int | None = None) -> None:
    _path_call("mkfifo", "mkfifo", path, mode & ~runtime.RT.umask & 0o7777, dir_fd=dir_fd)


@interposed("chmod", "fchmod")
def chmod(path: Any, mode: int, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
    p = _path(path, "chmod", allow_fd=True)
    if isinstance(p, int):
        return _by_fd(fchmod, p, mode)
    _path_call("chmod", "chmod", path, mode & 0o7777, follow_symlinks, dir_fd=dir_fd)


@interposed("fchmod")
def fchmod(fd: int, mode: int) -> None:
    runtime.RT.fds.stubs.fchmod(fd, mode & 0o7777)


@interposed("chown", "fchown")
def chown(path: Any, uid: int, gid: int, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
    uid, gid = _id(uid, "uid"), _id(gid, "gid")
    p = _path(path, "chown", allow_fd=True)
    if isinstance(p, int):
        return _by_fd(fchown, p, uid, gid)
    _path_call("chown", "chown", path, uid, gid, follow_symlinks, dir_fd=dir_fd)


@interposed("chown", "fchown")
def lchown(path: Any, uid: int, gid: int) -> None:
    chown(path, uid, gid, follow_symlinks=False)


@interposed("fchown")
def fchown(fd: int, uid: int, gid: int) -> None:
    uid, gid = _id(uid, "uid"), _id(gid, "gid")
    runtime.RT.fds.stubs.fchown(fd, uid, gid)


@interposed("utime", "futime")
def utime(path: Any, times: Any = None, *, ns: Any = None, dir_fd: int | None = None,
          follow_symlinks: bool = True) -> None:
    at, mt, now = _times_ns(times, ns)
    p = _path(path, "utime", allow_fd=True)
    rt = runtime.RT
    try:
        if isinstance(p, int):
            rt.fds.stubs.futime(p, at, mt, now)
        else:
            rt.ocall.utime(rt.resolve(p, dir_fd), at, mt, now, follow_symlinks)
    except OSError as exc:
        # CPython's utime() left the path (or fd) out of its errors until 3.13 added it; so does this one.
        raise with_filename(exc, path if sys.version_info >= (3, 13) else None) from None


@interposed("truncate", "ftruncate")
def truncate(path: Any, length: int) -> None:
    p = _path(path, "truncate", allow_fd=True)
    if isinstance(p, int):
        return ftruncate(p, length)
    if length < 0:
        raise oserror(errno.EINVAL, path)
    _path_call("truncate", "truncate", path, length)


@interposed("statvfs", "fstatvfs")
def statvfs(path: Any) -> _os.statvfs_result:
    p = _path(path, "statvfs", allow_fd=True)
    if isinstance(p, int):
        return _by_fd(fstatvfs, p)
    return _statvfs(_path_call("statvfs", "statvfs", path))


@interposed("fstatvfs")
def fstatvfs(fd: int) -> _os.statvfs_result:
    return _statvfs(runtime.RT.fds.stubs.fstatvfs(fd))
