"""The `os` descriptor functions inside the enclave: open, I/O, pipes, and the descriptor state kept inside.

fds are enclave fds; the fd table's stubs (`rt.fds.stubs`, derived from the table) turn each into the host handle
behind it, EBADF for one the table does not hold, before anything leaves.  Transfers larger than one frame are cut
to MAX_DATA: POSIX permits short reads and writes, and every caller that promises completeness (BufferedWriter,
sendall, copyfileobj) loops.  dup, FD_CLOEXEC and fcntl's descriptor commands never leave the enclave.
"""

from __future__ import annotations

import errno
import fcntl as _fcntl
import os as _os
from typing import Any

from ocall_bridge.types import MAX_DATA

from .. import runtime
from ..errors import Unsupported, oserror, with_filename
from ..fdtable import OpenFile
from ..patches import interposed
from .args import _fd_of, _path, stat_result

_O_CREAT, _O_TMPFILE = _os.O_CREAT, getattr(_os, "O_TMPFILE", 0)  # O_TMPFILE includes O_DIRECTORY's bit
_INTO_MIN = 64 << 10  # below this a bytes answer is as cheap as filling the caller's buffer from the frame


@interposed("open")
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


@interposed("close")
def close(fd: int) -> None:
    runtime.RT.fds.close(fd)


@interposed("close")
def closerange(fd_low: int, fd_high: int) -> None:
    table = runtime.RT.fds
    for fd in table.fds():
        if fd_low <= fd < fd_high:
            try:
                table.close(fd)
            except OSError:
                pass


@interposed("read")
def read(fd: int, length: int) -> bytes:
    if length < 0:
        raise oserror(errno.EINVAL)  # as os.read: the length reaches read(2) as a huge size_t
    return runtime.RT.fds.stubs.read(fd, min(length, MAX_DATA))


@interposed("pread")
def pread(fd: int, length: int, offset: int) -> bytes:
    if length < 0 or offset < 0:
        raise oserror(errno.EINVAL)  # what pread(2) answers; never sent, the host would call it a bad request
    return runtime.RT.fds.stubs.pread(fd, min(length, MAX_DATA), offset)


def _into(stub: Any, view: memoryview, fd: int, *rest: Any) -> int:
    """`stub(fd, count, *rest)` into a writable flat byte view; returns the count.  A bulk answer is copied once,
    from the validated answer frame into `view` (`stub.into`: the same checks); a small one comes as bytes."""
    count = min(len(view), MAX_DATA)
    if count >= _INTO_MIN:
        # Exactly `count` bytes of room: the one-copy route writes an answer's data before its checks, so a lying
        # host's longer answer must find no room beyond what was asked (it is then copied whole and refused).
        return stub.into(view[:count], fd, count, *rest)
    data = stub(fd, count, *rest)
    n = len(data)
    view[:n] = data
    return n


def read_into(fd: int, view: memoryview) -> int:
    """read(2) into a writable flat byte view (FileIO.readinto's raw call); returns the count."""
    return _into(runtime.RT.fds.stubs.read, view, fd)


def pread_into(fd: int, view: memoryview, offset: int) -> int:
    """pread(2) into a writable flat byte view (encrypted files read their records this way)."""
    if offset < 0:
        raise oserror(errno.EINVAL)
    return _into(runtime.RT.fds.stubs.pread, view, fd, offset)


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


@interposed("write")
def write(fd: int, data: Any) -> int:
    return runtime.RT.fds.stubs.write(fd, _chunk(data))


@interposed("pwrite")
def pwrite(fd: int, data: Any, offset: int) -> int:
    if offset < 0:
        raise oserror(errno.EINVAL)  # before the fd, as pwrite(2) checks them (pread too)
    return runtime.RT.fds.stubs.pwrite(fd, _chunk(data), offset)


@interposed("read")
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


@interposed("write")
def writev(fd: int, buffers: Any) -> int:
    return write(fd, b"".join(bytes(b) for b in buffers))


@interposed("pread", partial="RWF_* flags")
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


@interposed("pwrite", partial="RWF_* flags")
def pwritev(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
    if flags:
        raise Unsupported("pwritev", "RWF_* flags")
    return pwrite(fd, b"".join(bytes(memoryview(b).cast("B")) for b in buffers), offset)


@interposed("lseek")
def lseek(fd: int, position: int, whence: int) -> int:
    if not 0 <= whence <= 4:  # SEEK_SET .. SEEK_HOLE; lseek(2) answers EINVAL for any other
        runtime.RT.fds.get(fd)
        raise oserror(errno.EINVAL)
    return runtime.RT.fds.stubs.lseek(fd, position, whence)


@interposed("sendfile")
def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
    fds = runtime.RT.fds
    if offset is not None and offset < 0:
        fds.get(out_fd), fds.get(in_fd)  # EBADF first, as natively
        raise oserror(errno.EINVAL)  # sendfile(2) refuses a negative offset (-1 on the wire means "none")
    return fds.stubs.sendfile(out_fd, in_fd, -1 if offset is None else offset, min(count, MAX_DATA))


@interposed("pipe")
def pipe() -> tuple[int, int]:
    return pipe2(0)


@interposed("pipe")
def pipe2(flags: int) -> tuple[int, int]:
    rt = runtime.RT
    r, w = rt.ocall.pipe(flags & ~_os.O_CLOEXEC)
    return (rt.fds.add(OpenFile(r, "pipe", None, _os.O_RDONLY | flags)),
            rt.fds.add(OpenFile(w, "pipe", None, _os.O_WRONLY | flags)))


@interposed("fstat")
def fstat(fd: int) -> _os.stat_result:
    return stat_result(runtime.RT.fds.stubs.fstat(fd))


@interposed("ftruncate")
def ftruncate(fd: int, length: int) -> None:
    if length < 0:
        raise oserror(errno.EINVAL)
    runtime.RT.fds.stubs.ftruncate(fd, length)


@interposed("fsync")
def fsync(fd: Any) -> None:
    runtime.RT.fds.stubs.fsync(_fd_of(fd))


@interposed("fdatasync")
def fdatasync(fd: Any) -> None:
    runtime.RT.fds.stubs.fdatasync(_fd_of(fd))


@interposed()
def posix_fadvise(fd: int, offset: int, length: int, advice: int) -> None:
    """Advice only: the host's page cache is its own business.  A bad fd still fails as natively."""
    runtime.RT.fds.get(fd)


@interposed("fstat", "ftruncate")
def posix_fallocate(fd: int, offset: int, length: int) -> None:
    """The visible effect of fallocate: the file is at least offset + length long (space is not reserved)."""
    if offset < 0 or length <= 0:
        runtime.RT.fds.get(fd)
        raise oserror(errno.EINVAL)
    if fstat(fd).st_size < offset + length:
        ftruncate(fd, offset + length)


@interposed("fsync")
def sync() -> None:
    """sync(2) for what the enclave can reach: every file it has open is flushed to disk."""
    rt = runtime.RT
    for fd in rt.fds.fds():
        of = rt.fds._fds.get(fd)
        if of is not None and of.kind == "file":
            try:
                rt.ocall.fsync(of.handle)  # the handle itself: the table's entry, as listed
            except OSError:
                pass


# -- descriptors served inside ---------------------------------------------------------------------------


@interposed("dup")
def dup(fd: int) -> int:
    table = runtime.RT.fds
    return table.add(table.get(fd), cloexec=True)


@interposed("dup2")
def dup2(fd: int, fd2: int, inheritable: bool = True) -> int:
    table = runtime.RT.fds
    of = table.get(fd)
    if fd == fd2:
        return fd2
    if fd2 < 0:
        raise oserror(errno.EBADF)
    return table.place(fd2, of, cloexec=not inheritable)


@interposed("get_inheritable")
def get_inheritable(fd: int) -> bool:
    return not runtime.RT.fds.cloexec(fd)


@interposed("set_inheritable")
def set_inheritable(fd: int, inheritable: bool) -> None:
    runtime.RT.fds.set_cloexec(fd, not inheritable)


@interposed("get_blocking", "getfl")
def get_blocking(fd: int) -> bool:
    return not runtime.RT.fds.stubs.getfl(fd) & _os.O_NONBLOCK


@interposed("set_blocking", "getfl", "setfl")
def set_blocking(fd: int, blocking: bool) -> None:
    stubs = runtime.RT.fds.stubs
    flags = stubs.getfl(fd)
    stubs.setfl(fd, flags & ~_os.O_NONBLOCK if blocking else flags | _os.O_NONBLOCK)


# -- fcntl -------------------------------------------------------------------------------------------------


@interposed("getfl", "setfl", "dup", original="fcntl.fcntl", partial="commands other than F_GETFD, F_SETFD, "
                                                                    "F_GETFL, F_SETFL, F_DUPFD(_CLOEXEC)")
def fcntl(fd: Any, cmd: int, arg: Any = 0) -> Any:
    fd = _fd_of(fd)
    rt = runtime.RT
    if cmd == _fcntl.F_GETFD:
        return _fcntl.FD_CLOEXEC if rt.fds.cloexec(fd) else 0
    if cmd == _fcntl.F_SETFD:
        rt.fds.set_cloexec(fd, bool(arg & _fcntl.FD_CLOEXEC))
        return 0
    if cmd == _fcntl.F_GETFL:
        return rt.fds.stubs.getfl(fd)
    if cmd == _fcntl.F_SETFL:
        rt.fds.stubs.setfl(fd, arg)
        return 0
    if cmd in (_fcntl.F_DUPFD, _fcntl.F_DUPFD_CLOEXEC):
        return rt.fds.add(rt.fds.get(fd), lowest=arg, cloexec=cmd == _fcntl.F_DUPFD_CLOEXEC)
    raise Unsupported("fcntl", f"command {cmd}")


@interposed("flock", original="fcntl.flock")
def flock(fd: Any, operation: int) -> None:
    runtime.RT.fds.stubs.flock(_fd_of(fd), operation)


@interposed(refused="use fcntl.flock", original=("fcntl.lockf", "posix.lockf"))
def lockf(fd: Any, cmd: int, len: int = 0, start: int = 0, whence: int = 0) -> None:
    raise Unsupported("lockf", "use fcntl.flock")


@interposed(refused="ENOSYS", original="fcntl.ioctl")
def ioctl(fd: Any, request: int, arg: Any = 0, mutate_flag: bool = True) -> Any:
    raise Unsupported("ioctl")
