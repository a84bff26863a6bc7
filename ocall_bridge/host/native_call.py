"""One forwarded syscall of the process child: its arguments read once and turned into its table row's values.

`native.py` declares, per syscall, which row it is and where each of the row's parameters comes from (`Path`,
`Int`, `Fd`, `Sockaddr`, ...).  A `NativeCall` interprets those shapes for one seccomp notification: it reads each
memory argument from the child exactly once into host memory (a path, an address, a msghdr), lends the child's
descriptors to the host's handle table for this call only, and picks the form whose condition holds.  Also here:
the child's layouts of what goes back (struct stat / statx).  The notification loop that receives, validates and
answers is `supervisor.py`; it needs of its caller only what `Serving` names.
"""

from __future__ import annotations

import errno
import stat as _stat
import struct
from collections.abc import Callable
from typing import Any, Protocol

from .. import native as N
from ..errors import require
from ..originals import os
from ..originals import socket as sk
from ..originals import time as real_time
from ..types import MAX_DATA, MAX_PATH
from .child_memory import ChildMemory
from .runtime import Entry, Host

# struct stat, x86_64: dev ino nlink mode uid gid pad rdev size blksize blocks atime(s,ns) mtime ctime unused[3]
_STAT = struct.Struct("<QQQIIIiQqqqqqqqqq24x")
# struct statx: mask blksize attributes nlink uid gid mode pad ino size blocks attributes_mask, four timestamps
# (sec, nsec, pad: atime btime ctime mtime), rdev major/minor, dev major/minor, then zeros up to 256 bytes.
_STATX = struct.Struct("<IIQIIIHxxQQQQ" + "qIi" * 4 + "IIII112x")
STATX_BASIC_STATS = 0x7FF
_UTIME_NOW, _UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
_MAX_SOCKADDR = 128
_UIO_MAXIOV = 1024

require(_STAT.size == 144 and _STATX.size == 256, "struct stat/statx layouts are not the x86-64 kernel's")


class Serving(Protocol):
    """What a call being served needs of the supervisor: the child and the enclave's view of paths."""

    memory: ChildMemory
    pidfd: int
    host: Host
    cwd: Callable[[], bytes]  # the enclave's current directory, the base of a relative path
    umask: Callable[[], int] | None  # the enclave's umask, applied to creation modes


def _join(base: bytes, rel: bytes) -> bytes:
    return (base.rstrip(b"/") or b"") + b"/" + rel


def i32(v: int) -> int:
    """A syscall argument (a u64 register) as the C int it holds."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def i64(v: int) -> int:
    """A syscall argument as the off_t / long it holds."""
    return v - (1 << 64) if v & (1 << 63) else v


# O_PATH descriptors cannot be installed by ADDFD (the kernel's fget refuses them): an O_PATH open is served as
# a read-only, non-blocking open of the same object, which keeps the flags that shape the lookup.  The policy is
# checked for reading (stricter than O_PATH's metadata-only access), so nothing is granted that was not before.
_O_PATH = getattr(os, "O_PATH", 0o10000000)
_O_PATH_KEEP = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _oflags(flags: int) -> int:
    if flags & _O_PATH:
        return os.O_RDONLY | os.O_NONBLOCK | (flags & _O_PATH_KEEP)
    return flags


class NativeCall:
    """One notification being served: its arguments, what was read once, and the descriptors lent to the host."""

    __slots__ = ("sup", "id", "tid", "nr", "args", "memo", "lent")

    def __init__(self, sup: Serving, nid: int, tid: int, nr: int, args: tuple[int, ...]) -> None:
        self.sup, self.id, self.tid, self.nr, self.args = sup, nid, tid, nr, args
        self.memo: dict[tuple, Any] = {}
        self.lent: list[int] = []

    # -- reading, once -------------------------------------------------------------------------------------
    def raw_path(self, i: int) -> bytes:
        key = ("path", i)
        if key not in self.memo:
            self.memo[key] = self.sup.memory.read_path(self.tid, self.args[i])
        return self.memo[key]

    def msghdr(self, i: int) -> tuple[bytes, tuple | None]:
        key = ("msg", i)
        if key not in self.memo:
            self.memo[key] = self._read_msghdr(self.args[i])
        return self.memo[key]

    def _read_msghdr(self, addr: int) -> tuple[bytes, tuple | None]:
        mem = self.sup.memory
        name, namelen, iov, iovlen, control, controllen, _ = struct.unpack("<QI4xQQQQi4x", mem.read(self.tid, addr, 56))
        if controllen:
            # Ancillary data would carry the child's descriptors or credentials to a foreign socket.
            raise OSError(errno.EOPNOTSUPP, "ancillary data is not forwarded")
        if iovlen > _UIO_MAXIOV:
            raise OSError(errno.EMSGSIZE, "too many iovecs")
        parts, total = [], 0
        vecs = mem.read(self.tid, iov, 16 * iovlen)
        for k in range(iovlen):
            base, length = struct.unpack_from("<QQ", vecs, 16 * k)
            length = min(length, MAX_DATA - total)
            if length:
                parts.append(mem.read(self.tid, base, length))
                total += length
        addr_rec = self._sockaddr(name, namelen) if name and namelen else None  # as the kernel: no name
        return b"".join(parts), addr_rec

    def _sockaddr(self, addr: int, length: int) -> tuple:
        if length < 2 or length > _MAX_SOCKADDR:
            raise OSError(errno.EINVAL, "bad address length")
        raw = self.sup.memory.read(self.tid, addr, length)
        family = raw[0] | raw[1] << 8
        if family == sk.AF_INET:
            if length < 16:
                raise OSError(errno.EINVAL, "short sockaddr_in")
            return (family, sk.inet_ntop(family, raw[4:8]), raw[2] << 8 | raw[3], 0, 0, b"")
        if family == sk.AF_INET6:
            if length < 24:
                raise OSError(errno.EINVAL, "short sockaddr_in6")
            flowinfo = int.from_bytes(raw[4:8], "big")
            scope = int.from_bytes(raw[24:28], "little") if length >= 28 else 0
            return (family, sk.inet_ntop(family, raw[8:24]), raw[2] << 8 | raw[3], flowinfo, scope, b"")
        if family == sk.AF_UNIX:
            path = raw[2:]
            if path and path[0] != 0:
                path = path.split(b"\0", 1)[0]
                if not path.startswith(b"/"):
                    path = _join(self.sup.cwd(), path)
            return (family, "", 0, 0, 0, path)
        raise OSError(errno.EAFNOSUPPORT, f"address family {family} is not forwarded")

    # -- choosing the form and building the row's arguments (interpreting native.py's shapes) ---------------
    def if_set(self, c: N.IfSet) -> bool:
        return bool(self.args[c.arg] & c.bits)

    def if_null(self, c: N.IfNull) -> bool:
        return self.args[c.arg] == 0

    def if_empty(self, c: N.IfEmpty) -> bool:
        # A NULL path with AT_EMPTY_PATH means the same since Linux 6.11.
        return bool(self.args[c.flags] & N.AT_EMPTY_PATH) and (self.args[c.path] == 0 or self.raw_path(c.path) == b"")

    def if_no_name(self, c: N.IfNoName) -> bool:
        return self.msghdr(c.arg)[1] is None

    def build(self, getters: tuple) -> list:
        out: list = []
        for get, source, spread in getters:
            if spread:
                out.extend(get(self, source))
            else:
                out.append(get(self, source))
        return out

    def const(self, s: N.Const) -> Any:
        return s.value

    def bit(self, s: N.Bit) -> bool:
        return bool(self.args[s.arg] & s.bit) != s.invert

    def fd(self, s: N.Fd) -> int:
        return self.lend(i32(self.args[s.arg]))

    def sockaddr(self, s: N.Sockaddr) -> tuple:
        return self._sockaddr(self.args[s.arg], i32(self.args[s.length]))

    def buffer(self, s: N.Buffer) -> bytes:
        return self.sup.memory.read(self.tid, self.args[s.arg], min(self.args[s.length], MAX_DATA))

    def times_of(self, s: N.Times) -> tuple:
        return self.times(self.args[s.arg])

    def msg(self, s: N.Msg) -> Any:
        data, name = self.msghdr(s.arg)
        return data if s.part == "data" else name

    def path(self, s: N.Path) -> bytes:
        raw = self.raw_path(s.arg)
        if not raw:
            raise OSError(errno.ENOENT, "empty path")
        if not s.resolve or raw.startswith(b"/"):
            path = raw
        else:
            dirfd = N.AT_FDCWD if s.dirfd is None else i32(self.args[s.dirfd])
            base = self.sup.cwd() if dirfd == N.AT_FDCWD else self.dir_path(dirfd)
            path = _join(base, raw)
        if len(path) >= MAX_PATH:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        return path

    def dir_path(self, fd: int) -> bytes:
        """The kernel's path of the child's directory descriptor `fd`: the base of a dirfd-relative path."""
        if fd < 0:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        host_fd = self.sup.memory.getfd(self.sup.pidfd, fd)
        try:
            st = os.fstat(host_fd)
            if not _stat.S_ISDIR(st.st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            if st.st_nlink == 0:
                raise OSError(errno.ENOENT, "directory was removed")
            base = os.readlink(b"/proc/self/fd/%d" % host_fd)
        finally:
            os.close(host_fd)
        if not base.startswith(b"/"):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        return base

    def integer(self, s: N.Int) -> int:
        v = self.args[s.arg]
        k = s.kind
        if k == "i64":
            return i64(v)
        if k == "oflags":
            return _oflags(i32(v))
        if k == "cmode":
            umask = self.sup.umask
            return (v & 0o7777) & ~(umask() if umask is not None else 0)
        if k == "mode":
            return v & 0o7777
        if k == "id":
            v &= 0xFFFFFFFF
            return -1 if v == 0xFFFFFFFF else v
        if k == "u32":
            return v & 0xFFFFFFFF
        return i32(v)

    def times(self, addr: int) -> tuple[int | None, int | None, bool]:
        if addr == 0:
            return 0, 0, True
        a_s, a_ns, m_s, m_ns = struct.unpack("<qqqq", self.sup.memory.read(self.tid, addr, 32))
        for ns in (a_ns, m_ns):
            if not (0 <= ns < 1_000_000_000 or ns in (_UTIME_NOW, _UTIME_OMIT)):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if a_ns == m_ns == _UTIME_NOW:
            return 0, 0, True
        # UTIME_NOW for one time: the host's clock, as the kernel would use its own.  UTIME_OMIT: marked here,
        # settled by the supervisor (Supervisor._omit) with a stat through the same policy.
        now = real_time.time_ns()
        return (None if a_ns == _UTIME_OMIT else now if a_ns == _UTIME_NOW else a_s * 1_000_000_000 + a_ns,
                None if m_ns == _UTIME_OMIT else now if m_ns == _UTIME_NOW else m_s * 1_000_000_000 + m_ns,
                False)

    def lend(self, fd: int) -> int:
        """A host handle for the child's descriptor, valid for this call only."""
        if fd < 0:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        host_fd = self.sup.memory.getfd(self.sup.pidfd, fd)
        try:
            kind = "socket" if _stat.S_ISSOCK(os.fstat(host_fd).st_mode) else "file"
            number = self.sup.host.handles.add(host_fd, kind)
        except BaseException:
            os.close(host_fd)
            raise
        self.lent.append(number)
        return number

    def release(self) -> None:
        for number in self.lent:
            try:
                h = self.sup.host.handles.pop(number)
            except OSError:
                continue
            try:
                os.close(h.fd)
            except OSError:
                pass
        self.lent.clear()


_GETTERS: dict[type, Callable[..., Any]] = {
    N.Path: NativeCall.path, N.Int: NativeCall.integer, N.Const: NativeCall.const, N.Bit: NativeCall.bit,
    N.Fd: NativeCall.fd, N.Sockaddr: NativeCall.sockaddr, N.Buffer: NativeCall.buffer, N.Times: NativeCall.times_of,
    N.Msg: NativeCall.msg,
}
_CONDITIONS: dict[type, Callable[..., bool]] = {
    N.IfSet: NativeCall.if_set, N.IfNull: NativeCall.if_null, N.IfEmpty: NativeCall.if_empty,
    N.IfNoName: NativeCall.if_no_name,
}


class CompiledForm:
    """One form of native.py made ready to run: its host entry, its argument getters, its condition."""

    __slots__ = ("form", "syscall", "entry", "getters", "when", "off_thread")

    def __init__(self, syscall: str, form: N.Form, entry: Entry | None, off_thread: bool) -> None:
        self.form, self.syscall, self.entry = form, syscall, entry
        self.getters = tuple((_GETTERS[type(s)], s, isinstance(s, N.Times)) for s in form.args)
        self.when = None if form.when is None else _CONDITIONS[type(form.when)]
        self.off_thread = off_thread  # served on a thread of its own (the supervisor decides which rows)


def pack_stat(st: tuple) -> bytes:
    mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime, blksize, blocks, rdev = st
    a, m, c = divmod(atime, 1_000_000_000), divmod(mtime, 1_000_000_000), divmod(ctime, 1_000_000_000)
    return _STAT.pack(dev, ino, nlink, mode, uid, gid, 0, rdev, size, blksize, blocks,
                      a[0], a[1], m[0], m[1], c[0], c[1])


def pack_statx(st: tuple) -> bytes:
    mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime, blksize, blocks, rdev = st
    a, m, c = divmod(atime, 1_000_000_000), divmod(mtime, 1_000_000_000), divmod(ctime, 1_000_000_000)
    return _STATX.pack(STATX_BASIC_STATS, blksize, 0, nlink, uid, gid, mode & 0xFFFF, ino, size, blocks, 0,
                       a[0], a[1], 0, 0, 0, 0, c[0], c[1], 0, m[0], m[1], 0,
                       os.major(rdev), os.minor(rdev), os.major(dev), os.minor(dev))


# native.StructOut's layouts: the row's stat record in the kernel's struct.
PACK_STRUCT: dict[str, Callable[[tuple], bytes]] = {"stat": pack_stat, "statx": pack_statx}


__all__ = ["PACK_STRUCT", "CompiledForm", "NativeCall", "Serving", "i32", "i64", "pack_stat", "pack_statx"]
