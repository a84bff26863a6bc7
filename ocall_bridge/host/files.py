"""Host side of the `files` family: each function performs the call of the same name in calls.py.

Arguments arrive decoded and checked; handle parameters arrive as `Handle` objects from the handle table, paths
as absolute bytes already cleared by the policy.  A function returns the results in table order (one value, a
tuple, or None) or raises OSError, which becomes an errno answer.
"""

from __future__ import annotations

import errno
import stat as _stat

from .handles import Handle
from .real import fcntl, os
from .runtime import Host

_DT_DIR, _DT_REG, _DT_LNK, _DT_UNKNOWN = 4, 8, 10, 0


def _stat_record(st: os.stat_result) -> tuple:
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


def open(host: Host, path: bytes, flags: int, mode: int) -> int:
    # O_CLOEXEC always: the enclave never execs, and a host child must not inherit enclave files.
    fd = os.open(path, flags | os.O_CLOEXEC, mode)
    try:
        return host.handles.add(fd, _kind_of(fd), path)
    except BaseException:
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


def write(host: Host, h: Handle, data: bytes) -> int:
    return os.write(h.fd, data)


def pwrite(host: Host, h: Handle, data: bytes, offset: int) -> int:
    return os.pwrite(h.fd, data, offset)


def lseek(host: Host, h: Handle, offset: int, whence: int) -> int:
    return os.lseek(h.fd, offset, whence)


def fstat(host: Host, h: Handle) -> tuple:
    return _stat_record(os.fstat(h.fd))


def stat(host: Host, path: bytes) -> tuple:
    return _stat_record(os.stat(path))


def lstat(host: Host, path: bytes) -> tuple:
    return _stat_record(os.lstat(path))


def access(host: Host, path: bytes, mode: int, follow: bool) -> None:
    if not os.access(path, mode, follow_symlinks=follow):
        # os.access hides the errno; ask again the way access(2) answers, so ENOENT stays ENOENT.
        os.stat(path) if follow else os.lstat(path)
        raise OSError(errno.EACCES, "Permission denied")


def unlink(host: Host, path: bytes) -> None:
    os.unlink(path)


def rename(host: Host, src: bytes, dst: bytes) -> None:
    os.rename(src, dst)


def replace(host: Host, src: bytes, dst: bytes) -> None:
    os.replace(src, dst)


def mkdir(host: Host, path: bytes, mode: int) -> None:
    os.mkdir(path, mode)


def rmdir(host: Host, path: bytes) -> None:
    os.rmdir(path)


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
    return os.readlink(path)


def symlink(host: Host, target: bytes, linkpath: bytes) -> None:
    os.symlink(target, linkpath)


def link(host: Host, src: bytes, dst: bytes, follow: bool) -> None:
    os.link(src, dst, follow_symlinks=follow)


def chmod(host: Host, path: bytes, mode: int, follow: bool) -> None:
    os.chmod(path, mode, follow_symlinks=follow)


def fchmod(host: Host, h: Handle, mode: int) -> None:
    os.fchmod(h.fd, mode)


def chown(host: Host, path: bytes, uid: int, gid: int, follow: bool) -> None:
    os.chown(path, uid, gid, follow_symlinks=follow)


def fchown(host: Host, h: Handle, uid: int, gid: int) -> None:
    os.fchown(h.fd, uid, gid)


def utime(host: Host, path: bytes, atime_ns: int, mtime_ns: int, now: bool, follow: bool) -> None:
    if now:
        os.utime(path, follow_symlinks=follow)
    else:
        os.utime(path, ns=(atime_ns, mtime_ns), follow_symlinks=follow)


def futime(host: Host, h: Handle, atime_ns: int, mtime_ns: int, now: bool) -> None:
    if now:
        os.utime(h.fd)
    else:
        os.utime(h.fd, ns=(atime_ns, mtime_ns))


def truncate(host: Host, path: bytes, length: int) -> None:
    os.truncate(path, length)


def ftruncate(host: Host, h: Handle, length: int) -> None:
    os.ftruncate(h.fd, length)


def fsync(host: Host, h: Handle) -> None:
    os.fsync(h.fd)


def fdatasync(host: Host, h: Handle) -> None:
    os.fdatasync(h.fd)


def _statvfs_record(st: os.statvfs_result) -> tuple:
    return (st.f_bsize, st.f_frsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree, st.f_favail,
            st.f_flag, st.f_namemax, st.f_fsid)


def statvfs(host: Host, path: bytes) -> tuple:
    return _statvfs_record(os.statvfs(path))


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
    os.mkfifo(path, mode)
