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
import mmap as _mmap
import os as _os
import posix
import stat as _stat
import sys
import warnings as _warnings
from typing import Any, Literal, overload

from ocall_bridge.types import MAX_DATA

from . import runtime
from .errors import HostGone, HostViolation, Unsupported, oserror, with_filename
from .fdtable import OpenFile, follow_cwd

_fsencode, _fsdecode, _fspath = _os.fsencode, _os.fsdecode, _os.fspath
_O_CREAT, _O_TMPFILE = _os.O_CREAT, getattr(_os, "O_TMPFILE", 0)  # O_TMPFILE includes O_DIRECTORY's bit
_stat_result, _statvfs_result, _terminal_size = _os.stat_result, _os.statvfs_result, _os.terminal_size


@overload
def _path(path: Any, func: str, allow_fd: Literal[False] = False, arg: str = "path", kinds: str = "") -> bytes: ...


@overload
def _path(path: Any, func: str, allow_fd: bool, arg: str = "path", kinds: str = "") -> bytes | int: ...


def _path(path: Any, func: str, allow_fd: bool = False, arg: str = "path", kinds: str = "") -> bytes | int:
    """Bytes for any path argument, raising the TypeError/ValueError the native call raises, word for word."""
    if allow_fd and isinstance(path, int):
        return path
    kinds = kinds or ("string, bytes, os.PathLike or integer" if allow_fd else "string, bytes or os.PathLike")
    if not isinstance(path, str | bytes) and not hasattr(type(path), "__fspath__"):
        try:
            if sys.version_info >= (3, 12):
                raise TypeError  # the deprecation below ended in 3.12: bytes-like paths are refused
            view = memoryview(path)
        except TypeError:
            raise TypeError(f"{func}: {arg} should be {kinds}, not {type(path).__name__}") from None
        # 3.11: a bytes-like path (bytearray, memoryview) is accepted with CPython's DeprecationWarning.
        _warnings.warn(f"{func}: {arg} should be {kinds}, not {type(path).__name__}", DeprecationWarning,
                       stacklevel=3)
        p = view.tobytes()
    else:
        p = _fspath(path)  # a bad __fspath__ result raises os.fspath's own TypeError, as the native converter
    if isinstance(p, str):
        if "\0" in p:
            if sys.version_info < (3, 13):  # PyUnicode_FSConverter's words, for str paths before 3.13
                raise ValueError("embedded null byte")
            raise ValueError(f"{func}: embedded null character in {arg}")
        return _fsencode(p)
    if b"\0" in p:
        raise ValueError(f"{func}: embedded null character in {arg}")
    return p


def _like(arg: Any, value: bytes) -> str | bytes:
    """Return `value` in the type the caller used (bytes in, bytes out)."""
    if isinstance(arg, bytes) or (not isinstance(arg, str | int) and arg is not None
                                  and (not hasattr(type(arg), "__fspath__") or isinstance(_fspath(arg), bytes))):
        return value  # bytes, a PathLike giving bytes, or a bytes-like object (_path accepted it)
    return _fsdecode(value)


def _fd_of(fd: Any) -> int:
    """An fd from an int or an object with fileno(), as CPython's fildes converter (same messages)."""
    if not isinstance(fd, int):
        if not hasattr(fd, "fileno"):
            raise TypeError("argument must be an int, or have a fileno() method.")
        fd = fd.fileno()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


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
        if flags & _O_CREAT or (_O_TMPFILE and flags & _O_TMPFILE == _O_TMPFILE):
            mode &= ~rt.umask
        else:
            mode = 0  # open(2) ignores the mode unless it creates; openat2 on the host refuses one (EINVAL)
        handle = rt.ocall.open(full, flags, mode & 0o7777)
    except OSError as exc:
        raise with_filename(exc, path) from None
    tmpfile = _O_TMPFILE and flags & _O_TMPFILE == _O_TMPFILE
    kind = "dir" if flags & _os.O_DIRECTORY and not tmpfile else "file"
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
        raise oserror(errno.EINVAL)  # as os.read: the length reaches read(2) as a huge size_t
    return runtime.RT.ocall.read(runtime.RT.fds.get(fd).handle, min(length, MAX_DATA))


def pread(fd: int, length: int, offset: int) -> bytes:
    if length < 0 or offset < 0:
        raise oserror(errno.EINVAL)  # what pread(2) answers; never sent, the host would call it a bad request
    return runtime.RT.ocall.pread(runtime.RT.fds.get(fd).handle, min(length, MAX_DATA), offset)


_INTO_MIN = 64 << 10  # below this a bytes answer is as cheap as filling the caller's buffer from the frame


def read_into(fd: int, view: memoryview) -> int:
    """read(2) into a writable flat byte view (FileIO.readinto's raw call); returns the count.

    A bulk read's data is copied once, from the validated answer frame into `view`, when the stub offers that
    (`stub.into`: the same checks); otherwise it comes as a bytes object and is copied from there.
    """
    rt = runtime.RT
    handle = rt.fds.get(fd).handle
    count = min(len(view), MAX_DATA)
    stub = rt.ocall.read
    into = getattr(stub, "into", None)
    if into is not None and count >= _INTO_MIN:
        return into(view, handle, count)
    data = stub(handle, count)
    n = len(data)
    view[:n] = data
    return n


def pread_into(fd: int, view: memoryview, offset: int) -> int:
    """pread(2) into a writable flat byte view; returns the count.  As read_into: a bulk answer is copied once,
    from the validated answer frame into `view` (encrypted files read their records this way)."""
    if offset < 0:
        raise oserror(errno.EINVAL)
    rt = runtime.RT
    handle = rt.fds.get(fd).handle
    count = min(len(view), MAX_DATA)
    stub = rt.ocall.pread
    into = getattr(stub, "into", None)
    if into is not None and count >= _INTO_MIN:
        return into(view, handle, count, offset)
    data = stub(handle, count, offset)
    n = len(data)
    view[:n] = data
    return n


def _chunk(data: Any) -> Any:
    if isinstance(data, bytes) and len(data) <= MAX_DATA:
        return data
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view[:MAX_DATA]


def write(fd: int, data: Any) -> int:
    return runtime.RT.ocall.write(runtime.RT.fds.get(fd).handle, _chunk(data))


def pwrite(fd: int, data: Any, offset: int) -> int:
    if offset < 0:
        runtime.RT.fds.get(fd)
        raise oserror(errno.EINVAL)
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
    if not 0 <= whence <= 4:  # SEEK_SET .. SEEK_HOLE; lseek(2) answers EINVAL for any other
        runtime.RT.fds.get(fd)
        raise oserror(errno.EINVAL)
    return runtime.RT.ocall.lseek(runtime.RT.fds.get(fd).handle, position, whence)


def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
    fds = runtime.RT.fds
    out_h, in_h = fds.get(out_fd).handle, fds.get(in_fd).handle
    if offset is not None and offset < 0:
        raise oserror(errno.EINVAL)  # sendfile(2) refuses a negative offset (-1 on the wire means "none")
    return runtime.RT.ocall.sendfile(out_h, in_h, -1 if offset is None else offset, min(count, MAX_DATA))


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


def _by_fd(fn: Any, fd: int, *args: Any) -> Any:
    """A path function given an fd: the native error names the fd as its filename."""
    try:
        return fn(fd, *args)
    except OSError as exc:
        raise with_filename(exc, fd) from None


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


def lstat(path: Any, *, dir_fd: int | None = None) -> _os.stat_result:
    _path(path, "lstat")  # lstat's own words for a bad path, and it takes no fd
    return stat(path, dir_fd=dir_fd, follow_symlinks=False)


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
        rt.ocall.symlink(_path(src, "symlink", arg="src"), rt.resolve(_path(dst, "symlink", arg="dst"), dir_fd))
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
        return _by_fd(fchmod, p, mode)
    _path_call("chmod", "chmod", path, mode & 0o7777, follow_symlinks, dir_fd=dir_fd)


def fchmod(fd: int, mode: int) -> None:
    runtime.RT.ocall.fchmod(runtime.RT.fds.get(fd).handle, mode & 0o7777)


def _id(value: Any, what: str) -> int:
    """CPython's _Py_Uid_Converter/_Py_Gid_Converter: an index, -1 meaning "unchanged", else 0..2**32-2."""
    if isinstance(value, float) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{what} should be integer, not {type(value).__name__}")
    v = value.__index__()
    if v < -1:
        raise OverflowError(f"{what} is less than minimum")
    if v >= 2**32:
        raise OverflowError(f"{what} is {'less than minimum' if v < 2**63 else 'greater than maximum'}")
    return v


def chown(path: Any, uid: int, gid: int, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
    uid, gid = _id(uid, "uid"), _id(gid, "gid")
    p = _path(path, "chown", allow_fd=True)
    if isinstance(p, int):
        return _by_fd(fchown, p, uid, gid)
    _path_call("chown", "chown", path, uid, gid, follow_symlinks, dir_fd=dir_fd)


def lchown(path: Any, uid: int, gid: int) -> None:
    chown(path, uid, gid, follow_symlinks=False)


def fchown(fd: int, uid: int, gid: int) -> None:
    uid, gid = _id(uid, "uid"), _id(gid, "gid")
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
    rt = runtime.RT
    try:
        if isinstance(p, int):
            rt.ocall.futime(rt.fds.get(p).handle, at, mt, now)
        else:
            rt.ocall.utime(rt.resolve(p, dir_fd), at, mt, now, follow_symlinks)
    except OSError as exc:
        # CPython's utime() left the path (or fd) out of its errors until 3.13 added it; so does this one.
        raise with_filename(exc, path if sys.version_info >= (3, 13) else None) from None


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
        return _by_fd(fstatvfs, p)
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


def fchdir(fd: Any) -> None:
    rt = runtime.RT
    of = rt.fds.get(_fd_of(fd))
    if of.path is None or not _stat.S_ISDIR(rt.ocall.fstat(of.handle)[0]):
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


_real_umask = posix.umask


def umask(mask: int) -> int:
    rt = runtime.RT
    previous, rt.umask = rt.umask, mask & 0o777
    if rt.owns_process:
        _real_umask(rt.umask)  # what the host applies to native code's creations (it reads the process's)
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


# -- the rest of posix's file calls: served, or refused - never passed through ---------------------------
# An enclave fd number means nothing to the host kernel (in the sim backend it names one of the *host's* files),
# and a path would bypass the policy: a file call that reached the real posix would be an escape.


def preadv(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
    if flags:
        raise Unsupported("preadv", "RWF_* flags")
    total = 0
    for buf in buffers:
        view = memoryview(buf).cast("B")
        data = pread(fd, len(view), offset + total)
        view[:len(data)] = data
        total += len(data)
        if len(data) < len(view):
            break
    return total


def pwritev(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
    if flags:
        raise Unsupported("pwritev", "RWF_* flags")
    return pwrite(fd, b"".join(bytes(memoryview(b).cast("B")) for b in buffers), offset)


def posix_fadvise(fd: int, offset: int, length: int, advice: int) -> None:
    """Advice only: the host's page cache is its own business.  A bad fd still fails as natively."""
    runtime.RT.fds.get(fd)


def posix_fallocate(fd: int, offset: int, length: int) -> None:
    """The visible effect of fallocate: the file is at least offset + length long (space is not reserved)."""
    if offset < 0 or length <= 0:
        runtime.RT.fds.get(fd)
        raise oserror(errno.EINVAL)
    if fstat(fd).st_size < offset + length:
        ftruncate(fd, offset + length)


def sync() -> None:
    """sync(2) for what the enclave can reach: every file it has open is flushed to disk."""
    rt = runtime.RT
    for fd in rt.fds.fds():
        of = rt.fds._fds.get(fd)
        if of is not None and of.kind == "file":
            try:
                rt.ocall.fsync(of.handle)
            except OSError:
                pass


def _no_xattrs(func: str, path: Any, follow_symlinks: bool = True) -> OSError:
    # The enclave's files carry no extended attributes, as on a file system without them: the path must exist
    # (ENOENT otherwise, as natively), then ENOTSUP - which shutil.copystat and friends expect and skip.
    p = _path(path, func, allow_fd=True)
    if isinstance(p, int):
        fstat(p)
    else:
        stat(path, follow_symlinks=follow_symlinks)
    return oserror(errno.ENOTSUP, path if not isinstance(p, int) else None)


def getxattr(path: Any, attribute: Any, *, follow_symlinks: bool = True) -> bytes:
    raise _no_xattrs("getxattr", path, follow_symlinks)


def setxattr(path: Any, attribute: Any, value: Any, flags: int = 0, *, follow_symlinks: bool = True) -> None:
    raise _no_xattrs("setxattr", path, follow_symlinks)


def removexattr(path: Any, attribute: Any, *, follow_symlinks: bool = True) -> None:
    raise _no_xattrs("removexattr", path, follow_symlinks)


def listxattr(path: Any = None, *, follow_symlinks: bool = True) -> list[str]:
    raise _no_xattrs("listxattr", "." if path is None else path, follow_symlinks)


def ttyname(fd: int) -> str:
    if not isatty(fd):
        runtime.RT.fds.get(fd)
        raise oserror(errno.ENOTTY)
    raise Unsupported("ttyname", "the host's terminal has no name inside the enclave")


# Refused calls whose first argument is a descriptor: a bad one is EBADF first, and for the terminal calls a
# descriptor that is no terminal is ENOTTY, as natively (only a real terminal would meet the refusal).
_FD_FIRST = {"fpathconf": False, "tcgetpgrp": True, "tcsetpgrp": True}


def _refused(name: str, detail: str) -> Any:
    terminal = _FD_FIRST.get(name)

    def refused(*args: Any, **kwargs: Any) -> Any:
        if terminal is not None and args and isinstance(args[0], int):
            runtime.RT.fds.get(args[0])
            if terminal and not isatty(args[0]):
                raise oserror(errno.ENOTTY)
        raise Unsupported(name, detail)

    refused.__name__ = refused.__qualname__ = name
    refused.__posix_shim_refused__ = True  # type: ignore[attr-defined]  # the support table: a refusal
    return refused


_REFUSED = {
    "copy_file_range": "copy with read and write (shutil does)",
    "splice": "copy with read and write",
    "mknod": "device nodes cannot be made from inside",
    "chroot": "the enclave's view of the file system is the policy's",
    "pathconf": "no pathconf ocall",
    "fpathconf": "no pathconf ocall",
    "lockf": "use fcntl.flock",
    "memfd_create": "a memory file would be a host descriptor the enclave cannot name",
    "eventfd": "an eventfd would be a host descriptor the enclave cannot name",
    "eventfd_read": "no eventfds inside",
    "eventfd_write": "no eventfds inside",
    "openpty": "no terminals inside",
    "login_tty": "no terminals inside",
    "tcgetpgrp": "no terminals inside",
    "tcsetpgrp": "no terminals inside",
    # New in Python 3.12 (present only there and later: refused where they exist, never passed through).
    "setns": "an enclave cannot move the process it runs in to other namespaces",
    "unshare": "an enclave cannot move the process it runs in to other namespaces",
    # New in Python 3.13.
    "posix_openpt": "no terminals inside",
    "grantpt": "no terminals inside",
    "unlockpt": "no terminals inside",
    "ptsname": "no terminals inside",
    "timerfd_create": "a timerfd would be a host descriptor the enclave cannot name; use time.sleep or selectors "
                      "with a timeout",
    "timerfd_settime": "no timerfds inside",
    "timerfd_settime_ns": "no timerfds inside",
    "timerfd_gettime": "no timerfds inside",
    "timerfd_gettime_ns": "no timerfds inside",
}


class mmap(_mmap.mmap):  # the name programs know
    """mmap.mmap inside the enclave: anonymous maps are memory and work; a map of a file is refused, because
    the kernel would map whatever *host* descriptor has the enclave fd's number."""

    def __new__(cls, fileno: int, length: int, *args: Any, **kwargs: Any) -> Any:
        if fileno != -1:
            runtime.RT.fds.get(fileno)  # a bad fd is EBADF first, as natively
            raise Unsupported("mmap", "mapping a file is outside the subset; read it with os.pread, or map "
                                      "anonymous memory (fileno -1)")
        return super().__new__(cls, fileno, length, *args, **kwargs)


mmap.__module__ = "mmap"


# -- the interposition list --------------------------------------------------------------------------------

_OS_FUNCTIONS: tuple[str, ...] = (
    "open", "close", "closerange", "read", "pread", "write", "pwrite", "readv", "writev", "lseek", "sendfile",
    "pipe", "pipe2", "fstat", "stat", "lstat", "access", "unlink", "remove", "rename", "replace", "link",
    "symlink", "readlink", "mkdir", "rmdir", "mkfifo", "chmod", "fchmod", "chown", "lchown", "fchown", "utime",
    "truncate", "ftruncate", "fsync", "fdatasync", "statvfs", "fstatvfs", "isatty", "device_encoding",
    "get_terminal_size", "dup", "dup2", "get_inheritable", "set_inheritable", "get_blocking", "set_blocking",
    "getcwd", "getcwdb", "chdir", "fchdir", "umask",
)

_OS_FUNCTIONS += ("preadv", "pwritev", "posix_fadvise", "posix_fallocate", "sync", "getxattr", "setxattr",
                  "removexattr", "listxattr", "ttyname")

PATCHES: dict[Any, Any] = {getattr(posix, name): globals()[name] for name in _OS_FUNCTIONS}
PATCHES.update({getattr(posix, name): _refused(name, detail) for name, detail in _REFUSED.items()
                if hasattr(posix, name)})
PATCHES[_mmap.mmap] = mmap
PATCHES.update({getattr(_fcntl, name): globals()[name] for name in ("fcntl", "flock", "lockf", "ioctl")})

# The capability sets that shutil, os.fwalk and pathlib consult: the enclave's functions support the same
# dir_fd / fd / follow_symlinks arguments as the ones they replace.
SUPPORTS = {
    "supports_dir_fd": ("open", "stat", "access", "unlink", "rename", "mkdir", "rmdir", "readlink", "symlink",
                        "link", "chmod", "chown", "utime", "mkfifo"),
    "supports_fd": ("stat", "chmod", "chown", "utime", "truncate", "statvfs", "chdir"),
    "supports_follow_symlinks": ("stat", "access", "link", "chown", "utime"),
}
