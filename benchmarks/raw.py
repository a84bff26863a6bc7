"""The bare cost of one ocall on the sim backend: an `OcallClient` stub over a `SimTransport`, no libc layer.

This is the figure the DESIGN budget names ("<= 1.5 us added per small ocall"): the stub encodes the request,
the host decodes it, re-checks ranges, resolves the handle, performs the real call and encodes the answer, and
the stub decodes and validates that answer.  The enclave libc's own work (fd table, path resolution, building an
os.stat_result) is measured separately by the `pread_16B` and `stat` figures.
"""

from __future__ import annotations

import os
import time

from ocall_bridge.client import OcallClient
from ocall_bridge.host.runtime import Host
from ocall_bridge.transport import SimTransport


def measure(name: str, n: int, path: str) -> tuple[int, int]:
    """(native ns, stub ns) for `n` calls of pread 16 B or stat on `path`, measured back to back."""
    host = Host()
    client = OcallClient(SimTransport(host))
    stubs = client.stubs
    clock = time.perf_counter_ns
    fd = os.open(path, os.O_RDONLY)
    handle = stubs.open(os.fsencode(path), os.O_RDONLY, 0)
    bpath = os.fsencode(path)
    try:
        if name == "ocall_pread_16B":
            pread, stub = os.pread, stubs.pread
            t0 = clock()
            for _ in range(n):
                pread(fd, 16, 0)
            t1 = clock()
            for _ in range(n):
                stub(handle, 16, 0)
            t2 = clock()
        elif name == "ocall_stat":
            stat, stub = os.stat, stubs.stat
            t0 = clock()
            for _ in range(n):
                stat(bpath)
            t1 = clock()
            for _ in range(n):
                stub(bpath)
            t2 = clock()
        else:
            raise ValueError(f"unknown raw benchmark {name!r}")
    finally:
        os.close(fd)
        stubs.close(handle)
        client.close()
    return t1 - t0, t2 - t1
