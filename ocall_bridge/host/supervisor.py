"""The host's seccomp-notify supervisor: native syscalls of the process child, served like ocalls.

The child's seccomp filter stops each syscall named in `native.FORWARDED` with SECCOMP_RET_USER_NOTIF.  This
thread receives the notification, reads the syscall's memory arguments (paths, addresses, buffers) once from the
child, checks that the notification is still alive, turns it into the table row `native.py` declares, and hands
that row to `Host.perform` - the very function Python-level ocalls go through, so the policy re-check, the
openat2 confinement, the trace and the fault injection are the same.  The answer goes back through the listener:
a new descriptor installed atomically with SECCOMP_IOCTL_NOTIF_ADDFD + SEND, a struct written into the child's
buffer, a value, or -errno.

Rules that make it sound:
* the child's own syscall never runs: FLAG_CONTINUE is never used, so what was checked is what was done (the
  child cannot change the path in its memory after the check; the host acts on its own copy);
* every memory argument is read exactly once, into host memory; paths are bounded (MAX_PATH, NUL-terminated or
  ENAMETOOLONG), reads and writes go through process_vm_readv/writev, so they obey the child's page protections
  as the kernel's own copy would (EFAULT);
* SECCOMP_IOCTL_NOTIF_ID_VALID after the reads and before acting: the thread may have died and its tid been
  reused, which would make the memory read meaningless;
* the receive struct is a fresh zeroed buffer every time (the kernel refuses a non-zero one: libseccomp 2.5.4);
* nothing the child sends can crash or hang this thread: a malformed notification is answered with an errno,
  a thread that died is skipped (ENOENT), the child exiting ends the loop (POLLHUP), and `close()` wakes it.
"""

from __future__ import annotations

import errno
import logging
import re
import stat as _stat
import struct
import threading
from collections.abc import Callable
from typing import Any

from .. import native as N
from ..errors import require
from ..originals import fcntl, os, select
from ..originals import socket as sk
from ..originals import time as real_time
from ..types import MAX_DATA, MAX_PATH
from .runtime import NATIVE, Entry, Host

log = logging.getLogger("posix_shim.host")


# ---------------------------------------------------------------------------------------------------------
# seccomp user-notification ABI (include/uapi/linux/seccomp.h), x86_64
# ---------------------------------------------------------------------------------------------------------


def _ioc(direction: int, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | ord("!") << 8 | nr


_W, _RW = 1, 3
NOTIF_SIZE = 80  # struct seccomp_notif: id, pid, flags, struct seccomp_data (nr, arch, ip, args[6])
IOCTL_RECV = _ioc(_RW, 0, NOTIF_SIZE)
IOCTL_SEND = _ioc(_RW, 1, 24)  # struct seccomp_notif_resp: id, val, error, flags
IOCTL_ID_VALID = _ioc(_W, 2, 8)
IOCTL_ADDFD = _ioc(_W, 3, 24)  # struct seccomp_notif_addfd: id, flags, srcfd, newfd, newfd_flags
IOCTL_SET_FLAGS = _ioc(_W, 4, 8)
ADDFD_FLAG_SEND = 2
USER_NOTIF_FD_SYNC_WAKE_UP = 1

_NOTIF = struct.Struct("<QIIiIQ6Q")
_RESP = struct.Struct("<QqiI")
_ADDFD = struct.Struct("<QIIII")
_ID = struct.Struct("<Q")
# struct stat, x86_64: dev ino nlink mode uid gid pad rdev size blksize blocks atime(s,ns) mtime ctime unused[3]
_STAT = struct.Struct("<QQQIIIiQqqqqqqqqq24x")
# struct statx: mask blksize attributes nlink uid gid mode pad ino size blocks attributes_mask, four timestamps
# (sec, nsec, pad: atime btime ctime mtime), rdev major/minor, dev major/minor, then zeros up to 256 bytes.
_STATX = struct.Struct("<IIQIIIHxxQQQQ" + "qIi" * 4 + "IIII112x")
STATX_BASIC_STATS = 0x7FF
_UTIME_NOW, _UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
_PAGE = 4096
_MAX_SOCKADDR = 128
_FIRST_READ = 256
_ADDR_END = 1 << 63
_UIO_MAXIOV = 1024

require(_STAT.size == 144 and _STATX.size == 256, "struct stat/statx layouts are not the x86-64 kernel's")


# ---------------------------------------------------------------------------------------------------------
# The child's memory and descriptors (cffi, ABI mode: no compiler)
# ---------------------------------------------------------------------------------------------------------

_CDEF = """
ssize_t process_vm_writev(int pid, const uint64_t *local, unsigned long liovcnt,
                          const uint64_t *remote, unsigned long riovcnt, unsigned long flags);
long syscall(long number, int pidfd, int fd, unsigned int flags);
"""
SYS_PIDFD_GETFD = 438
_cffi: tuple[Any, Any] | None = None
_cffi_lock = threading.Lock()


def _bind() -> tuple[Any, Any]:
    global _cffi
    with _cffi_lock:
        if _cffi is None:
            import cffi

            ffi = cffi.FFI()
            ffi.cdef(_CDEF)
            _cffi = (ffi, ffi.dlopen(None))
    return _cffi


class ChildMemory:
    """The child's address space: reads with pread on /proc/PID/mem, writes with process_vm_writev.

    Reads go through one descriptor of /proc/PID/mem opened at start (a plain pread: no cffi on the hot path;
    measured 2-3 us against 5+ for process_vm_readv through cffi).  It pins the child's address space, not its
    leader thread, so it serves every thread.  Unlike the kernel's own copy it can also read pages the child
    mapped without PROT_READ: only the child's own memory, so nothing is disclosed that the child could not read
    itself.  Writes (stat buffers, readlink targets) use process_vm_writev, which honours page protections as
    the kernel does (a read-only buffer is EFAULT, never silently written through).
    """

    def __init__(self, pid: int) -> None:
        self.ffi, self.lib = _bind()
        try:
            self.mem = os.open(b"/proc/%d/mem" % pid, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.mem = -1  # the child already exited (or its leader did): per-thread opens below
        self._local = threading.local()

    def close(self) -> None:
        if self.mem >= 0:
            os.close(self.mem)
            self.mem = -1

    def _pread(self, addr: int, n: int, tid: int) -> bytes:
        if not 0 < addr < _ADDR_END:
            raise OSError(errno.EFAULT, "bad address in the child")
        try:
            if self.mem >= 0:
                return os.pread(self.mem, n, addr)
            fd = os.open(b"/proc/%d/mem" % tid, os.O_RDONLY | os.O_CLOEXEC)
            try:
                return os.pread(fd, n, addr)
            finally:
                os.close(fd)
        except OSError:
            raise OSError(errno.EFAULT, "bad address in the child") from None

    def read(self, tid: int, addr: int, n: int) -> bytes:
        """Exactly n bytes at addr, or EFAULT."""
        if n == 0:
            return b""
        data = self._pread(addr, n, tid)
        if len(data) != n:
            raise OSError(errno.EFAULT, "bad address in the child")
        return data

    def read_path(self, tid: int, addr: int) -> bytes:
        """The NUL-terminated string at addr: at most MAX_PATH bytes with its NUL (else ENAMETOOLONG).

        A short first read (most paths are short); a read that reaches an unmapped page stops there, so a
        string ending just before one reads as the kernel's strncpy_from_user would read it.
        """
        data = self._pread(addr, _FIRST_READ, tid)
        end = data.find(b"\0")
        if end >= 0:
            return data[:end]
        if len(data) == _FIRST_READ:
            data += self._pread(addr + _FIRST_READ, MAX_PATH - _FIRST_READ, tid)
            end = data.find(b"\0")
            if end >= 0:
                return data[:end]
        raise OSError(errno.ENAMETOOLONG if len(data) >= MAX_PATH else errno.EFAULT, "unterminated path")

    def write(self, tid: int, addr: int, data: bytes) -> None:
        # The two iovecs live in one uint64_t[4] (base, len, base, len): setting integers is much cheaper
        # through cffi than casting pointers into struct fields (7 us -> 3 us here).
        n = len(data)
        if n == 0:
            return
        t = self._local
        buf = getattr(t, "buf", None)
        if buf is None or len(buf) < n:
            ffi = self.ffi
            t.buf = buf = ffi.new("char[]", max(n, _PAGE))
            t.vec = vec = ffi.new("uint64_t[4]")
            vec[0] = int(ffi.cast("uintptr_t", buf))
            t.remote = vec + 2
        vec = t.vec
        self.ffi.memmove(buf, data, n)
        vec[1] = vec[3] = n
        vec[2] = addr
        if self.lib.process_vm_writev(tid, vec, 1, t.remote, 1, 0) != n:
            raise OSError(errno.EFAULT, "bad buffer address in the child")

    def getfd(self, pidfd: int, fd: int) -> int:
        """A host duplicate of the child's descriptor `fd` (pidfd_getfd(2); close-on-exec)."""
        got = self.lib.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if got < 0:
            err = self.ffi.errno
            raise OSError(err, os.strerror(err))
        return got


_PROC_FD = re.compile(rb"/proc/([^/]+)/fd/(\d+)")


def _i32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _i64(v: int) -> int:
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


# Rows that may wait on the outside world for long (a connect to a silent address): served on a thread of their
# own so one blocked call never stalls the others.  `open` stays inline (it blocks only on a FIFO without a peer).
_OFF_THREAD = frozenset({"connect", "sendto", "send"})


class _Call:
    """One notification being served: its arguments, what was read once, and the descriptors lent to the host."""

    __slots__ = ("sup", "id", "tid", "nr", "args", "memo", "lent")

    def __init__(self, sup: Supervisor, nid: int, tid: int, nr: int, args: tuple[int, ...]) -> None:
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
                    path = self.sup.join(self.sup.cwd(), path)
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
        return self.lend(_i32(self.args[s.arg]))

    def sockaddr(self, s: N.Sockaddr) -> tuple:
        return self._sockaddr(self.args[s.arg], _i32(self.args[s.length]))

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
            dirfd = N.AT_FDCWD if s.dirfd is None else _i32(self.args[s.dirfd])
            base = self.sup.cwd() if dirfd == N.AT_FDCWD else self.dir_path(dirfd)
            path = self.sup.join(base, raw)
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
            return _i64(v)
        if k == "oflags":
            return _oflags(_i32(v))
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
        return _i32(v)

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
        # settled by Supervisor._omit with a stat through the same policy.
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
    N.Path: _Call.path, N.Int: _Call.integer, N.Const: _Call.const, N.Bit: _Call.bit, N.Fd: _Call.fd,
    N.Sockaddr: _Call.sockaddr, N.Buffer: _Call.buffer, N.Times: _Call.times_of, N.Msg: _Call.msg,
}
_CONDITIONS: dict[type, Callable[..., bool]] = {
    N.IfSet: _Call.if_set, N.IfNull: _Call.if_null, N.IfEmpty: _Call.if_empty, N.IfNoName: _Call.if_no_name,
}


class _Compiled:
    """One form of native.py made ready to run: its host entry, its argument getters, its condition."""

    __slots__ = ("form", "syscall", "entry", "getters", "when", "off_thread")

    def __init__(self, syscall: str, form: N.Form, entry: Entry | None) -> None:
        self.form, self.syscall, self.entry = form, syscall, entry
        self.getters = tuple((_GETTERS[type(s)], s, isinstance(s, N.Times)) for s in form.args)
        self.when = None if form.when is None else _CONDITIONS[type(form.when)]
        self.off_thread = form.row in _OFF_THREAD


class Supervisor:
    """Serves the child's forwarded native syscalls on a daemon thread until the child exits or `close()`.

    host: the `Host` of this enclave (its `perform` is what every forwarded call goes through).
    listener_fd: the seccomp listener (the supervisor owns it from now on and closes it).
    pid: the child process (thread-group leader).
    cwd: the enclave's current directory, asked for each relative path.
    umask: the enclave's umask, applied to creation modes (None: only the host's own umask applies).
    """

    def __init__(self, host: Host, listener_fd: int, pid: int, cwd: Callable[[], bytes], *,
                 umask: Callable[[], int] | None = None) -> None:
        self.host = host
        self.listener = listener_fd
        self.pid = pid
        self.cwd = cwd
        self.umask = umask
        self.pidfd = os.pidfd_open(pid)
        try:
            self.memory = ChildMemory(pid)
        except BaseException:
            os.close(self.pidfd)
            raise
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._stop = False
        self._fds_closed = False
        self._fd_lock = threading.Lock()
        self._closing = False
        self._workers = 0  # calls being served on threads of their own (_OFF_THREAD)
        self.served = 0  # notifications answered (any answer)
        self.sync_wakeup = self._set_sync_wakeup()
        by_name = {e.name: e for e in host.entries.values()}
        self._by_name = by_name
        self._forms: dict[int, tuple[_Compiled, ...]] = {
            n.nr: tuple(_Compiled(n.syscall, f, by_name[f.row] if f.row else None) for f in n.forms)
            for n in N.NATIVE
        }

    def _set_sync_wakeup(self) -> bool:
        # Linux 6.6+: the supervisor and the stopped thread hand the CPU to each other directly.
        try:
            fcntl.ioctl(self.listener, IOCTL_SET_FLAGS, USER_NOTIF_FD_SYNC_WAKE_UP)
            return True
        except OSError:
            return False

    @staticmethod
    def join(base: bytes, rel: bytes) -> bytes:
        return (base.rstrip(b"/") or b"") + b"/" + rel

    # -- life cycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="posix_shim-supervisor", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (promptly: it is woken through a pipe) and release the listener and pidfd."""
        self._stop = True
        with self._fd_lock:  # never write to a number the thread already closed (it may be another file now)
            if not self._fds_closed:
                try:
                    os.write(self._wake_w, b"x")
                except OSError:
                    pass
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():
                # Stuck in a host call (an open of a FIFO without a peer): it closes the descriptors itself
                # when that returns; closing them under it could hand their numbers to another file.
                log.warning("native-call supervisor did not stop within %.1fs", timeout)
                return
        if t is None:
            self._close_fds()

    def _close_fds(self) -> None:
        with self._fd_lock:
            self._closing = True
            if self._fds_closed or self._workers:
                return  # a worker still answers through the listener: the last one closes
            self._fds_closed = True
            self.memory.close()
            for fd in (self.listener, self.pidfd, self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the loop ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        listener = self.listener
        try:
            while not self._stop:
                try:
                    ready = poller.poll()
                except InterruptedError:
                    continue
                if self._stop:
                    break
                events = 0
                for fd, ev in ready:
                    if fd == listener:
                        events = ev
                    else:
                        return
                if events & select.POLLIN:
                    notif = bytearray(NOTIF_SIZE)  # zeroed for every receive: the kernel requires it
                    try:
                        fcntl.ioctl(listener, IOCTL_RECV, notif)
                    except OSError as exc:
                        if exc.errno in (errno.ENOENT, errno.EINTR):
                            continue  # the thread was killed between poll and receive
                        log.warning("native-call supervisor stops: receive failed: %s", exc)
                        return
                    self._serve(notif)
                elif events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    return  # every thread of the child has exited
        except Exception:
            log.exception("native-call supervisor failed")
        finally:
            self._close_fds()

    def _serve(self, notif: bytearray) -> None:
        nid, tid, _flags, nr, arch, _ip, *args = _NOTIF.unpack(notif)
        forms = self._forms.get(nr) if arch == N.AUDIT_ARCH_X86_64 else None
        if forms is None:
            log.warning("native-call supervisor: syscall %d (arch %#x) is not forwarded", nr, arch)
            self._reply(nid, 0, errno.ENOSYS)
            return
        call = _Call(self, nid, tid, nr, tuple(args))
        try:
            for c in forms:
                if c.when is None or c.when(call, c.form.when):
                    break
            if c.off_thread:
                with self._fd_lock:
                    self._workers += 1
                try:
                    threading.Thread(target=self._finish_worker, args=(call, c), daemon=True,
                                     name="posix_shim-native").start()
                except BaseException:
                    self._worker_done()
                    raise
                return  # that thread answers and releases
        except OSError as exc:
            self._fail(nid, exc)
            call.release()
            return
        except Exception:
            log.exception("native-call supervisor: bad notification for syscall %d", nr)
            self._reply(nid, 0, errno.EIO)
            call.release()
            return
        self._finish(call, c)

    def _finish_worker(self, call: _Call, c: _Compiled) -> None:
        try:
            self._finish(call, c)
        finally:
            self._worker_done()

    def _worker_done(self) -> None:
        with self._fd_lock:
            self._workers -= 1
            last = self._closing and self._workers == 0
        if last:
            self._close_fds()

    def _finish(self, call: _Call, c: _Compiled) -> None:
        nid = call.id
        form = c.form
        try:
            answer = form.answer
            if type(answer) is N.Fail:
                raise OSError(answer.errno, os.strerror(answer.errno))
            values = call.build(c.getters)
            # The reads are done: from here on only the host's copies are used.  Check that the thread is still
            # waiting (and so its memory was its own) before doing anything.
            try:
                fcntl.ioctl(self.listener, IOCTL_ID_VALID, _ID.pack(nid))
            except OSError:
                return
            NATIVE.syscall, NATIVE.tid = c.syscall, call.tid
            try:
                if None in values:
                    settled = self._omit(form, values)
                    if settled is None:
                        self._reply(nid, 0, 0)
                        return
                    values = settled
                own = self._own_descriptor(values[0], call.tid) if form.row == "open" else None
                if own is not None:
                    result = self._reopen(own, values[0], values[1])
                elif c.entry is None:  # only a Fail form has no row, and it raised above
                    raise OSError(errno.EIO, f"native form of {c.syscall} names no host call")
                else:
                    result = self.host.perform(c.entry, tuple(values))
            finally:
                NATIVE.syscall = None
            _ANSWERS[type(answer)](self, call, answer, result)
        except OSError as exc:
            self._fail(nid, exc)
        except Exception:
            log.exception("native-call supervisor: %s failed", form.row)
            self._reply(nid, 0, errno.EIO)
        finally:
            call.release()
            self.served += 1

    # -- the child's own descriptors, reopened by path --------------------------------------------------------
    def _own_descriptor(self, path: bytes, tid: int) -> int | None:
        """N for a path naming one of the child's own descriptors (`/proc/self/fd/N`: how OpenSSL is handed an
        in-memory certificate).  On the host, /proc/self would be the host: it is the child's, or nothing."""
        match = _PROC_FD.fullmatch(path)
        if match is None or match.group(1) not in (b"self", b"thread-self", b"%d" % self.pid, b"%d" % tid):
            return None
        return int(match.group(2))

    def _reopen(self, fd: int, path: bytes, flags: int) -> int:
        """A new open of the file the child's descriptor `fd` already holds, for no more access than that one
        has (reopening a read-only descriptor for writing would be a way around the policy's read-only grant)."""
        host_fd = self.memory.getfd(self.pidfd, fd)
        try:
            held = fcntl.fcntl(host_fd, fcntl.F_GETFL) & os.O_ACCMODE
            want = flags & os.O_ACCMODE
            if want != held and held != os.O_RDWR:
                raise OSError(errno.EACCES, f"reopening descriptor {fd} for more access than it has")
            new = os.open(b"/proc/self/fd/%d" % host_fd, (flags & ~os.O_CREAT) | os.O_CLOEXEC)
        finally:
            os.close(host_fd)
        try:
            return self.host.handles.add(new, "file", path)
        except BaseException:
            os.close(new)
            raise

    def _omit(self, form: N.Form, values: list) -> list | None:
        """UTIME_OMIT for one of the two times: keep that time as it is, read with a stat through the policy."""
        atime, mtime = values[1], values[2]
        if atime is None and mtime is None:
            return None  # nothing to change: utimensat succeeds without touching the file
        if form.row == "futime":
            row, arg = "fstat", values[0]
        else:
            row, arg = ("stat" if values[4] else "lstat"), values[0]
        entry = self._entry(row)
        st = self.host.perform(entry, (arg,))
        values = list(values)
        values[1] = st[7] if atime is None else atime
        values[2] = st[8] if mtime is None else mtime
        return values

    def _entry(self, row: str) -> Entry:
        return self._by_name[row]

    # -- answers -------------------------------------------------------------------------------------------
    def _zero(self, call: _Call, answer: N.Zero, result: Any) -> None:
        self._reply(call.id, 0, 0)

    def _value(self, call: _Call, answer: N.Value, result: Any) -> None:
        self._reply(call.id, int(result), 0)

    def _stat(self, call: _Call, answer: N.StatOut, result: Any) -> None:
        self.memory.write(call.tid, call.args[answer.arg], _pack_stat(result))
        self._reply(call.id, 0, 0)

    def _statx(self, call: _Call, answer: N.StatxOut, result: Any) -> None:
        self.memory.write(call.tid, call.args[answer.arg], _pack_statx(result))
        self._reply(call.id, 0, 0)

    def _bytes(self, call: _Call, answer: N.BytesOut, result: Any) -> None:
        size = _i32(call.args[answer.size])
        if size <= 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        data = bytes(result)[:size]
        self.memory.write(call.tid, call.args[answer.arg], data)
        self._reply(call.id, len(data), 0)

    def _install(self, call: _Call, answer: N.NewFd, handle: int) -> None:
        """Hand the new descriptor to the child: installed and answered in one ioctl; the host keeps no copy."""
        h = self.host.handles.pop(handle)
        try:
            cloexec = answer.flags is not None and call.args[answer.flags] & answer.cloexec
            req = bytearray(_ADDFD.pack(call.id, ADDFD_FLAG_SEND, h.fd, 0, os.O_CLOEXEC if cloexec else 0))
            try:
                fcntl.ioctl(self.listener, IOCTL_ADDFD, req)
            except OSError as exc:
                if exc.errno != errno.ENOENT:  # ENOENT: the thread is gone, nobody to answer
                    self._fail(call.id, exc)  # not installed: the notification still waits for an answer
        finally:
            os.close(h.fd)

    def _fail(self, nid: int, exc: OSError) -> None:
        err = exc.errno if isinstance(exc.errno, int) and exc.errno > 0 else errno.EIO
        self._reply(nid, 0, err)

    def _reply(self, nid: int, val: int, err: int) -> None:
        try:
            fcntl.ioctl(self.listener, IOCTL_SEND, bytearray(_RESP.pack(nid, val, -err, 0)))
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EBADF):
                log.warning("native-call supervisor could not answer: %s", exc)


_ANSWERS: dict[type, Callable[..., None]] = {
    N.Zero: Supervisor._zero, N.Value: Supervisor._value, N.StatOut: Supervisor._stat,
    N.StatxOut: Supervisor._statx, N.BytesOut: Supervisor._bytes, N.NewFd: Supervisor._install,
}


def _pack_stat(st: tuple) -> bytes:
    mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime, blksize, blocks, rdev = st
    a, m, c = divmod(atime, 1_000_000_000), divmod(mtime, 1_000_000_000), divmod(ctime, 1_000_000_000)
    return _STAT.pack(dev, ino, nlink, mode, uid, gid, 0, rdev, size, blksize, blocks,
                      a[0], a[1], m[0], m[1], c[0], c[1])


def _pack_statx(st: tuple) -> bytes:
    mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime, blksize, blocks, rdev = st
    a, m, c = divmod(atime, 1_000_000_000), divmod(mtime, 1_000_000_000), divmod(ctime, 1_000_000_000)
    return _STATX.pack(STATX_BASIC_STATS, blksize, 0, nlink, uid, gid, mode & 0xFFFF, ino, size, blocks, 0,
                       a[0], a[1], 0, 0, 0, 0, c[0], c[1], 0, m[0], m[1], 0,
                       os.major(rdev), os.minor(rdev), os.major(dev), os.minor(dev))


__all__ = ["Supervisor", "ChildMemory", "NOTIF_SIZE"]
