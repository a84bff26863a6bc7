"""The enclave's file descriptor table: one fd space with the descriptors C code sees.

Programs see small integers, allocated lowest-first as POSIX requires.  Each maps to an `OpenFile`: the host
handle plus what the enclave knows about it (kind, path, flags).  Two enclave fds made by `dup` share one
OpenFile, so they share the host's offset and status flags exactly as dup(2) shares an open file description,
and the host handle is closed when the last enclave fd goes.  FD_CLOEXEC is per fd and lives here too.

**One fd space.**  C code inside the enclave (numpy's tofile, Pillow, sqlite3, OpenSSL) is handed `fileno()`
and does its own I/O on that number.  If the number were only the enclave's bookkeeping, that I/O would land on
whatever real descriptor happens to carry it: the host's stdout, another open file, a database.  So, when the
backend gives a `NativeFds`, every enclave fd IS a real descriptor of the enclave's process that shares the
open file description of the host's handle (passed over the channel on the process backend, a duplicate on
sim).  Python-level I/O still goes through ocalls on the handle (traced, checked); native I/O uses the real
descriptor; both see one offset.  The enclave fd number is the real number, so the kernel's lowest-free rule
and the enclave's agree, and descriptors that native code opened itself are never handed out twice.

An entry without a real descriptor (a backend that cannot give one) is *virtual*: Python-level calls work on
it, and `fileno()` refuses (`io.UnsupportedOperation`) rather than give C code a number that names another file.
"""

from __future__ import annotations

import errno
import fcntl as _fcntl_module
import io as _io
import posix as _posix
import threading
from collections.abc import Callable
from dataclasses import dataclass
from operator import index as _index
from types import SimpleNamespace
from typing import Any, Protocol

from ocall_bridge.calls import CALLS

from .errors import oserror

# Real descriptor operations, captured before any interposition (this module is never rewritten anyway).
_close, _dup2, _fchdir = _posix.close, _posix.dup2, _posix.fchdir
_UnsupportedOperation = _io.UnsupportedOperation
_fcntl, _F_DUPFD_CLOEXEC, _F_GETFD = _fcntl_module.fcntl, _fcntl_module.F_DUPFD_CLOEXEC, _fcntl_module.F_GETFD


def _dup_at_least(fd: int, lowest: int) -> int:
    return _fcntl(fd, _F_DUPFD_CLOEXEC, lowest)


def follow_cwd(fd: int) -> None:
    """Make the process's real cwd the directory `fd` (an enclave fd that is a real descriptor).  Here, in a module
    the Python-level wall trusts, because fchdir raises the audited "os.chdir" event."""
    _fchdir(fd)


def real_fd_open(fd: int) -> bool:
    """Whether `fd` is an open descriptor of this process."""
    try:
        _fcntl(fd, _F_GETFD)
    except OSError:
        return False
    return True


class NativeFds(Protocol):
    """What a backend offers so that enclave fds are real descriptors (see the module docstring)."""

    def fd_for(self, handle: int) -> int | None:
        """A real descriptor, owned by the enclave from now on, for a handle the host just issued; None if
        this handle has none (the entry stays virtual).  May raise OSError (a host violation)."""

    def reserved(self, fd: int) -> bool:
        """True if real `fd` belongs to the runtime or the host and must never be replaced (dup2 onto it)."""

    def same_file(self, a: int, b: int) -> bool:
        """Whether two real descriptors name the same open file (used to adopt the host's stdio on sim)."""


@dataclass(eq=False)
class OpenFile:
    handle: int
    kind: str  # "file", "dir", "socket", "pipe", "stdio"
    path: bytes | None = None  # absolute, as resolved at open: dir_fd and fchdir resolve against it
    flags: int = 0
    refs: int = 0


class FdTable:
    def __init__(self, close_handle: Callable[[int], None], native: NativeFds | None = None,
                 ocall: Any = None) -> None:
        self._fds: dict[int, OpenFile] = {}
        self._cloexec: set[int] = set()
        # Enclave fds that are real descriptors: owned ones (closed with the enclave fd), and borrowed ones
        # (sim: the process's own stdio, adopted because it is the very file the host's handle names; closing
        # the enclave fd must not close the process's).  Every other entry is virtual.
        self._real: set[int] = set()
        self._borrowed: set[int] = set()
        self._close_handle = close_handle
        self._lock = threading.RLock()
        self.native = native
        # The ocalls with enclave fds where the table has host handles (fd_stubs): `fds.stubs.read(fd, n)`.
        self.stubs = fd_stubs(ocall, self) if ocall is not None else SimpleNamespace()

    # -- allocation ----------------------------------------------------------------------------------------
    def add(self, of: OpenFile, lowest: int = 0, cloexec: bool = True) -> int:
        """A new enclave fd >= lowest for `of` (a new handle's OpenFile, or one already in the table: dup)."""
        with self._lock:
            real = self._source(of)
            if real is not None:
                fd = real if of.refs == 0 else _dup_at_least(real, lowest)
                if fd < lowest:
                    moved = _dup_at_least(fd, lowest)
                    _close(fd)
                    fd = moved
                stale = self._fds.get(fd)
                if stale is not None:
                    # The kernel reused a number the table still had: native code closed an enclave fd behind
                    # the table's back.  That entry's descriptor is gone; forget it.
                    self._forget(fd, stale)
                self._real.add(fd)
            else:
                fd = lowest
                fds, native = self._fds, self.native
                # A virtual number must not be a real descriptor either, or C code given it would find another file.
                while fd in fds or (native is not None and real_fd_open(fd)):
                    fd += 1
            return self._place(fd, of, cloexec)

    def place(self, fd: int, of: OpenFile, cloexec: bool = True) -> int:
        """Put `of` at exactly `fd` (dup2), closing what was there."""
        native = self.native
        with self._lock:
            old = self._fds.pop(fd, None)
            if old is not None:
                self._cloexec.discard(fd)
            owned = fd in self._real
            protected = fd in self._borrowed or (old is None and native is not None and native.reserved(fd))
            self._real.discard(fd)
            self._borrowed.discard(fd)
            source = self._source(of)
            if source is not None and protected:
                # The runtime's own channel, or (sim) a descriptor of the host process: never replaced.  A new
                # stdio handle naming that very file is adopted as it is; anything else lives there virtually.
                if of.refs == 0 and native is not None and native.same_file(source, fd):
                    self._borrowed.add(fd)
                if of.refs == 0:
                    _close(source)
            elif source is not None:
                if source != fd:
                    _dup2(source, fd, False)  # atomically replaces what the old entry held there
                    if of.refs == 0:
                        _close(source)
                self._real.add(fd)
            elif owned:
                _close_quietly(fd)
            self._place(fd, of, cloexec)
        if old is not None:
            self._release(old)
        return fd

    def _source(self, of: OpenFile) -> int | None:
        """A real descriptor for `of`: the backend's for a new handle, else one of its enclave fds; or None."""
        if self.native is None:
            return None
        if of.refs == 0:
            return self.native.fd_for(of.handle)
        for fd, other in self._fds.items():
            if other is of and (fd in self._real or fd in self._borrowed):
                return fd
        return None

    def _place(self, fd: int, of: OpenFile, cloexec: bool) -> int:
        of.refs += 1
        self._fds[fd] = of
        if cloexec:
            self._cloexec.add(fd)
        else:
            self._cloexec.discard(fd)
        return fd

    def _forget(self, fd: int, of: OpenFile) -> None:
        self._fds.pop(fd, None)
        self._cloexec.discard(fd)
        self._real.discard(fd)
        self._borrowed.discard(fd)
        of.refs -= 1
        if of.refs == 0:
            self._close_handle(of.handle)

    # -- lookup --------------------------------------------------------------------------------------------
    def get(self, fd: int) -> OpenFile:
        of = self._fds.get(fd)
        if of is None:
            if not isinstance(fd, int):
                # What the native int converter says of a str, None or float fd (only on the failure path).
                return self.get(_index(fd))
            raise oserror(errno.EBADF)
        return of

    def is_native(self, fd: int) -> bool:
        """Whether C code may be given `fd`: it is a real descriptor naming this very open file."""
        return fd in self._real or fd in self._borrowed

    def fileno(self, fd: int) -> int:
        """`fd` for a `fileno()` that C code may act on; refused (never a number naming another file) if the
        entry is virtual.  UnsupportedOperation is what io raises where no descriptor exists (BytesIO), so
        numpy, Pillow and the like fall back to the object's read/write methods."""
        if fd in self._real or fd in self._borrowed or fd not in self._fds:
            return fd
        raise _UnsupportedOperation(f"posix_shim: enclave fd {fd} has no real descriptor in this process, so it "
                                    "cannot be handed to native code (use the file object's read/write)")

    # -- release -------------------------------------------------------------------------------------------
    def close(self, fd: int) -> None:
        with self._lock:
            of = self._fds.pop(fd, None)
            if of is not None:
                self._cloexec.discard(fd)
                self._borrowed.discard(fd)
                if fd in self._real:
                    self._real.discard(fd)
                    _close_quietly(fd)
        if of is None:
            if not isinstance(fd, int):
                return self.close(_index(fd))
            raise oserror(errno.EBADF)
        self._release(of)

    def close_all(self) -> None:
        """The enclave is finished: close every real descriptor it owns (the host closes its handles)."""
        with self._lock:
            real, self._real = self._real, set()
            self._fds, self._borrowed = {}, set()
            self._cloexec.clear()
        for fd in real:
            _close_quietly(fd)

    def _release(self, of: OpenFile) -> None:
        of.refs -= 1
        if of.refs == 0:
            self._close_handle(of.handle)

    def cloexec(self, fd: int) -> bool:
        self.get(fd)
        return fd in self._cloexec

    def set_cloexec(self, fd: int, value: bool) -> None:
        self.get(fd)
        (self._cloexec.add if value else self._cloexec.discard)(fd)

    def fds(self) -> list[int]:
        return sorted(self._fds)

    def __contains__(self, fd: int) -> bool:
        return fd in self._fds


def _close_quietly(fd: int) -> None:
    try:
        _close(fd)
    except OSError:
        pass


def fd_stubs(ocall: Any, table: FdTable) -> SimpleNamespace:
    """The stubs of every ocall with handle parameters, taking enclave fds there (calls.Call.fd_params).

    The enclave's functions are written against the program's fds; the wire carries the host's handles.  This
    translation is derived from the table, never written per call: each fd is looked up in `table` (EBADF for
    one it does not hold, before anything leaves), then the stub of the same name in `ocall` is called with the
    handle.  The stub is looked up on each call, so a tracer that wraps `rt.ocall` sees these calls too.  A stub
    whose answer is bytes also has `.into(buffer, fd, ...)`: the answer lands in the caller's buffer.
    """
    get = table.get
    stubs = {}
    for c in CALLS:
        fds = c.fd_params
        if c.number is not None and fds:
            stubs[c.name] = _fd_stub(ocall, c.name, fds, get, hasattr(getattr(ocall, c.name), "into"))
    return SimpleNamespace(**stubs)


def _fd_stub(ocall: Any, name: str, fds: tuple[int, ...], get: Callable[[int], OpenFile], into: bool) -> Any:
    def first(fd: int, *args: Any) -> Any:  # nearly every one: one fd, first
        return getattr(ocall, name)(get(fd).handle, *args)

    def several(*args: Any) -> Any:
        handles = list(args)
        for i in fds:
            handles[i] = get(args[i]).handle
        return getattr(ocall, name)(*handles)

    stub: Any = first if fds == (0,) else several

    if into:
        def into_buffer(buffer: Any, fd: int, *args: Any) -> int:
            handle = get(fd).handle
            inner = getattr(ocall, name)
            direct = getattr(inner, "into", None)  # a tracer's wrapper has none: then through a bytes answer
            if direct is not None:
                return direct(buffer, handle, *args)
            data = inner(handle, *args)
            buffer[:len(data)] = data
            return len(data)

        stub.into = into_buffer
    stub.__name__ = name
    stub.__qualname__ = f"fd_stubs.{name}"
    return stub
