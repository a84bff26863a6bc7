"""multiprocessing's named semaphores, held by the host for an enclave and its child enclaves.

Part of the `children` family's host side (ocall_bridge/host/children.py imports these functions under their row
names).  A semaphore multiprocessing makes inside an enclave must be shared with the child enclaves its Pool or
ProcessPoolExecutor starts, which run in other processes under other hosts: so each host holds a *real* POSIX
named semaphore, and a child's host opens the same one by name.  The host chooses the real name: the enclave's
name behind a fixed prefix (`/posix_shim-`), so an enclave can reach only semaphores enclaves made, never another
program's.  The real object is always of the plain semaphore kind: the enclave's calls arrive on whichever host
thread serves them, so ownership (a recursive lock's owner and count) is kept inside the enclave
(enclave_libc/children.py), not here.
"""

from __future__ import annotations

import errno
import itertools
import threading
from typing import Any

from ..originals import multiprocessing
from .runtime import Host

PREFIX = "/posix_shim-"
SEMAPHORE = 1  # _multiprocessing's SEMAPHORE kind
SLICE = 0.2  # a blocking acquire waits in slices, so a host whose enclave is gone stops waiting


def real_name(name: str) -> str:
    stem = name.lstrip("/")
    if not stem or "/" in stem or "\0" in stem:
        raise OSError(errno.EINVAL, f"sem_open: {name!r} is not a semaphore name")
    return PREFIX + stem


def _table(host: Host) -> tuple[threading.Lock, dict[int, Any], Any]:
    table = getattr(host, "_semaphores", None)
    if table is None:
        table = host._semaphores = (threading.Lock(), {}, itertools.count(1))  # type: ignore[attr-defined]
    return table


def _get(host: Host, sem: int) -> Any:
    lock, sems, _ = _table(host)
    with lock:
        found = sems.get(sem)
    if found is None:
        raise OSError(errno.EINVAL, "not a semaphore of this enclave")
    return found


def sem_open(host: Host, kind: int, value: int, maxvalue: int, name: str, create: bool) -> int:
    if getattr(host, "child_launcher", None) is None:
        # A semaphore is for sharing with child enclaves: a host that starts none makes none (and leaves no name
        # behind in /dev/shm for a request it had no use for).
        raise OSError(errno.ENOSYS, "this host starts no child enclaves")
    full = real_name(name)
    if value > maxvalue or maxvalue > multiprocessing.SemLock.SEM_VALUE_MAX:
        raise OSError(errno.EINVAL, "sem_open: value out of range")
    if create:
        # unlink=False: the name lives until the program's own cleanup (synchronize.SemLock._cleanup) unlinks it.
        sem = multiprocessing.SemLock(SEMAPHORE, value, maxvalue, full, False)
    else:
        sem = multiprocessing.SemLock._rebuild(0, SEMAPHORE, maxvalue, full)  # by name: the handle is unused
    lock, sems, numbers = _table(host)
    with lock:
        number = next(numbers)
        sems[number] = sem
    return number


def sem_acquire(host: Host, sem: int, block: bool, timeout_ns: int) -> bool:
    s = _get(host, sem)
    if not block:
        return bool(s.acquire(False))
    remaining = None if timeout_ns < 0 else timeout_ns / 1e9
    while True:
        step = SLICE if remaining is None else min(SLICE, remaining)
        if s.acquire(True, step):
            return True
        if remaining is not None:
            remaining -= step
            if remaining <= 0:
                return False
        if host.gone.is_set():
            raise OSError(errno.EINTR, "the enclave is gone")


def sem_release(host: Host, sem: int) -> None:
    try:
        _get(host, sem).release()
    except ValueError:  # "semaphore or lock released too many times"
        raise OSError(errno.EOVERFLOW, "released too many times") from None


def sem_getvalue(host: Host, sem: int) -> int:
    return int(_get(host, sem)._get_value())


def sem_close(host: Host, sem: int) -> None:
    lock, sems, _ = _table(host)
    with lock:
        if sems.pop(sem, None) is None:
            raise OSError(errno.EINVAL, "not a semaphore of this enclave")


def sem_unlink(host: Host, name: str) -> None:
    multiprocessing.sem_unlink(real_name(name))


__all__ = ["PREFIX", "real_name", "sem_acquire", "sem_close", "sem_getvalue", "sem_open", "sem_release",
           "sem_unlink"]
