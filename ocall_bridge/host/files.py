"""Host side of the `files` family: each function performs the call of the same name in calls.py.

Arguments arrive decoded and checked; handle parameters arrive as `Handle` objects from the handle table, paths
as `Target`s already resolved beneath the policy's roots (the row's `paths` say how, calls.Resolve; the dispatcher
resolves them, confine.run_resolved), so no function here confines anything itself - except open, whose flags
decide how its path is resolved.  A function returns the results in table order (one value, a
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
from .confine import Target, confiner_for, fd_path
from .handles import Handle
from .runtime import Host

if TYPE_CHECKING:  # `os` above is real.py's namespace of posix functions; the result types come from os itself
    from os import stat_result, statvfs_result

log = logging.getLogger("posix_shim.host")


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


def stat(host: Host, t: Target) -> tuple:
    if t.fd < 0:  # by_path (confine.run_resolved, nothing confined): the plain path, followed
        return _stat_record(os.stat(t.name, follow_symlinks=t.follow))
    return _stat_record(os.fstat(t.fd))


def lstat(host: Host, t: Target) -> tuple:
    if t.fd < 0:  # by_path: the plain path, its last name not followed
        return _stat_record(os.stat(t.name, follow_symlinks=t.follow))
    return _stat_record(os.fstat(t.fd))  # a "link" Target: the descriptor of a symlink is the link


# Under a policy that confines nothing, stat and lstat take the plain path (one stat(2) instead of an O_PATH
# open, fstat and close): the kernel walks the same path once either way.  tests/test_lean.py compares the two.
stat.by_path = lstat.by_path = True  # type: ignore[attr-defined]


def access(host: Host, t: Target, mode: int, follow: bool) -> None:
    # The magic link of the object's descriptor: access(2) judges the very object resolved beneath its root.
    if not os.access(t.name, mode):
        raise OSError(errno.EACCES, "Permission denied")


def unlink(host: Host, t: Target) -> None:
    os.unlink(t.name, dir_fd=t.dir_fd)


def rename(host: Host, src: Target, dst: Target) -> None:
    # Both names are entries of directories resolved beneath write roots: a rename only moves between them.
    os.rename(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd)


def replace(host: Host, src: Target, dst: Target) -> None:
    os.replace(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd)


def mkdir(host: Host, t: Target, mode: int) -> None:
    with _exact_mode():
        os.mkdir(t.name, mode, dir_fd=t.dir_fd)


def rmdir(host: Host, t: Target) -> None:
    os.rmdir(t.name, dir_fd=t.dir_fd)


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


def readlink(host: Host, t: Target) -> bytes:
    # readlinkat(fd, "") reads the link an O_PATH|O_NOFOLLOW descriptor holds.
    if not _stat.S_ISLNK(os.fstat(t.fd).st_mode):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))  # what readlink(2) says of a non-link
    return os.readlink(b"", dir_fd=t.fd)


def symlink(host: Host, target: bytes, t: Target) -> None:
    os.symlink(target, t.name, dir_fd=t.dir_fd)  # the target is text; following it later is confined


def link(host: Host, src: Target, dst: Target, follow: bool) -> None:
    # Followed, the source is the object itself (its descriptor's magic link, linked with AT_SYMLINK_FOLLOW): a
    # link to a file outside cannot be made by pointing a symlink at it.
    os.link(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd, follow_symlinks=src.follow)


def chmod(host: Host, t: Target, mode: int, follow: bool) -> None:
    os.chmod(t.name, mode, dir_fd=t.dir_fd, follow_symlinks=t.follow)


def _may_change(host: Host, h: Handle, call: str) -> None:
    """fchmod, futime and fchown change the file itself, exactly as chmod, utime and chown of its path would: they
    need the same write grant, whatever the descriptor's access mode (the kernel lets an owner fchmod a file it
    opened read-only).  A pipe or socket the enclave created has no path and is its own; the host's stdio
    streams are the host's, changed only when the policy confines no writes at all."""
    if h.path is None:
        if h.kind in ("pipe", "socket") or host.access.roots("write") is None:
            return
        raise OSError(errno.EACCES, f"{call}: the host's standard streams are not the enclave's to change")
    _may(host, h, call, "write")


def _may(host: Host, h: Handle, call: str, kind: str) -> None:
    """The grant of `kind` for the file behind a handle, judged on the path it was opened by *and* on where the
    descriptor really leads: a read-only handle opened through a symlink in a writable folder
    (`out/x -> ../secret.txt`) must not fchmod or fsetxattr the read-only file behind it."""
    for where in (h.path, real_path_of(h)):
        denial = host.access.check(call, kind, where) if where else None
        if denial:
            log.warning("host refused %s: %s", call, denial)
            raise OSError(errno.EACCES, denial)


def real_path_of(h: Handle) -> bytes | None:
    """The path the kernel has for a handle's descriptor, or None (a pipe, a socket, a deleted file)."""
    try:
        real = fd_path(h.fd)
    except OSError:
        return None
    return real if real.startswith(b"/") and not real.endswith(b" (deleted)") else None


def fchmod(host: Host, h: Handle, mode: int) -> None:
    _may_change(host, h, "fchmod")
    os.fchmod(h.fd, mode)


def chown(host: Host, t: Target, uid: int, gid: int, follow: bool) -> None:
    os.chown(t.name, uid, gid, dir_fd=t.dir_fd, follow_symlinks=t.follow)


def fchown(host: Host, h: Handle, uid: int, gid: int) -> None:
    _may_change(host, h, "fchown")
    os.fchown(h.fd, uid, gid)


def utime(host: Host, t: Target, atime_ns: int, mtime_ns: int, now: bool, follow: bool) -> None:
    kw = {} if now else {"ns": (atime_ns, mtime_ns)}
    os.utime(t.name, dir_fd=t.dir_fd, follow_symlinks=t.follow, **kw)


def futime(host: Host, h: Handle, atime_ns: int, mtime_ns: int, now: bool) -> None:
    _may_change(host, h, "futime")
    if now:
        os.utime(h.fd)
    else:
        os.utime(h.fd, ns=(atime_ns, mtime_ns))


def truncate(host: Host, t: Target, length: int) -> None:
    os.ftruncate(t.fd, length)  # a descriptor opened for writing: truncate(2) needs that access


def ftruncate(host: Host, h: Handle, length: int) -> None:
    os.ftruncate(h.fd, length)


def fsync(host: Host, h: Handle) -> None:
    os.fsync(h.fd)


def fdatasync(host: Host, h: Handle) -> None:
    os.fdatasync(h.fd)


def _statvfs_record(st: statvfs_result) -> tuple:
    return (st.f_bsize, st.f_frsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree, st.f_favail,
            st.f_flag, st.f_namemax, st.f_fsid)


def statvfs(host: Host, t: Target) -> tuple:
    return _statvfs_record(os.fstatvfs(t.fd))


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


def mkfifo(host: Host, t: Target, mode: int) -> None:
    with _exact_mode():
        os.mkfifo(t.name, mode, dir_fd=t.dir_fd)


# -- extended attributes: a Target's magic link reaches the object (or, unfollowed, the link) itself ---------------

def _fits(value: bytes, size: int) -> bytes:
    if len(value) > size:  # what getxattr(2) answers for a buffer too small
        raise OSError(errno.ERANGE, os.strerror(errno.ERANGE))
    return value


def getxattr(host: Host, t: Target, name: bytes, size: int, follow: bool) -> bytes:
    return _fits(os.getxattr(t.name, name, follow_symlinks=t.follow), size)


def fgetxattr(host: Host, h: Handle, name: bytes, size: int) -> bytes:
    if h.path is not None:
        _may(host, h, "fgetxattr", "read")
    return _fits(os.getxattr(h.fd, name), size)


def setxattr(host: Host, t: Target, name: bytes, value: bytes, flags: int, follow: bool) -> None:
    os.setxattr(t.name, name, value, flags, follow_symlinks=t.follow)


def fsetxattr(host: Host, h: Handle, name: bytes, value: bytes, flags: int) -> None:
    _may_change(host, h, "fsetxattr")
    os.setxattr(h.fd, name, value, flags)


def listxattr(host: Host, t: Target, follow: bool) -> list[tuple]:
    return [(os.fsencode(n),) for n in os.listxattr(t.name, follow_symlinks=t.follow)]


def flistxattr(host: Host, h: Handle) -> list[tuple]:
    if h.path is not None:
        _may(host, h, "flistxattr", "read")
    return [(os.fsencode(n),) for n in os.listxattr(h.fd)]


def removexattr(host: Host, t: Target, name: bytes, follow: bool) -> None:
    os.removexattr(t.name, name, follow_symlinks=t.follow)


def fremovexattr(host: Host, h: Handle, name: bytes) -> None:
    _may_change(host, h, "fremovexattr")
    os.removexattr(h.fd, name)
