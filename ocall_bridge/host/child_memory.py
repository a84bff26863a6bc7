"""The address space and descriptors of a stopped child thread, as the native-call supervisor reaches them.

The supervisor (`supervisor.py`) reads a forwarded syscall's memory arguments from here exactly once, writes the
structs it answers with back, and takes the child's descriptors with pidfd_getfd.  Reads and writes obey the
kernel's rules for the child's own memory (EFAULT on a bad address), so nothing here lets the host read or write
more of the child than the syscall itself could (cffi, ABI mode: no compiler).
"""

from __future__ import annotations

import errno
import threading
from typing import Any

from ..originals import os
from ..types import MAX_PATH
from . import preparsed_ffi

_PAGE = 4096
_FIRST_READ = 256
_ADDR_END = 1 << 63

_CDEF = """
ssize_t process_vm_writev(int pid, const uint64_t *local, unsigned long liovcnt,
                          const uint64_t *remote, unsigned long riovcnt, unsigned long flags);
long syscall(long number, int pidfd, int fd, unsigned int flags);
"""
# _CDEF as cffi's out-of-line ABI mode pre-parses it (`ffi.set_source(name, None)` + `emit_python_code`): loading
# it costs well under 1 ms, where importing cffi and parsing the cdef with pycparser cost ~30 ms of the host's
# start.  tests/test_supervisor.py regenerates it from _CDEF and fails if the two ever differ.
_PREPARSED = dict(
    _version=0x2601,
    _types=b"\x00\x00\x01\x0D\x00\x00\x09\x01\x00\x00\x07\x01\x00\x00\x07\x01\x00\x00\x08\x01\x00\x00\x00\x0F"
           b"\x00\x00\x0E\x0D\x00\x00\x07\x01\x00\x00\x0F\x03\x00\x00\x0A\x01\x00\x00\x08\x11\x00\x00\x0A\x01"
           b"\x00\x00\x0A\x01\x00\x00\x00\x0F\x00\x00\x1D\x01\x00\x00\x18\x01",
    _globals=(b"\x00\x00\x06\x23process_vm_writev", 0, b"\x00\x00\x00\x23syscall", 0),
)
SYS_PIDFD_GETFD = 438
_cffi: tuple[Any, Any] | None = None
_cffi_lock = threading.Lock()


def _make_ffi() -> Any:
    return preparsed_ffi.load("_posix_shim_child_memory", _PREPARSED, _CDEF)


def _bind() -> tuple[Any, Any]:
    global _cffi
    with _cffi_lock:
        if _cffi is None:
            ffi = _make_ffi()
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


__all__ = ["ChildMemory"]
