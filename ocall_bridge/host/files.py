"""Host side of the `files` family: each function performs the call of the same name in calls.py.

Arguments arrive decoded and checked; handle parameters arrive as `Handle` objects from the handle table, paths
as absolute bytes already cleared by the policy.  A function returns the results in table order (one value, a
tuple, or None) or raises OSError, which becomes an errno answer.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import stat as _stat
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..access import open_kinds
from ..originals import fcntl, os
from .confine import O_PATH, confiner_for
from .handles import Handle
from .runtime import Host

if TYPE_CHECKING:  # `os` above is real.py's namespace of posix functions; the result types come from os itself
    from os import stat_result, statvfs_result

# Every path operation goes through the policy's Confiner (confine.py): resolved by the kernel beneath the root
# that grants it.  Under allow-all there is nothing to confine and the plain calls are used.
_WRITE, _STAT = ("write",), ("stat",)
log = logging.getLogger("posix_shim.host")


def _fd_path(fd: int) -> bytes:
    # The magic link of a descriptor: the way to chmod/utime/chown/link the very object the kernel resolved.
    return b"/proc/self/fd/%d" % fd


class _At:
    """`with _At(conf, path, kinds) as (dir_fd, name)`: the parent directory resolved beneath its root."""

    __slots__ = ("conf", "path", "kinds", "dot", "fd", "own")

    def __init__(self, conf, path: bytes, kinds: tuple[str, ...], dot: int = errno.EINVAL) -> None:
        self.conf, self.path, self.kinds, self.dot = conf, path, kinds, dot

    def __enter__(self) -> tuple[int, bytes]:
        self.fd, name, self.own = self.conf.parent(self.path, self.kinds, self.dot)
        return self.fd, name

    def __exit__(self, *exc: object) -> None:
        if self.own:
            os.close(self.fd)


def _with_fd(conf, path: bytes, kinds: tuple[str, ...], flags: int, fn):
    fd = conf.open_fd(path, kinds, flags)
    try:
        return fn(fd)
    finally:
        os.close(fd)

_DT_DIR, _DT_REG, _DT_LNK, _DT_UNKNOWN = 4, 8, 10, 0


def _stat_record(st: stat_result) -> tuple:
    return (st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, st.st_size, st.st_atime_ns,
            st.st_mtime_ns, st.st_ctime_ns, st.st_blksize, st.st_blocks, st.st_rdev)


def _kind_of(fd: int) -> str:
    mode = os.fstat(fd).st_mode
    if _stat.S_ISDIR(mode):
        return "dir"
    if _stat.S_ISSOCK(mode):
        return "socket"
    if _stat.S_ISFIFO(mode):
        return "pipe"
    return "file"


_umask_lock = threading.Lock()


@contextlib.contextmanager
def _exact_mode(creates: bool = True) -> Iterator[None]:
    """The mode a creating call gets is the enclave's, already masked by the enclave's umask: the host's own
    umask must not take more bits away (natively a program's umask alone applies: os.umask(0o002) then mkdir
    0o777 gives 0o775, whatever the shell's umask).  The process umask is cleared for the one system call, under
    a lock so that concurrent creations restore it in order; native code creating a file in that same instant
    would see no umask, a window of one system call."""
    if not creates:
        yield
        return
    with _umask_lock:
        previous = os.umask(0)
        try:
            yield
        finally:
            os.umask(previous)


def _create_or_open(flags: int, do: Callable[[int], int]) -> int:
    """open(2) where a creation gets exactly the enclave's mode.  Only a call that certainly creates (O_EXCL,
    O_TMPFILE) runs under _exact_mode: an O_CREAT open of an existing FIFO would wait for its partner while holding
    the umask lock, so plain O_CREAT first tries to create (O_EXCL) and, when the name exists, opens it as is."""
    tmpfile = os.O_TMPFILE and flags & os.O_TMPFILE == os.O_TMPFILE
    if not flags & os.O_CREAT and not tmpfile:
        return do(flags)
    if flags & os.O_EXCL or tmpfile:
        with _exact_mode():
            return do(flags)
    for _ in range(3):
        try:
            with _exact_mode():
                return do(flags | os.O_EXCL)
        except FileExistsError:
            pass
        try:
            return do(flags & ~os.O_CREAT)
        except FileNotFoundError:
            continue  # removed in between (or a dangling symlink): try to create it again
    return do(flags)  # a dangling symlink natively creates its target: the host's umask applies there


def open(host: Host, path: bytes, flags: int, mode: int) -> int:
    # O_CLOEXEC always: the enclave never execs, and a host child must not inherit enclave files.
    conf = confiner_for(host.access)
    # A FIFO's open waits for its partner: noted, so that closing the host releases this thread.
    wait = host.open_may_wait(path, flags) if not flags & os.O_NONBLOCK else None
    def do(f: int) -> int:
        if conf is None:
            return os.open(path, f | os.O_CLOEXEC, mode)
        return conf.open_fd(path, open_kinds(f), f, mode)

    try:
        fd = _create_or_open(flags, do)
    finally:
        if wait is not None:
            host.end_wait(wait)
    try:
        return host.handles.add(fd, _kind_of(fd), path)
    except BaseException:
        if not host.handles.closed:  # a closed table closed it already (the enclave went while this waited)
            os.close(fd)
        raise


def close(host: Host, h: Handle) -> None:
    host.handles.pop(h.number)
    it = h.state.pop("dir", None)
    if it is not None:
        it.close()
    os.close(h.fd)


def read(host: Host, h: Handle, count: int) -> bytes:
    return os.read(h.fd, count)


def pread(host: Host, h: Handle, count: int, offset: int) -> bytes:
    return os.pread(h.fd, count, offset)


# The in-place forms (runtime.Host.perform, for bulk reads): the kernel copies straight into the answer frame.
def read_into(host: Host, h: Handle, count: int, buf: memoryview) -> int:
    return os.readv(h.fd, [buf])


def pread_into(host: Host, h: Handle, count: int, offset: int, buf: memoryview) -> int:
    return os.preadv(h.fd, [buf], offset)


def write(host: Host, h: Handle, data: bytes) -> int:
    return os.write(h.fd, data)


def pwrite(host: Host, h: Handle, data: bytes, offset: int) -> int:
    return os.pwrite(h.fd, data, offset)


def lseek(host: Host, h: Handle, offset: int, whence: int) -> int:
    return os.lseek(h.fd, offset, whence)


def fstat(host: Host, h: Handle) -> tuple:
    return _stat_record(os.fstat(h.fd))


def stat(host: Host, path: bytes) -> tuple:
    conf = confiner_for(host.access)
    if conf is None:
        return _stat_record(os.stat(path))
    fd = conf.open_fd(path, _STAT, O_PATH)
    try:
        return _stat_record(os.fstat(fd))
    finally:
        os.close(fd)


def lstat(host: Host, path: bytes) -> tuple:
    conf = confiner_for(host.access)
    if conf is None:
        return _stat_record(os.lstat(path))
    fd = conf.open_fd(path, _STAT, O_PATH | os.O_NOFOLLOW)  # an O_PATH descriptor of a symlink is the link
    try:
        return _stat_record(os.fstat(fd))
    finally:
        os.close(fd)


def access(host: Host, path: bytes, mode: int, follow: bool) -> None:
    conf = confiner_for(host.access)
    if conf is not None:
        fd = conf.open_fd(path, _STAT, O_PATH | (0 if follow else os.O_NOFOLLOW))
        try:
            if not os.access(_fd_path(fd), mode):
                raise OSError(errno.EACCES, "Permission denied")
        finally:
            os.close(fd)
        return
    if not os.access(path, mode, follow_symlinks=follow):
        # os.access hides the errno; ask again the way access(2) answers, so ENOENT stays ENOENT.
        os.stat(path) if follow else os.lstat(path)
        raise OSError(errno.EACCES, "Permission denied")


def unlink(host: Host, path: bytes) -> None:
    conf = confiner_for(host.access)
    if conf is None:
        return os.unlink(path)
    with _At(conf, path, _WRITE, errno.EISDIR) as (d, name):
        os.unlink(name, dir_fd=d)


def _move(host: Host, src: bytes, dst: bytes, fn) -> None:
    conf = confiner_for(host.access)
    if conf is None:
        return fn(src, dst)
    # Both names are resolved as directories beneath write roots: a rename can only move between them.
    with _At(conf, src, _WRITE) as (sd, sname), _At(conf, dst, _WRITE) as (dd, dname):
        fn(sname, dname, src_dir_fd=sd, dst_dir_fd=dd)


def rename(host: Host, src: bytes, dst: bytes) -> None:
    _move(host, src, dst, os.rename)


def replace(host: Host, src: bytes, dst: bytes) -> None:
    _move(host, src, dst, os.replace)


def mkdir(host: Host, path: bytes, mode: int) -> None:
    conf = confiner_for(host.access)
    if conf is None:
        with _exact_mode():
            return os.mkdir(path, mode)
    with _At(conf, path, _WRITE, errno.EEXIST) as (d, name), _exact_mode():
        os.mkdir(name, mode, dir_fd=d)


def rmdir(host: Host, path: bytes) -> None:
    conf = confiner_for(host.access)
    if conf is None:
        return os.rmdir(path)
    with _At(conf, path, _WRITE) as (d, name):
        os.rmdir(name, dir_fd=d)


def getdents(host: Host, h: Handle, max: int, restart: bool) -> list[tuple]:
    it = h.state.get("dir")
    if it is None or restart:
        if it is not None:
            it.close()
        # scandir(fd) works on its own duplicate, so the handle's descriptor and offset stay untouched.
        it = h.state["dir"] = os.scandir(h.fd)
    out = []
    for entry in it:
        if entry.is_symlink():
            dtype = _DT_LNK
        elif entry.is_dir(follow_symlinks=False):
            dtype = _DT_DIR
        elif entry.is_file(follow_symlinks=False):
            dtype = _DT_REG
        else:
            dtype = _DT_UNKNOWN  # fifo, socket, device: the enclave asks lstat when it needs to know
        out.append((os.fsencode(entry.name), dtype, entry.inode()))
        if len(out) >= max:
            break
    return out


def readlink(host: Host, path: bytes) -> bytes:
    conf = confiner_for(host.access)
    if conf is None:
        return os.readlink(path)
    # readlinkat(fd, "") reads the link an O_PATH|O_NOFOLLOW descriptor holds.
    return _with_fd(conf, path, _STAT, O_PATH | os.O_NOFOLLOW, _readlink_fd)


def _readlink_fd(fd: int) -> bytes:
    if not _stat.S_ISLNK(os.fstat(fd).st_mode):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))  # what readlink(2) says of a non-link
    return os.readlink(b"", dir_fd=fd)


def symlink(host: Host, target: bytes, linkpath: bytes) -> None:
    conf = confiner_for(host.access)
    if conf is None:
        return os.symlink(target, linkpath)
    with _At(conf, linkpath, _WRITE, errno.EEXIST) as (d, name):
        os.symlink(target, name, dir_fd=d)  # the target is text; following it later is confined


def link(host: Host, src: bytes, dst: bytes, follow: bool) -> None:
    conf = confiner_for(host.access)
    if conf is None:
        return os.link(src, dst, follow_symlinks=follow)
    with _At(conf, dst, _WRITE) as (dd, dname):
        if follow:
            # The source's final symlink is followed beneath its root, then linked by descriptor: a link to a
            # file outside cannot be made by pointing a symlink at it.
            _with_fd(conf, src, _WRITE, O_PATH,
                     lambda fd: os.link(_fd_path(fd), dname, dst_dir_fd=dd, follow_symlinks=True))
        else:
            with _At(conf, src, _WRITE) as (sd, sname):
                os.link(sname, dname, src_dir_fd=sd, dst_dir_fd=dd, follow_symlinks=False)


def chmod(host: Host, path: bytes, mode: int, follow: bool) -> None:
    conf = confiner_for(host.access)
    if conf is None:
        return os.chmod(path, mode, follow_symlinks=follow)
    if follow:
        return _with_fd(conf, path, _WRITE, O_PATH, lambda fd: os.chmod(_fd_path(fd), mode))
    with _At(conf, path, _WRITE) as (d, name):
        os.chmod(name, mode, dir_fd=d, follow_symlinks=False)


def _may_change(host: Host, h: Handle, call: str) -> None:
    """fchmod, futime and fchown change the file itself, exactly as chmod, utime and chown of its path would: they
    need the same write grant, whatever the descriptor's access mode (the kernel lets an owner fchmod a file it
    opened read-only).  A pipe or socket the enclave created has no path and is its own; the host's stdio
    streams are the host's, changed only when the policy confines no writes at all."""
    if h.path is None:
        if h.kind in ("pipe", "socket") or host.access.roots("write") is None:
            return
        raise OSError(errno.EACCES, f"{call}: the host's standard streams are not the enclave's to change")
    denial = host.access.check(call, "write", h.path)
    if denial:
        log.warning("host refused %s: %s", call, denial)
        raise OSError(errno.EACCES, denial)


def fchmod(host: Host, h: Handle, mode: int) -> None:
    _may_change(host, h, "fchmod")
    os.fchmod(h.fd, mode)


def chown(host: Host, path: bytes, uid: int, gid: int, follow: bool) -> None:
    conf = confiner_for(host.access)
    if conf is None:
        return os.chown(path, uid, gid, follow_symlinks=follow)
    if follow:
        return _with_fd(conf, path, _WRITE, O_PATH, lambda fd: os.chown(_fd_path(fd), uid, gid))
    with _At(conf, path, _WRITE) as (d, name):
        os.chown(name, uid, gid, dir_fd=d, follow_symlinks=False)


def fchown(host: Host, h: Handle, uid: int, gid: int) -> None:
    _may_change(host, h, "fchown")
    os.fchown(h.fd, uid, gid)


def utime(host: Host, path: bytes, atime_ns: int, mtime_ns: int, now: bool, follow: bool) -> None:
    kw = {} if now else {"ns": (atime_ns, mtime_ns)}
    conf = confiner_for(host.access)
    if conf is None:
        return os.utime(path, follow_symlinks=follow, **kw)
    if follow:
        return _with_fd(conf, path, _WRITE, O_PATH, lambda fd: os.utime(_fd_path(fd), **kw))
    with _At(conf, path, _WRITE) as (d, name):
        os.utime(name, dir_fd=d, follow_symlinks=False, **kw)


def futime(host: Host, h: Handle, atime_ns: int, mtime_ns: int, now: bool) -> None:
    _may_change(host, h, "futime")
    if now:
        os.utime(h.fd)
    else:
        os.utime(h.fd, ns=(atime_ns, mtime_ns))


def truncate(host: Host, path: bytes, length: int) -> None:
    conf = confiner_for(host.access)
    if conf is None:
        return os.truncate(path, length)
    _with_fd(conf, path, _WRITE, os.O_WRONLY | os.O_NONBLOCK, lambda fd: os.ftruncate(fd, length))


def ftruncate(host: Host, h: Handle, length: int) -> None:
    os.ftruncate(h.fd, length)


def fsync(host: Host, h: Handle) -> None:
    os.fsync(h.fd)


def fdatasync(host: Host, h: Handle) -> None:
    os.fdatasync(h.fd)


def _statvfs_record(st: statvfs_result) -> tuple:
    return (st.f_bsize, st.f_frsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree, st.f_favail,
            st.f_flag, st.f_namemax, st.f_fsid)


def statvfs(host: Host, path: bytes) -> tuple:
    conf = confiner_for(host.access)
    if conf is None:
        return _statvfs_record(os.statvfs(path))
    return _with_fd(conf, path, _STAT, O_PATH, lambda fd: _statvfs_record(os.fstatvfs(fd)))


def fstatvfs(host: Host, h: Handle) -> tuple:
    return _statvfs_record(os.fstatvfs(h.fd))


def isatty(host: Host, h: Handle) -> bool:
    return os.isatty(h.fd)


def getfl(host: Host, h: Handle) -> int:
    return fcntl.fcntl(h.fd, fcntl.F_GETFL)


def setfl(host: Host, h: Handle, flags: int) -> None:
    # Only the status flags Linux lets F_SETFL change; the access mode is fixed at open.
    current = fcntl.fcntl(h.fd, fcntl.F_GETFL)
    changeable = os.O_APPEND | os.O_NONBLOCK
    fcntl.fcntl(h.fd, fcntl.F_SETFL, (current & ~changeable) | (flags & changeable))


def sendfile(host: Host, out_h: Handle, in_h: Handle, offset: int, count: int) -> int:
    return os.sendfile(out_h.fd, in_h.fd, None if offset < 0 else offset, count)


def terminal_size(host: Host, h: Handle) -> tuple[int, int]:
    size = os.get_terminal_size(h.fd)
    return size.columns, size.lines


def pipe(host: Host, flags: int) -> tuple[int, int]:
    r, w = os.pipe2(flags | os.O_CLOEXEC)
    return host.handles.add(r, "pipe"), host.handles.add(w, "pipe")


def flock(host: Host, h: Handle, operation: int) -> None:
    fcntl.flock(h.fd, operation)


def mkfifo(host: Host, path: bytes, mode: int) -> None:
    conf = confiner_for(host.access)
    if conf is None:
        with _exact_mode():
            return os.mkfifo(path, mode)
    with _At(conf, path, _WRITE, errno.EEXIST) as (d, name), _exact_mode():
        os.mkfifo(name, mode, dir_fd=d)
