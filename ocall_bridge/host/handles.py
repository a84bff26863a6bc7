"""The host's handle table: the only host descriptors the enclave can name.

The enclave never sees a real file descriptor.  It gets opaque handle numbers that this table issued to it, and
a request naming any other number (the host's own sockets, its stdio, another enclave's files) fails with
EBADF.  Numbers are never reused while the table lives, so a stale handle cannot alias a newer file.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..originals import fcntl, os, socket


@dataclass(eq=False)
class Handle:
    number: int
    fd: int
    kind: str  # "file", "dir", "socket", "pipe", "stdio"
    path: bytes | None = None
    state: dict[str, Any] = field(default_factory=dict)  # per-handle host state (a directory iterator)


class HandleTable:
    def __init__(self) -> None:
        self._handles: dict[int, Handle] = {}
        self._next = 3  # handles 0-2 are never issued, so a raw stdio fd number is never a valid handle
        self._lock = threading.Lock()
        # Told of every handle issued: the process transport passes its descriptor to the enclave process.
        self.on_issue: Callable[[int], None] | None = None
        self.closed = False

    def add(self, fd: int, kind: str, path: bytes | None = None) -> int:
        with self._lock:
            if self.closed:
                # A call that completed after the enclave went (a FIFO open released at close): nobody can
                # use or close this descriptor any more.
                os.close(fd)
                raise OSError(errno.EBADF, "the enclave is gone")
            number = self._next
            self._next += 1
            self._handles[number] = Handle(number, fd, kind, path)
        if self.on_issue is not None:
            self.on_issue(number)
        return number

    def get(self, number: int) -> Handle:
        h = self._handles.get(number)
        if h is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return h

    def duplicate(self, number: int) -> int:
        """A new descriptor (close-on-exec) for the same open file as handle `number`: on sim, the enclave's own
        real descriptor for an enclave fd (one fd space; see enclave_libc/fdtable.py)."""
        return fcntl.fcntl(self.get(number).fd, fcntl.F_DUPFD_CLOEXEC, 0)

    def pop(self, number: int) -> Handle:
        with self._lock:
            h = self._handles.pop(number, None)
        if h is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return h

    def close_all(self) -> None:
        """Release every descriptor the enclave held: the enclave is gone or finalized."""
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
            self.closed = True
        for h in handles:
            it = h.state.pop("dir", None)
            if it is not None:
                it.close()
            if h.kind == "socket":
                # close(2) does not wake a thread blocked in accept/recv/send on the socket; shutdown does.
                try:
                    s = socket.socket(fileno=h.fd)  # the C type: nothing interposed
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    finally:
                        s.detach()
                except OSError:
                    pass
            try:
                os.close(h.fd)
            except OSError:
                pass

    def __len__(self) -> int:
        return len(self._handles)
