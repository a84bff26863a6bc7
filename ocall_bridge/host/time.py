"""Host side of the `time` family: the clocks and the sleep the enclave cannot have on its own.

An enclave has no trustworthy clock (SGX enclaves cannot even execute the vDSO's rdtsc path), so the time is
asked of the host.  The host answers honestly here; the enclave still checks every answer (a monotonic clock
never runs backwards, a sleep is never cut short), because another host might not.
"""

from __future__ import annotations

import errno

from ..originals import time
from .runtime import Host

# The clocks an enclave may read from the host.  The CPU-time clocks (PROCESS_CPUTIME_ID, THREAD_CPUTIME_ID)
# measure the enclave's own threads and are read inside it; the host's would measure the host.
CLOCKS = frozenset(
    getattr(time, name) for name in ("CLOCK_REALTIME", "CLOCK_MONOTONIC", "CLOCK_MONOTONIC_RAW",
                                     "CLOCK_REALTIME_COARSE", "CLOCK_MONOTONIC_COARSE", "CLOCK_BOOTTIME",
                                     "CLOCK_TAI")
    if hasattr(time, name)
)


def _clock(clock: int) -> int:
    if clock not in CLOCKS:
        raise OSError(errno.EINVAL, "clock not served to enclaves")
    return clock


def clock_gettime(host: Host, clock: int) -> int:
    return time.clock_gettime_ns(_clock(clock))


def clock_getres(host: Host, clock: int) -> int:
    # clock_getres answers seconds as a float; the table carries integer nanoseconds (at least 1).
    return max(1, round(time.clock_getres(_clock(clock)) * 1_000_000_000))


def sleep(host: Host, ns: int) -> int:
    """Sleep at least `ns` nanoseconds of CLOCK_MONOTONIC and say how long it really was.

    Runs on the calling thread in sim (so a signal to the program interrupts it, as natively) and on a worker
    thread of the process backend's host.  time.sleep already sleeps to an absolute monotonic deadline; the
    loop only guards against a float rounding a nanosecond short, so an honest host never answers less.
    """
    start = time.monotonic_ns()
    elapsed = 0
    while elapsed < ns:
        # Waiting on the host's `gone` event rather than time.sleep: a sleep ends when the enclave goes.
        if host.gone.wait((ns - elapsed) / 1e9):
            raise OSError(errno.EINTR, "the enclave is gone")
        elapsed = time.monotonic_ns() - start
    if ns == 0:
        time.sleep(0)  # sleep(0) still yields the processor, as natively
    return elapsed
