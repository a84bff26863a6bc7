"""One kind of small ocall in a tight loop, timed around a single ecall (`measure_roundtrip`).

Kept out of the runtime: the enclave imports `bench_loop` by name, and the runner only needs it when asked.
"""

from __future__ import annotations

import os
import time

from posix_shim.enclave import Enclave


def bench_loop(what: str, path: str, n: int) -> int:
    """Runs inside the enclave: n small ocalls of one kind (the host times the whole ecall)."""
    if what == "pread":
        fd = os.open(path, os.O_RDONLY)
        try:
            for _ in range(n):
                os.pread(fd, 16, 0)
        finally:
            os.close(fd)
    elif what == "stat":
        for _ in range(n):
            os.stat(path)
    else:
        raise ValueError(f"unknown benchmark {what!r}")
    return n


def measure_roundtrip(what: str = "pread", n: int = 20000, path: str | None = None,
                      backend: str = "process") -> dict[str, float]:
    """Microseconds per call of `what` (pread 16 B or stat) natively and inside an enclave, and their ratio.

    The enclave side is timed from the host around one ecall running `bench_loop`, so the ecall's own cost
    (~0.1 ms) is spread over n calls and the enclave's clock (an ocall itself) is never read.
    """
    path = path or os.path.abspath(__file__)
    t0 = time.perf_counter()
    bench_loop(what, path, n)
    native = (time.perf_counter() - t0) / n * 1e6
    with Enclave(backend=backend) as enclave:
        enclave.call("benchmarks.roundtrip:bench_loop", what, path, 100)  # warm up: imports, first calls
        t0 = time.perf_counter()
        enclave.call("benchmarks.roundtrip:bench_loop", what, path, n)
        inside = (time.perf_counter() - t0) / n * 1e6
    return {"native_us": native, "enclave_us": inside, "ratio": inside / native, "added_us": inside - native}


