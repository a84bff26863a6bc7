"""The `os` file functions inside the enclave, on the `files` ocalls.

Same signatures, return types and exceptions as `posix`: paths may be str, bytes or PathLike and come back in
the caller's type; errors carry the caller's own argument as filename; fds are enclave fds.  Calls served
inside the enclave (dup, cwd, umask, FD_CLOEXEC) never leave it.  Transfers larger than one frame are cut to
MAX_DATA: POSIX permits short reads and writes, and every caller that promises completeness (BufferedWriter,
sendall, copyfileobj) loops.
"""

from __future__ import annotations

import errno
import fcntl as _fcntl
import math
import os as _os
import posix
import stat as _stat
from typing import Any

from ocall_bridge.types import MAX_DATA

from . import runtime
from .errors import HostGone, HostViolation, Unsupported, oserror, with_filename
from .fdtable import OpenFile

_fsencode, _fsdecode, _fspath = _os.fsencode, _os.fsdecode, _os.fspath
_O_CREAT_OR_TMP = _os.O_CREAT | getattr(_os, "O_TMPFILE", 0)
_stat_result, _statvfs_result, _terminal_size = _os.stat_result, _os.statvfs_result, _os.terminal_size


def _path(path: Any, func: str, allow_fd: bool = False) -> bytes | int:
    """Bytes for any path argument, raising the TypeError the native call raises."""
    if allow_fd and isinstance(path, int):
        return path
    try:
        p = _fspath(path)
    except TypeError:
        kinds = "string, bytes, os.PathLike or integer" if allow_fd else "string, bytes or os.PathLike"
        raise TypeError(f"{func}: path should be {kinds}, not {type(path).__name__}") from None
    b = _fsencode(p)
    if b"\0" in b:
        raise ValueError(f"{func}: embedded null character in path")
    return b


def _like(arg: Any, value: bytes) -> str | bytes:
    """Return `value` in the type the caller used (bytes in, bytes out)."""
    if isinstance(arg, bytes) or (not isinstance(arg, str | int) and arg is not None
                                  and isinstance(_fspath(arg), bytes)):
        return value
    return _fsdecode(value)


def _fd_of(fd: Any) -> int:
    if isinstance(fd, int):
        return fd
    if hasattr(fd, "fileno"):
        return fd.fileno()
    raise TypeError(f"argument must be an int, or have a fileno() method, not {type(fd).__name__}")


def _of(fd: int) -> OpenFile:
    return runtime.RT.fds.get(fd)


def stat_result(st: tuple) -> _os.stat_result:
    mode, ino, dev, nlink, uid, gid, size, at, mt, ct, blksize, blocks, rdev = st
    a_s, a_n = divmod(at, 1_000_000_000)
    m_s, m_n = divmod(mt, 1_000_000_000)
    c_s, c_n = divmod(ct, 1_000_000_000)
    # The float times are computed exactly as CPython does (sec + nsec * 1e-9), so values compare equal.
    return _stat_result((mode, ino, dev, nlink, uid, gid, size, a_s, m_s, c_s, a_s + a_n * 1e-9,
                         m_s + m_n * 1e-9, c_s + c_n * 1e-9, at, mt, ct, blksize, blocks, rdev))


# -- open / close / read / write ---------------------------------------------------------------------------


def open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
    rt = runtime.RT
    p = _path(path, "open")
    try:
        full = rt.resolve(p, dir_fd)
        if flags & _O_CREAT_OR_TMP:
            mode &= ~rt.umask
        handle = rt.ocall.open(full, flags, mode & 0o7777)
    except OSError as exc:
        raise with_filename(exc, path) from None
    kind = "dir" if flags & _os.O_DIRECTORY else "file"
    # os.open makes descriptors non-inheritable (PEP 446) unless asked otherwise; here nothing inherits anyway.
    return rt.fds.add(OpenFile(handle, kind, full, flags), cloexec=True)


def close(fd: int) -> None:
    runtime.RT.fds.close(fd)


def closerange(fd_low: int, fd_high: int) -> None:
    table = runtime.RT.fds
    for fd in table.fds():
        if fd_low <= fd < fd_high:
            try:
                table.close(fd)
            except OSError:
                pass


def read(fd: int, length: int) -> bytes:
    if length < 0:
        raise ValueError("negative length")  # posix raises OSError(EINVAL) via read(2); ValueError matches _pyio
    return runtime.RT.ocall.read(runtime.RT.fds.get(fd).handle, min(length, MAX_DATA))


def pread(fd: int, length: int, offset: int) -> bytes:
    if length < 0:
        raise oserror(errno.EINVAL)
    return runtime.RT.ocall.pread(runtime.RT.fds.get(fd).handle, min(length, MAX_DATA), offset)


def _chunk(data: Any) -> Any:
    if isinstance(data, bytes) and len(data) <= MAX_DATA:
        return data
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view[:MAX_DATA]


def write(fd: int, data: Any) -> int:
    return runtime.RT.ocall.write(runtime.RT.fds.get(fd).handle, _chunk(data))


def pwrite(fd: int, data: Any, offset: int) -> int:
    return runtime.RT.ocall.pwrite(runtime.RT.fds.get(fd).handle, _chunk(data), offset)


def readv(fd: int, buffers: Any) -> int:
    total = 0
    for buf in buffers:
        view = memoryview(buf).cast("B")
        data = read(fd, len(view))
        view[:len(data)] = data
        total += len(data)
        if len(data) < len(view):
            break
    return total


def writev(fd: int, buffers: Any) -> int:
    return write(fd, b"".join(bytes(b) for b in buffers))


def lseek(fd: int, position: int, whence: int) -> int:
    return runtime.RT.ocall.lseek(runtime.RT.fds.get(fd).handle, position, whence)


def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
    fds = runtime.RT.fds
    return runtime.RT.ocall.sendfile(fds.get(out_fd).handle, fds.get(in_fd).handle,
                                     -1 if offset is None else offset, min(count, MAX_DATA))


def pipe() -> tuple[int, int]:
    return pipe2(0)


def pipe2(flags: int) -> tuple[int, int]:
    rt = runtime.RT
    r, w = rt.ocall.pipe(flags & ~_os.O_CLOEXEC)
    return (rt.fds.add(OpenFile(r, "pipe", None, _os.O_RDONLY | flags)),
            rt.fds.add(OpenFile(w, "pipe", None, _os.O_WRONLY | flags)))


# -- metadata ----------------------------------------------------------------------------------------------


def fstat(fd: int) -> _os.stat_result:
    return stat_result(runtime.RT.ocall.fstat(runtime.RT.fds.get(fd).handle))


def stat(path: Any, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> _os.stat_result:
    p = _path(path, "stat", allow_fd=True)
    if isinstance(p, int):
        return fstat(p)
    rt = runtime.RT
    try:
        full = rt.resolve(p, dir_fd)
        st = rt.ocall.stat(full) if follow_symlinks else rt.ocall.lstat(full)
    except OSError as exc:
        raise with_filename(exc, path) from None
    return stat_result(st)


def lstat(path: Any, *, dir_fd: int | None = None) -> _os.stat_result:
    return stat(path, dir_fd=dir_fd, follow_symlinks=False)


def access(path: Any, mode: int, *, dir_fd: int | None = None, effective_ids: bool = False,
           follow_symlinks: bool = True) -> bool:
    rt = runtime.RT
    try:
        rt.ocall.access(rt.resolve(_path(path, "access"), dir_fd), mode, follow_symlinks)
    except (HostViolation, HostGone):
        raise
    except OSError:
        return False  # access(2) failing for any reason, a policy denial included, means "no"
    return True


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
        getattr(rt.ocall, call)(rt.resolve(_path(src, func), src_dir_fd), rt.resolve(_path(dst, func), dst_dir_fd),
                                *extra)
    except OSError as exc:
        raise with_filename(exc, src, dst) from None


def unlink(path: Any, *, dir_fd: int | None = None) -> None:
    _path_call("unlink", "unlink", path, dir_fd=dir_fd)


def remove(path: Any, *, dir_fd: int | None = None) -> None:
    _path_call("remove", "unlink", path, dir_fd=dir_fd)


def rename(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
    _two_path_call("rename", "rename", src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


def replace(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
    _two_path_call("replace", "replace", src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


def link(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None,
         follow_symlinks: bool = True) -> None:
    _two_path_call("link", "link", src, dst, follow_symlinks, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


def symlink(src: Any, dst: Any, target_is_directory: bool = False, *, dir_fd: int | None = None) -> None:
    rt = runtime.RT
    try:
        # The target is stored as given (it is link content, not a path to resolve here).
        rt.ocall.symlink(_path(src, "symlink"), rt.resolve(_path(dst, "symlink"), dir_fd))
    except OSError as exc:
        raise with_filename(exc, src, dst) from None


def readlink(path: Any, *, dir_fd: int | None = None) -> str | bytes:
    return _like(path, _path_call("readlink", "readlink", path, dir_fd=dir_fd))


def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
    _path_call("mkdir", "mkdir", path, mode & ~runtime.RT.umask & 0o7777, dir_fd=dir_fd)


def rmdir(path: Any, *, dir_fd: int | None = None) -> None:
    _path_call("rmdir", "rmdir", path, dir_fd=dir_fd)


def mkfifo(path: Any, mode: int = 0o666, *, dir_fd: int | None = None) -> None:
    _path_call("mkfifo", "mkfifo", path, mode & ~runtime.RT.umask & 0o7777, dir_fd=dir_fd)


def chmod(path: Any, mode: int, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
    p = _path(path, "chmod", allow_fd=True)
    if isinstance(p, int):
        return fchmod(p, mode)
    _path_call("chmod", "chmod", path, mode & 0o7777, follow_symlinks, dir_fd=dir_fd)


def fchmod(fd: int, mode: int) -> None:
    runtime.RT.ocall.fchmod(runtime.RT.fds.get(fd).handle, mode & 0o7777)


def chown(path: Any, uid: int, gid: int, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
    p = _path(path, "chown", allow_fd=True)
    if isinstance(p, int):
        return fchown(p, uid, gid)
    _path_call("chown", "chown", path, uid, gid, follow_symlinks, dir_fd=dir_fd)


def lchown(path: Any, uid: int, gid: int) -> None:
    chown(path, uid, gid, follow_symlinks=False)


def fchown(fd: int, uid: int, gid: int) -> None:
    runtime.RT.ocall.fchown(runtime.RT.fds.get(fd).handle, uid, gid)


def _times_ns(times: Any, ns: Any) -> tuple[int, int, bool]:
    if times is not None and ns is not None:
        raise ValueError("utime: you may specify either 'times' or 'ns' but not both")
    if ns is not None:
        if not (isinstance(ns, tuple) and len(ns) == 2):
            raise TypeError("utime: 'ns' must be a tuple of two ints")
        return int(ns[0]), int(ns[1]), False
    if times is not None:
        if not (isinstance(times, tuple) and len(times) == 2):
            raise TypeError("utime: 'times' must be either a tuple of two ints or None")
        return _to_ns(times[0]), _to_ns(times[1]), False
    return 0, 0, True


def _to_ns(t: float | int) -> int:
    if isinstance(t, int):
        return t * 1_000_000_000
    # The split CPython's utime() makes (_PyTime_ObjectToTimespec, ROUND_FLOOR), so the stored ns are equal.
    frac, whole = math.modf(t)
    frac = math.floor(frac * 1e9)
    if frac >= 1e9:
        frac, whole = frac - 1e9, whole + 1.0
    elif frac < 0:
        frac, whole = frac + 1e9, whole - 1.0
    return int(whole) * 1_000_000_000 + int(frac)


def utime(path: Any, times: Any = None, *, ns: Any = None, dir_fd: int | None = None,
          follow_symlinks: bool = True) -> None:
    at, mt, now = _times_ns(times, ns)
    p = _path(path, "utime", allow_fd=True)
    if isinstance(p, int):
        runtime.RT.ocall.futime(runtime.RT.fds.get(p).handle, at, mt, now)
        return
    _path_call("utime", "utime", path, at, mt, now, follow_symlinks, dir_fd=dir_fd)


def truncate(path: Any, length: int) -> None:
    p = _path(path, "truncate", allow_fd=True)
    if isinstance(p, int):
        return ftruncate(p, length)
    if length < 0:
        raise oserror(errno.EINVAL, path)
    _path_call("truncate", "truncate", path, length)


def ftruncate(fd: int, length: int) -> None:
    if length < 0:
        raise oserror(errno.EINVAL)
    runtime.RT.ocall.ftruncate(runtime.RT.fds.get(fd).handle, length)


def fsync(fd: Any) -> None:
    runtime.RT.ocall.fsync(runtime.RT.fds.get(_fd_of(fd)).handle)


def fdatasync(fd: Any) -> None:
    runtime.RT.ocall.fdatasync(runtime.RT.fds.get(_fd_of(fd)).handle)


def _statvfs(st: tuple) -> _os.statvfs_result:
    return _statvfs_result(st[:10], {"f_fsid": st[10]})


def statvfs(path: Any) -> _os.statvfs_result:
    p = _path(path, "statvfs", allow_fd=True)
    if isinstance(p, int):
        return fstatvfs(p)
    return _statvfs(_path_call("statvfs", "statvfs", path))


def fstatvfs(fd: int) -> _os.statvfs_result:
    return _statvfs(runtime.RT.ocall.fstatvfs(runtime.RT.fds.get(fd).handle))


def isatty(fd: int) -> bool:
    of = runtime.RT.fds._fds.get(fd)
    if of is None:
        return False  # native isatty answers False for a bad fd rather than raising
    try:
        return runtime.RT.ocall.isatty(of.handle)
    except OSError:
        return False


def device_encoding(fd: int) -> str | None:
    if not isatty(fd):
        return None
    import locale

    return locale.getencoding()


def get_terminal_size(fd: int = 1) -> _os.terminal_size:
    columns, lines = runtime.RT.ocall.terminal_size(runtime.RT.fds.get(fd).handle)
    return _terminal_size((columns, lines))


# -- descriptors served inside ---------------------------------------------------------------------------


def dup(fd: int) -> int:
    table = runtime.RT.fds
    return table.add(table.get(fd), cloexec=True)


def dup2(fd: int, fd2: int, inheritable: bool = True) -> int:
    table = runtime.RT.fds
    of = table.get(fd)
    if fd == fd2:
        return fd2
    if fd2 < 0:
        raise oserror(errno.EBADF)
    return table.place(fd2, of, cloexec=not inheritable)


def get_inheritable(fd: int) -> bool:
    return not runtime.RT.fds.cloexec(fd)


def set_inheritable(fd: int, inheritable: bool) -> None:
    runtime.RT.fds.set_cloexec(fd, not inheritable)


def get_blocking(fd: int) -> bool:
    rt = runtime.RT
    return not rt.ocall.getfl(rt.fds.get(fd).handle) & _os.O_NONBLOCK


def set_blocking(fd: int, blocking: bool) -> None:
    rt = runtime.RT
    handle = rt.fds.get(fd).handle
    flags = rt.ocall.getfl(handle)
    rt.ocall.setfl(handle, flags & ~_os.O_NONBLOCK if blocking else flags | _os.O_NONBLOCK)


# -- working directory and umask, kept inside -------------------------------------------------------------


def getcwd() -> str:
    return _fsdecode(runtime.RT.cwd)


def getcwdb() -> bytes:
    return runtime.RT.cwd


def chdir(path: Any) -> None:
    p = _path(path, "chdir", allow_fd=True)
    if isinstance(p, int):
        return fchdir(p)
    rt = runtime.RT
    try:
        full = rt.resolve(p)
        st = rt.ocall.stat(full)
    except OSError as exc:
        raise with_filename(exc, path) from None
    if not _stat.S_ISDIR(st[0]):
        raise oserror(errno.ENOTDIR, path)
    rt.cwd = _canonical(full)


def fchdir(fd: Any) -> None:
    rt = runtime.RT
    of = rt.fds.get(_fd_of(fd))
    if of.path is None or not _stat.S_ISDIR(rt.ocall.fstat(of.handle)[0]):
        raise oserror(errno.ENOTDIR)
    rt.cwd = _canonical(of.path)


def _canonical(path: bytes) -> bytes:
    """The cwd as getcwd(3) would report it: symlinks resolved, no '.' or '..'.

    Resolved through the enclave's own lstat/readlink ocalls, so the host cannot hand back a cwd the policy
    never saw.
    """
    import posixpath

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


def umask(mask: int) -> int:
    rt = runtime.RT
    previous, rt.umask = rt.umask, mask & 0o777
    return previous


# -- fcntl -------------------------------------------------------------------------------------------------


def fcntl(fd: Any, cmd: int, arg: Any = 0) -> Any:
    fd = _fd_of(fd)
    rt = runtime.RT
    if cmd == _fcntl.F_GETFD:
        return _fcntl.FD_CLOEXEC if rt.fds.cloexec(fd) else 0
    if cmd == _fcntl.F_SETFD:
        rt.fds.set_cloexec(fd, bool(arg & _fcntl.FD_CLOEXEC))
        return 0
    if cmd == _fcntl.F_GETFL:
        return rt.ocall.getfl(rt.fds.get(fd).handle)
    if cmd == _fcntl.F_SETFL:
        rt.ocall.setfl(rt.fds.get(fd).handle, arg)
        return 0
    if cmd in (_fcntl.F_DUPFD, _fcntl.F_DUPFD_CLOEXEC):
        return rt.fds.add(rt.fds.get(fd), lowest=arg, cloexec=cmd == _fcntl.F_DUPFD_CLOEXEC)
    raise Unsupported("fcntl", f"command {cmd}")


def flock(fd: Any, operation: int) -> None:
    rt = runtime.RT
    rt.ocall.flock(rt.fds.get(_fd_of(fd)).handle, operation)


def lockf(fd: Any, cmd: int, len: int = 0, start: int = 0, whence: int = 0) -> None:
    raise Unsupported("lockf", "use fcntl.flock")


def ioctl(fd: Any, request: int, arg: Any = 0, mutate_flag: bool = True) -> Any:
    raise Unsupported("ioctl")


# -- the interposition list --------------------------------------------------------------------------------

_OS_FUNCTIONS = (
    "open", "close", "closerange", "read", "pread", "write", "pwrite", "readv", "writev", "lseek", "sendfile",
    "pipe", "pipe2", "fstat", "stat", "lstat", "access", "unlink", "remove", "rename", "replace", "link",
    "symlink", "readlink", "mkdir", "rmdir", "mkfifo", "chmod", "fchmod", "chown", "lchown", "fchown", "utime",
    "truncate", "ftruncate", "fsync", "fdatasync", "statvfs", "fstatvfs", "isatty", "device_encoding",
    "get_terminal_size", "dup", "dup2", "get_inheritable", "set_inheritable", "get_blocking", "set_blocking",
    "getcwd", "getcwdb", "chdir", "fchdir", "umask",
)

PATCHES: dict[Any, Any] = {getattr(posix, name): globals()[name] for name in _OS_FUNCTIONS}
PATCHES.update({getattr(_fcntl, name): globals()[name] for name in ("fcntl", "flock", "lockf", "ioctl")})

# The capability sets that shutil, os.fwalk and pathlib consult: the enclave's functions support the same
# dir_fd / fd / follow_symlinks arguments as the ones they replace.
SUPPORTS = {
    "supports_dir_fd": ("open", "stat", "access", "unlink", "rename", "mkdir", "rmdir", "readlink", "symlink",
                        "link", "chmod", "chown", "utime", "mkfifo"),
    "supports_fd": ("stat", "chmod", "chown", "utime", "truncate", "statvfs", "chdir"),
    "supports_follow_symlinks": ("stat", "access", "link", "chown", "utime"),
}
