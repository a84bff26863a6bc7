"""Readiness inside the enclave: `select.select`, `select.poll`, `select.epoll` and `selectors`, on the poll ocall.

All three are served by one ocall, poll(2) over host handles, with the semantics of each kept: select raises
EBADF for a closed fd and returns the caller's own objects; poll answers POLLNVAL for one; epoll watches the open
file (a registration survives closing one of two dup'ed fds, and disappears with the last), refuses regular
files with EPERM, and supports EPOLLONESHOT.  epoll is an emulation (level-triggered; EPOLLET is refused with
ENOSYS rather than silently served level-triggered), and has no descriptor of its own.

`selectors` captured `select.poll`, `select.epoll` and `select.select` in its class bodies at import, where
interposition by identity cannot reach; its three Linux classes are therefore replaced by subclasses that name
the enclave's versions (and `DefaultSelector`, the same object as `EpollSelector`, with them).  The rest of
selectors, and so asyncio, socketserver and http.server, is CPython's own code.
"""

from __future__ import annotations

import errno
import math
import select as _select
import selectors as _selectors
import threading
from collections.abc import Iterable
from typing import Any

from ocall_bridge import originals
from ocall_bridge.calls import uses

from . import runtime
from .errors import Unsupported, oserror
from .fdtable import OpenFile
from .socket_values import _lie

_monotonic = originals.get("time", "monotonic")
POLLIN, POLLPRI, POLLOUT = _select.POLLIN, _select.POLLPRI, _select.POLLOUT
POLLERR, POLLHUP, POLLNVAL = _select.POLLERR, _select.POLLHUP, _select.POLLNVAL
POLLRDNORM, POLLRDBAND = _select.POLLRDNORM, _select.POLLRDBAND
POLLWRNORM, POLLWRBAND = _select.POLLWRNORM, _select.POLLWRBAND
EPOLLET, EPOLLONESHOT = _select.EPOLLET, _select.EPOLLONESHOT
EPOLLEXCLUSIVE = getattr(_select, "EPOLLEXCLUSIVE", 1 << 28)
_EVENT_BITS = 0xFFFF  # what poll(2) carries; epoll's flag bits above it are served here
_ALWAYS = POLLERR | POLLHUP | POLLNVAL
# Linux's select(2) in terms of poll bits (fs/select.c POLLIN_SET / POLLOUT_SET / POLLEX_SET).
_IN_SET = POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR
_OUT_SET = POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR
_EX_SET = POLLPRI
_EPOLL_REFUSES = "EPOLLET, and fromfd()/fileno(): the emulated epoll has no descriptor"
_MAX_MS = 2**31 - 1


def _fd_of(obj: Any) -> int:
    """CPython's PyObject_AsFileDescriptor."""
    if isinstance(obj, int):
        fd = obj
    else:
        meth = getattr(obj, "fileno", None)
        if meth is None:
            raise TypeError("argument must be an int, or have a fileno() method.")
        fd = meth()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def _ms(timeout: float | None) -> int:
    if timeout is None:
        return -1
    return min(_MAX_MS, max(0, math.ceil(timeout * 1000)))


def poll_handles(entries: list[tuple[int, int]], timeout: float | None) -> dict[int, int]:
    """{index: revents} for (handle, events) entries, waiting up to `timeout` seconds (None: forever).

    Retries on EINTR with the time left (PEP 475), and checks the answer: an index must name an entry, once, and
    revents may hold only what was asked plus POLLERR/POLLHUP/POLLNVAL.
    """
    ocall = runtime.RT.ocall.poll
    deadline = None if timeout is None else _monotonic() + timeout
    while True:
        ms = -1 if deadline is None else _ms(deadline - _monotonic())
        try:
            answer = ocall(entries, ms)
        except InterruptedError:
            continue
        # Done when something is ready or the time is up; a wait longer than one poll(2) can make goes on.
        if answer or deadline is None or deadline - _monotonic() <= 0:
            break
    out: dict[int, int] = {}
    for index, revents in answer:
        if index >= len(entries) or index in out:
            raise _lie("poll", f"index {index} for a request of {len(entries)} entries")
        if revents & ~(entries[index][1] | _ALWAYS):
            raise _lie("poll", f"revents {revents:#x} for events {entries[index][1]:#x}")
        out[index] = revents
    return out


def _open_file(fd: int) -> OpenFile | None:
    return runtime.RT.fds._fds.get(fd)


# -- select.select -----------------------------------------------------------------------------------------


@uses("poll")
def select(rlist: Iterable[Any], wlist: Iterable[Any], xlist: Iterable[Any], timeout: float | None = None,
           /) -> tuple[list, list, list]:
    if timeout is not None:
        if not isinstance(timeout, int | float):
            raise TypeError("timeout must be a float or None")
        if math.isnan(timeout):
            raise ValueError("Invalid value NaN (not a number)")
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    masks = (_IN_SET, _OUT_SET, _EX_SET)
    wanted: dict[int, int] = {}
    fds_of: list[list[int]] = []
    groups: list[list[Any]] = []
    for seq, mask in zip((rlist, wlist, xlist), (POLLIN, POLLOUT, POLLPRI), strict=True):
        # CPython's seq2set walks a list in place, re-reading its length: a fileno() that shrinks the list ends
        # the walk early, and only the objects walked count (test_select's test_select_mutated).
        live = seq if isinstance(seq, list | tuple) else list(seq)
        objs, fds = [], []
        i = 0
        while i < len(live):
            o = live[i]
            fds.append(_fd_of(o))
            objs.append(o)
            i += 1
        groups.append(objs)
        for fd in fds:
            if fd >= 1024:
                raise ValueError("filedescriptor out of range in select()")
            wanted[fd] = wanted.get(fd, 0) | mask
        fds_of.append(fds)
    order = list(wanted)
    entries = []
    for fd in order:
        of = _open_file(fd)
        if of is None:
            raise oserror(errno.EBADF)
        entries.append((of.handle, wanted[fd]))
    ready = poll_handles(entries, timeout)
    revents = {order[i]: ev for i, ev in ready.items()}
    if any(ev & POLLNVAL for ev in revents.values()):
        raise oserror(errno.EBADF)
    return tuple([o for o, fd in zip(objs, fds, strict=True) if revents.get(fd, 0) & mask]  # type: ignore[return-value]
                 for objs, fds, mask in zip(groups, fds_of, masks, strict=True))


# -- select.poll -------------------------------------------------------------------------------------------


def _eventmask(mask: int) -> int:
    mask = mask.__index__()
    if mask < 0 or mask > 0xFFFF:
        raise OverflowError("Python int too large for C unsigned short" if mask > 0
                            else "can't convert negative int to unsigned")
    return mask


@uses("poll")
class poll:  # select.poll: a class rather than a factory, so selectors' _selector_cls is it
    """The object select.poll() returns."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}
        self._busy = threading.Lock()

    def register(self, fd: Any, eventmask: int = POLLIN | POLLPRI | POLLOUT) -> None:
        self._fds[_fd_of(fd)] = _eventmask(eventmask)

    def modify(self, fd: Any, eventmask: int) -> None:
        n = _fd_of(fd)
        if n not in self._fds:
            raise oserror(errno.ENOENT)
        self._fds[n] = _eventmask(eventmask)

    def unregister(self, fd: Any) -> None:
        del self._fds[_fd_of(fd)]

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        if timeout is not None:
            if not isinstance(timeout, int | float):
                raise TypeError(f"'{type(timeout).__name__}' object cannot be interpreted as an integer")
            timeout = None if timeout < 0 else timeout / 1000.0  # milliseconds here
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("concurrent poll() invocation")
        try:
            order = list(self._fds.items())
            entries = []
            stale: list[int] = []
            for i, (fd, events) in enumerate(order):
                of = _open_file(fd)
                if of is None:
                    stale.append(i)  # a closed fd is "ready" with POLLNVAL, as poll(2) answers
                    entries.append((0, events))
                else:
                    entries.append((of.handle, events))
            if stale:
                live = [i for i in range(len(order)) if i not in stale]
                ready = {live[j]: ev for j, ev in poll_handles([entries[i] for i in live], 0).items()}
                ready.update({i: POLLNVAL for i in stale})
            else:
                ready = poll_handles(entries, timeout)
            return [(order[i][0], ready[i]) for i in sorted(ready)]
        finally:
            self._busy.release()


# -- select.epoll ------------------------------------------------------------------------------------------


@uses("poll", "fstat", partial=_EPOLL_REFUSES)
class epoll:  # the name Python gives it
    """select.epoll, emulated over the poll ocall (level-triggered, EPOLLONESHOT served, EPOLLET refused)."""

    def __init__(self, sizehint: int = -1, flags: int = 0) -> None:
        if sizehint != -1 and sizehint <= 0:
            raise ValueError("negative sizehint")
        # fd -> [open file watched, event mask, armed]
        self._reg: dict[int, list[Any]] = {}
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def fromfd(cls, fd: int) -> epoll:
        raise Unsupported("epoll.fromfd", "the enclave's epoll is emulated and has no descriptor")

    def _check(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed epoll object")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._reg.clear()

    def fileno(self) -> int:
        self._check()
        raise Unsupported("epoll.fileno", "the enclave's epoll is emulated and has no descriptor")

    def __enter__(self) -> epoll:
        self._check()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _watched(self, fd: int) -> OpenFile:
        of = _open_file(fd)
        if of is None:
            raise oserror(errno.EBADF)
        return of

    def register(self, fd: Any, eventmask: int = POLLIN | POLLPRI | POLLOUT) -> None:
        self._check()
        n = _fd_of(fd)
        mask = eventmask.__index__() & 0xFFFFFFFF
        if mask & EPOLLET:
            raise Unsupported("epoll.register", "edge-triggered EPOLLET is not served (level-triggered only)")
        of = self._watched(n)
        if of.kind not in ("socket", "pipe"):
            # epoll_ctl refuses regular files and directories with EPERM (poll and select call them ready).
            import stat

            if runtime.RT.ocall.fstat(of.handle)[0] & 0o170000 in (stat.S_IFREG, stat.S_IFDIR):
                raise oserror(errno.EPERM)
        with self._lock:
            current = self._reg.get(n)
            if current is not None and current[0].refs > 0:
                raise oserror(errno.EEXIST)
            self._reg[n] = [of, mask, True]

    def modify(self, fd: Any, eventmask: int) -> None:
        self._check()
        n = _fd_of(fd)
        mask = eventmask.__index__() & 0xFFFFFFFF
        if mask & EPOLLET:
            raise Unsupported("epoll.modify", "edge-triggered EPOLLET is not served (level-triggered only)")
        self._watched(n)
        with self._lock:
            current = self._reg.get(n)
            if current is None or current[0].refs == 0:
                raise oserror(errno.ENOENT)
            current[1], current[2] = mask, True

    def unregister(self, fd: Any) -> None:
        self._check()
        n = _fd_of(fd)
        self._watched(n)
        with self._lock:
            current = self._reg.pop(n, None)
        if current is None or current[0].refs == 0:
            raise oserror(errno.ENOENT)

    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]:
        self._check()
        if timeout is not None:
            if not isinstance(timeout, int | float):
                raise TypeError("timeout must be an integer or None")
            if timeout < 0:
                timeout = None
        if maxevents == -1:
            maxevents = 2**31 - 1
        elif maxevents < 1:
            raise ValueError(f"maxevents must be greater than 0, got {maxevents}")
        with self._lock:
            # Registrations whose open file was closed everywhere are gone, as the kernel drops them.
            for n in [n for n, r in self._reg.items() if r[0].refs == 0]:
                del self._reg[n]
            watched = [(n, r) for n, r in self._reg.items() if r[2]]
        entries = [(r[0].handle, r[1] & _EVENT_BITS) for _, r in watched]
        ready = poll_handles(entries, timeout)
        out = []
        with self._lock:
            for i in sorted(ready)[:maxevents]:
                n, r = watched[i]
                out.append((n, ready[i] & ~POLLNVAL))
                if r[1] & EPOLLONESHOT:
                    r[2] = False
        return out


# -- selectors ---------------------------------------------------------------------------------------------


@uses("poll")
class SelectSelector(_selectors.SelectSelector):
    _select = staticmethod(select)


@uses("poll")
class PollSelector(_selectors.PollSelector):
    _selector_cls = poll


@uses("poll", "fstat", partial=_EPOLL_REFUSES)
class EpollSelector(_selectors.EpollSelector):
    _selector_cls = epoll


for _cls in (SelectSelector, PollSelector, EpollSelector):
    _cls.__module__ = "selectors"
    _cls.__qualname__ = _cls.__name__

_real_set_wakeup_fd = originals.get("_signal", "set_wakeup_fd")


@uses(partial="an enclave fd with no real descriptor in this process")
def set_wakeup_fd(fd: int, /, *, warn_on_full_buffer: bool = True) -> int:
    """signal.set_wakeup_fd on an enclave fd (asyncio's add_signal_handler; its self-pipe socket).

    CPython's C signal handler writes the signal number straight to the descriptor *number* it was given, with no
    Python in between.  That is safe exactly when the enclave fd is a real descriptor of this process naming the
    same open file as the host's handle (the one fd space, fdtable.py): the byte lands in the enclave's own
    socket, where the program's selector sees it.  A virtual fd would make C write to whatever real descriptor
    carries that number (on the process backend possibly the channel to the host), so it is refused.  The
    previous value is the enclave fd given before (-1 for none), as natively.
    """
    rt = runtime.RT
    previous = rt.extra.get("poll.wakeup_fd", -1)
    fd = _index_fd(fd)
    if fd != -1:
        rt.fds.get(fd)  # EBADF for a number the enclave does not hold, before anything reaches C
        if not rt.fds.is_native(fd):
            raise Unsupported("signal.set_wakeup_fd", f"enclave fd {fd} has no real descriptor in this process, "
                                                      "so the signal handler could not write to it")
    _real_set_wakeup_fd(fd, warn_on_full_buffer=warn_on_full_buffer)  # ValueError off the main thread, as natively
    rt.extra["poll.wakeup_fd"] = fd
    return previous


def _index_fd(fd: Any) -> int:
    if isinstance(fd, float) or not hasattr(type(fd), "__index__"):
        raise TypeError(f"'{type(fd).__name__}' object cannot be interpreted as an integer")
    return fd.__index__()


PATCHES: dict[Any, Any] = {
    **originals.patches("_signal", {"set_wakeup_fd": set_wakeup_fd}),
    **originals.patches("select", {"select": select, "poll": poll, "epoll": epoll}),
    **originals.patches("selectors", {
        "SelectSelector": SelectSelector,
        "PollSelector": PollSelector,
        "EpollSelector": EpollSelector,  # also selectors.DefaultSelector
    }),
}
