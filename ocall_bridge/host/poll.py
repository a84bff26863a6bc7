"""Host side of the `poll` family: poll(2) over the enclave's handles.

Handles that this host never issued (or that were closed) answer POLLNVAL, as poll(2) does for a bad descriptor,
so the enclave can tell which of its entries is stale.  Several entries may name one descriptor (two enclave fds
sharing a handle, one fd asked for reading and writing): the kernel sees each descriptor once, with the union of
the events, and every entry gets the answer filtered by its own events.
"""

from __future__ import annotations

import errno

from ..originals import select
from .runtime import Host

_ALWAYS = select.POLLERR | select.POLLHUP | select.POLLNVAL
_MAX_MS = 2**31 - 1  # poll(2) takes a C int: a longer wait is cut, and the enclave polls again


def poll(host: Host, fds: list[tuple[int, int]], timeout_ms: int) -> list[tuple[int, int]]:
    table = host.handles
    real: list[int | None] = []
    wanted: dict[int, int] = {}
    for number, events in fds:
        try:
            fd = table.get(number).fd
        except OSError:
            real.append(None)
            continue
        real.append(fd)
        wanted[fd] = wanted.get(fd, 0) | events
    invalid = real.count(None)
    p = select.poll()
    for fd, events in wanted.items():
        p.register(fd, events)
    # An invalid entry is "ready" (POLLNVAL), so the call does not wait, as poll(2) would not.
    timeout = 0 if invalid else None if timeout_ms < 0 else min(timeout_ms, _MAX_MS)
    wake = -1
    if timeout != 0:
        wake = host.wake_fd()  # readable once the enclave is gone: a wait never outlives it
        p.register(wake, select.POLLIN)
    revents = dict(p.poll(timeout)) if wanted or timeout != 0 else {}
    if wake >= 0 and revents.pop(wake, 0):
        raise OSError(errno.EINTR, "the enclave is gone")
    out = []
    for index, ((_, events), host_fd) in enumerate(zip(fds, real, strict=True)):
        if host_fd is None:
            out.append((index, select.POLLNVAL))
            continue
        ev = revents.get(host_fd, 0) & (events | _ALWAYS)
        if ev:
            out.append((index, ev))
    return out
