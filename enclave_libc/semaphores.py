"""multiprocessing's SemLock inside an enclave: a semaphore the host holds, shared with child enclaves by name.

Part of the `children` family (ocall_bridge/host/semaphores.py is the host side).  `_multiprocessing.SemLock` would
create a named semaphore in the host's /dev/shm from inside the enclave; here the host creates it (under a name
it prefixes) and the enclave holds a handle.  A child enclave that unpickles the lock (`SemLock._rebuild`, as
multiprocessing's spawn does) asks its own host to open the same name, so parent and children share one
semaphore across processes.  What is per process and per thread - a recursive lock's owner and depth, the
`_count` of acquisitions - is kept here, because the host serves each call on whichever of its threads is free.
"""

from __future__ import annotations

import _multiprocessing
import threading
from typing import Any

from ocall_bridge.calls import uses

from . import runtime
from .errors import Unsupported

RECURSIVE_MUTEX, SEMAPHORE = 0, 1
_get_ident = threading.get_ident


def _rt(call: str) -> runtime.EnclaveRuntime:
    rt = runtime.RT
    if not rt:
        raise Unsupported(call, "no enclave is active")
    return rt


@uses("sem_open", "sem_acquire", "sem_release", "sem_getvalue", "sem_unlink",
      partial="an unnamed semaphore (it cannot be shared with a child enclave), or no enclave active")
class SemLock:
    """`_multiprocessing.SemLock`, its semaphore held by the host."""

    SEM_VALUE_MAX = _multiprocessing.SemLock.SEM_VALUE_MAX

    def __init__(self, kind: int, value: int, maxvalue: int, name: str | None, unlink: bool) -> None:
        if kind not in (RECURSIVE_MUTEX, SEMAPHORE):
            raise ValueError("unrecognized kind")
        if name is None:
            raise Unsupported("multiprocessing.SemLock", "an unnamed semaphore cannot be shared with a child enclave")
        rt = _rt("multiprocessing.SemLock")
        try:
            self.handle = rt.ocall.sem_open(kind, value, maxvalue, name, True)
        except FileExistsError:
            raise
        self.kind, self.maxvalue, self.name = kind, maxvalue, name
        self._depth = 0
        self._owner = 0
        if unlink:
            rt.ocall.sem_unlink(name)

    @classmethod
    def _rebuild(cls, handle: Any, kind: int, maxvalue: int, name: str | None) -> SemLock:
        """The lock a parent enclave pickled: the same semaphore, opened by name through this enclave's host."""
        if name is None:
            raise Unsupported("multiprocessing.SemLock", "an unnamed semaphore cannot be shared with a child enclave")
        self = cls.__new__(cls)
        self.handle = _rt("multiprocessing.SemLock").ocall.sem_open(kind, 0, maxvalue, name, False)
        self.kind, self.maxvalue, self.name = kind, maxvalue, name
        self._depth = 0
        self._owner = 0
        return self

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        if self.kind == RECURSIVE_MUTEX and self._depth > 0 and self._owner == _get_ident():
            self._depth += 1
            return True
        ns = -1 if timeout is None else max(0, int(timeout * 1e9))
        if not _rt("multiprocessing.SemLock").ocall.sem_acquire(self.handle, bool(block), ns):
            return False
        self._depth += 1
        self._owner = _get_ident()
        return True

    def release(self) -> None:
        if self.kind == RECURSIVE_MUTEX:
            if self._depth == 0 or self._owner != _get_ident():
                raise AssertionError("attempt to release recursive lock not owned by thread")
            if self._depth > 1:
                self._depth -= 1
                return
        try:
            _rt("multiprocessing.SemLock").ocall.sem_release(self.handle)
        except OverflowError:
            raise ValueError("semaphore or lock released too many times") from None
        except OSError as exc:
            if exc.errno == 75:  # EOVERFLOW: the host's semaphore is at its maximum
                raise ValueError("semaphore or lock released too many times") from None
            raise
        self._depth -= 1

    __enter__ = acquire

    def __exit__(self, *args: Any) -> None:
        self.release()

    def _count(self) -> int:
        return self._depth

    def _is_mine(self) -> bool:
        return self._depth > 0 and self._owner == _get_ident()

    def _get_value(self) -> int:
        return _rt("multiprocessing.SemLock").ocall.sem_getvalue(self.handle)

    def _is_zero(self) -> bool:
        return self._get_value() == 0

    def _after_fork(self) -> None:
        self._depth = 0


@uses("sem_unlink", partial="any call with no enclave active")
def sem_unlink(name: str) -> None:
    """`_multiprocessing.sem_unlink`: the host unlinks the semaphore it made under that name."""
    _rt("multiprocessing.sem_unlink").ocall.sem_unlink(name)


__all__ = ["SemLock", "sem_unlink"]
