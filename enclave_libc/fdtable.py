"""The enclave's file descriptor table.

Programs see small integers, allocated lowest-first as POSIX requires.  Each maps to an `OpenFile`: the host
handle plus what the enclave knows about it (kind, path, flags).  `dup` is served here: two enclave fds share one
OpenFile, so they share the host's offset and status flags exactly as dup(2) shares an open file description,
and the host handle is closed when the last enclave fd goes.  FD_CLOEXEC is per fd and lives here too.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass
from operator import index as _index

from .errors import oserror


@dataclass(eq=False)
class OpenFile:
    handle: int
    kind: str  # "file", "dir", "socket", "pipe", "stdio"
    path: bytes | None = None  # absolute, as resolved at open: dir_fd and fchdir resolve against it
    flags: int = 0
    refs: int = 0


class FdTable:
    def __init__(self, close_handle: Callable[[int], None]) -> None:
        self._fds: dict[int, OpenFile] = {}
        self._cloexec: set[int] = set()
        self._close_handle = close_handle
        self._lock = threading.Lock()

    def add(self, of: OpenFile, lowest: int = 0, cloexec: bool = True) -> int:
        with self._lock:
            fd = lowest
            fds = self._fds
            while fd in fds:
                fd += 1
            return self._place(fd, of, cloexec)

    def place(self, fd: int, of: OpenFile, cloexec: bool = True) -> int:
        """Put `of` at exactly `fd` (dup2), closing what was there."""
        with self._lock:
            old = self._fds.get(fd)
            self._place(fd, of, cloexec)
        if old is not None:
            self._release(old)
        return fd

    def _place(self, fd: int, of: OpenFile, cloexec: bool) -> int:
        of.refs += 1
        self._fds[fd] = of
        if cloexec:
            self._cloexec.add(fd)
        else:
            self._cloexec.discard(fd)
        return fd

    def get(self, fd: int) -> OpenFile:
        of = self._fds.get(fd)
        if of is None:
            if not isinstance(fd, int):
                # What the native int converter says of a str, None or float fd (only on the failure path).
                return self.get(_index(fd))
            raise oserror(errno.EBADF)
        return of

    def close(self, fd: int) -> None:
        with self._lock:
            of = self._fds.pop(fd, None)
            self._cloexec.discard(fd)
        if of is None:
            if not isinstance(fd, int):
                return self.close(_index(fd))
            raise oserror(errno.EBADF)
        self._release(of)

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
