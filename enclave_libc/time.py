"""Time inside the enclave: every clock read and every sleep comes from the host, and every answer is checked.

REALTIME and MONOTONIC are served from a cached clock (the host's last answer advanced by the enclave's own
counter, resynced by an ocall every RESYNC_NS) unless the run is strict; every other read and every sleep is an
ocall each time.

An enclave has no clock it can trust, and a seccomp filter cannot catch Python's clock reads (the vDSO answers
them without a syscall), so time is interposed here at the Python level: `time.time`, `time_ns`, `monotonic`,
`perf_counter`, `clock_gettime(_ns)` and `clock_getres` for the host's clocks, `sleep`, the "now" defaults of
`gmtime`/`localtime`/`ctime`/`asctime`/`strftime`, and `datetime.datetime.now`/`utcnow` (`date.today` already
calls `time.time`).  Modules that captured a clock at import (`threading`, `queue`, `asyncio`, `sched` take
`from time import monotonic`) are rewritten by the interposer like any other reference.

Checks on the host's answers (Iago attacks on time):
* a monotonic clock (MONOTONIC, MONOTONIC_RAW, MONOTONIC_COARSE, BOOTTIME) never runs backwards: an answer
  below one this enclave has already been given is refused.  The floor is read *before* the request leaves,
  so two threads racing cannot make an honest answer look old;
* a sleep never comes back early: the host must claim at least the time asked, and the enclave's own monotonic
  readings around it must agree (within EARLY_TOLERANCE_NS).
A violation raises `HostViolation` (OSError EIO), is logged and recorded like any other, and the lie is never
returned.  A host that lies *consistently* (a clock that runs fast) cannot be caught without a trusted time
source, which enclaves do not have; docs/time-env.md says so.

Sleeps are cut into slices of at most SLEEP_SLICE_NS, so a signal the program receives (Ctrl-C) is acted on
within one slice even when the host's sleep runs on another thread or in another process; in the sim backend
the host sleeps on the calling thread, where the signal interrupts it at once, as natively.

Not interposed, by decision: `process_time`/`thread_time` (CPU clocks of the enclave's own threads, read where
they run); lock, Condition and Event timeouts in `threading`, which wait in C on a futex of the enclave's own
memory with a kernel timeout (a real SGX runtime makes that wait an ocall too); `signal.alarm`/`setitimer`.
"""

from __future__ import annotations

import _datetime
import gc
import math
import operator
import sys
import threading
import time as _time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ocall_bridge import originals
from ocall_bridge.calls import uses
from ocall_bridge.errors import HostViolation

from . import runtime
from .errors import Unsupported

if TYPE_CHECKING:  # the module itself uses the C type (_datetime, no stub); this is the same class
    from datetime import datetime

# The real functions (the registry's), for the CPU clocks and for a replacement called with no enclave active.
_real = originals.time
_real_clock_gettime_ns, _real_clock_gettime = _real.clock_gettime_ns, _real.clock_gettime
_real_clock_getres, _real_sleep = _real.clock_getres, _real.sleep
_real_gmtime: Callable[[Any], _time.struct_time] = _real.gmtime
_real_localtime: Callable[[Any], _time.struct_time] = _real.localtime
_real_ctime = _real.ctime
_real_asctime, _real_strftime = _real.asctime, _real.strftime
_time_module_dict = _time.__dict__

CLOCK_REALTIME = _time.CLOCK_REALTIME
CLOCK_MONOTONIC = _time.CLOCK_MONOTONIC
# The clocks asked of the host (host/time.py serves the same set) and, among them, those that must never run
# backwards.  Every other clock id is a CPU clock of this process (served inside) or invalid (EINVAL).
HOST_CLOCKS = frozenset(getattr(_time, n) for n in (
    "CLOCK_REALTIME", "CLOCK_MONOTONIC", "CLOCK_MONOTONIC_RAW", "CLOCK_REALTIME_COARSE", "CLOCK_MONOTONIC_COARSE",
    "CLOCK_BOOTTIME", "CLOCK_TAI") if hasattr(_time, n))
MONOTONIC_CLOCKS = frozenset(getattr(_time, n) for n in (
    "CLOCK_MONOTONIC", "CLOCK_MONOTONIC_RAW", "CLOCK_MONOTONIC_COARSE", "CLOCK_BOOTTIME") if hasattr(_time, n))
CPU_CLOCKS = frozenset((_time.CLOCK_PROCESS_CPUTIME_ID, _time.CLOCK_THREAD_CPUTIME_ID))

SLEEP_SLICE_NS = 50_000_000  # the longest the enclave waits before its own code (signal handlers) runs again
EARLY_TOLERANCE_NS = 1_000_000  # how much earlier than asked a sleep may look before it is "absurdly early"
_NS = 1_000_000_000
_PYTIME_MAX = 2**63 - 1
# The C type CPython names in the error (3.13 made it public: PyTime_t).
_PYTIME_TOO_LARGE = f"timestamp too large to convert to C {'_' if sys.version_info < (3, 13) else ''}PyTime_t"
_MAX_NESTING = 3  # clock reads nested in clock reads (a violation being logged reads the time): see _ask


# The cached clock (every backend, unless the run is strict): REALTIME and MONOTONIC are asked of the host at most
# once per RESYNC_NS; in between, a read is the last answer advanced by the enclave's own monotonic counter (the
# stand-in for RDTSC, as in Gramine's calibrated-TSC clock).  The same code serves sim and process: only where the
# counter is read differs (the sim enclave shares the host's process), and docs/time-env.md states the trust this
# takes on each.  Whether a run is cached is the client's `cached_clock` (posix_shim/wiring.py decides it).
RESYNC_NS = 10_000_000
CACHED_CLOCKS = frozenset((CLOCK_REALTIME, CLOCK_MONOTONIC))
_own = _time.CLOCK_MONOTONIC  # read here, never asked of the host (vDSO: no system call, no ocall)


class ClockState:
    """What this enclave has been told so far: the floor of each monotonic clock (RT.extra["time"]), and, when the
    clock is cached, each cached clock's offset to the enclave's own counter with the counter's value at which the
    next read resyncs."""

    __slots__ = ("floor", "acquire", "release", "cached", "cache")

    def __init__(self, cached: bool = False) -> None:
        self.floor = {clock: 0 for clock in MONOTONIC_CLOCKS}  # Linux monotonic clocks start at >= 0
        # Raising the floor and replacing an offset are read-compare-writes: two threads must not interleave.
        lock = threading.Lock()
        self.acquire, self.release = lock.acquire, lock.release
        self.cached = cached
        self.cache: dict[int, tuple[int, int]] = {}  # clock -> (host's answer - own counter, own counter when due)


def _state(rt: runtime.EnclaveRuntime) -> ClockState:
    st = rt.extra.get("time")
    if st is None:
        st = rt.extra.setdefault("time", ClockState(bool(getattr(rt.client, "cached_clock", False))))
    return st


def _refuse(rt: runtime.EnclaveRuntime, call: str, problem: str) -> HostViolation:
    """A violation found by this module, reported exactly as the client reports those it finds itself
    (logged, counted in client.violations, and fatal when the enclave runs with violation='abort')."""
    refuse = getattr(rt.client, "_refuse", None)
    return refuse(call, problem) if refuse is not None else HostViolation(call, problem)


_nesting = threading.local()


def _ask(rt: runtime.EnclaveRuntime, clock: int) -> int:
    """One clock_gettime ocall, bounded against unending recursion.

    When the host lies, the client logs the violation, and logging reads time.time() - which is this module.
    A host that lies on every read would recurse until RecursionError; instead the third nested read on one
    thread is refused without asking.  (Two levels stay allowed: a signal handler reading the clock while the
    interrupted code was reading it is legitimate.)
    """
    depth = getattr(_nesting, "depth", 0)
    if depth >= _MAX_NESTING:
        raise HostViolation("clock_gettime", "the host went on lying while an earlier lie was being reported")
    _nesting.depth = depth + 1
    try:
        return rt.ocall.clock_gettime(clock)
    finally:
        _nesting.depth = depth


def _monotonic(rt: runtime.EnclaveRuntime, clock: int) -> int:
    st = rt.extra.get("time") or _state(rt)
    floor = st.floor[clock]  # read before the request leaves: any answer given earlier is <= the true time now
    ns = rt.ocall.clock_gettime(clock)
    if ns < floor:
        raise _refuse(rt, "clock_gettime", f"monotonic clock {clock} ran backwards: {ns} ns after {floor} ns")
    if ns > floor:
        st.acquire()  # not `with`: this is the hottest path of the module, and try/finally costs nothing
        try:
            if ns > st.floor[clock]:
                st.floor[clock] = ns
        finally:
            st.release()
    return ns


def _clock_ns(clock: int) -> int:
    rt = runtime.RT
    if not rt:
        return _real_clock_gettime_ns(clock)
    st = rt.extra.get("time") or _state(rt)
    if st.cached and clock in CACHED_CLOCKS:
        return _cached(rt, st, clock)
    if clock in MONOTONIC_CLOCKS:
        return _monotonic(rt, clock)
    return _ask(rt, clock)


def _cached(rt: runtime.EnclaveRuntime, st: ClockState, clock: int) -> int:
    """A cached clock read: the enclave's own counter plus the offset the host's last answer gave it, or a resync
    (an ocall, with all its checks) when RESYNC_NS have passed.  The readers of `time.time()` and friends inline
    this; both go to `_resync` when it is due."""
    now = _real_clock_gettime_ns(_own)
    cache = st.cache.get(clock)
    if cache is not None and now < cache[1]:
        return now + cache[0]
    return _resync(rt, st, clock, now, cache)


def _resync(rt: runtime.EnclaveRuntime, st: ClockState, clock: int, now: int, cache: tuple[int, int] | None) -> int:
    """Ask the host (checked as any read is) and derive the offset that cached reads add to the counter.

    MONOTONIC: every value a cached read finished before this one began is at most the counter now plus the
    current offset (the counter never goes back, the offset never goes down), so the floor is raised to that
    before asking, and an answer below anything the program may have seen is refused, as an uncached lie is.
    The offset then only grows: each resync's extrapolation lags the host's clock by its own round trip (the
    counter is read *after* the answer came), and the least lagging one is kept, so no read, in any thread, is
    below one handed out before it, and an honest host's next answer is never below what was handed out.
    REALTIME may be set backwards: its offset is the last answer's.
    """
    if cache is not None and getattr(_nesting, "depth", 0) > 0:
        # A lie is being reported (the log record reads time.time()): the last checked answer is extrapolated however
        # old it is, since asking again would hear the same lie and report the nesting, not the lie, to the program.
        return now + cache[0]
    if clock == CLOCK_MONOTONIC:
        st.acquire()
        try:
            # The offset of this moment, not the one this read found stale: another thread's resync may have
            # raised it since, and reads with it have been handed out.
            current = st.cache.get(clock)
            if current is not None and now + current[0] > st.floor[clock]:
                st.floor[clock] = now + current[0]
        finally:
            st.release()
        ns = _monotonic(rt, clock)
    else:
        ns = _ask(rt, clock)
    after = _real_clock_gettime_ns(_own)
    offset = ns - after
    st.acquire()
    try:
        old = st.cache.get(clock)
        if clock == CLOCK_MONOTONIC and old is not None and old[0] > offset:
            offset = old[0]
        st.cache[clock] = (offset, after + RESYNC_NS)
    finally:
        st.release()
    return ns


def _as_seconds(ns: int) -> float:
    # CPython's _PyTime_AsSecondsDouble: exact for whole seconds, else one division of the double.
    return ns / 1e9


def _clock_id(clk_id: Any) -> int:
    clock = operator.index(clk_id)
    if not -(2**31) <= clock < 2**31:
        raise OverflowError("signed integer is greater than maximum" if clock > 0
                            else "signed integer is less than minimum")
    return clock


def _gettime_clock_id(clk_id: Any) -> int:
    """clock_gettime[_ns]'s converter: 3.13 words every bad id (wrong type or out of range) as one TypeError."""
    if sys.version_info < (3, 13):
        return _clock_id(clk_id)
    try:
        return _clock_id(clk_id)
    except (TypeError, OverflowError):
        raise TypeError(f"clk_id should be integer, not {type(clk_id).__name__}") from None


# -- the clocks --------------------------------------------------------------------------------------------


def _reader(clock: int, name: str, ns: bool) -> Callable[[], Any]:
    """time.time/monotonic/perf_counter and their _ns forms: one host clock each, as seconds or nanoseconds.

    These are the reads programs make in loops (asyncio's scheduler, timeouts, logging), so the cached case is
    inlined: one Python frame per read, no lock (the offset only changes at a resync), the same checks at each
    resync; everything else, strict runs included, takes `_clock_ns`."""
    assert clock in CACHED_CLOCKS
    if ns:
        def read() -> Any:
            rt = runtime.RT
            if rt:
                st = rt.extra.get("time") or _state(rt)
                if st.cached:  # _cached, inlined
                    now = _real_clock_gettime_ns(_own)
                    cache = st.cache.get(clock)
                    if cache is not None and now < cache[1]:
                        return now + cache[0]
                    return _resync(rt, st, clock, now, cache)
            return _clock_ns(clock)
    else:
        def read() -> Any:
            rt = runtime.RT
            if rt:
                st = rt.extra.get("time") or _state(rt)
                if st.cached:  # _cached and _as_seconds, inlined
                    now = _real_clock_gettime_ns(_own)
                    cache = st.cache.get(clock)
                    if cache is not None and now < cache[1]:
                        return (now + cache[0]) / 1e9
                    return _resync(rt, st, clock, now, cache) / 1e9
            return _as_seconds(_clock_ns(clock))
    read.__name__ = read.__qualname__ = name
    return uses("clock_gettime")(read)


# On Linux, CPython's perf_counter *is* CLOCK_MONOTONIC (time.get_clock_info says so), and so it is here.
time, time_ns = _reader(CLOCK_REALTIME, "time", False), _reader(CLOCK_REALTIME, "time_ns", True)
monotonic, monotonic_ns = _reader(CLOCK_MONOTONIC, "monotonic", False), _reader(CLOCK_MONOTONIC, "monotonic_ns", True)
perf_counter = _reader(CLOCK_MONOTONIC, "perf_counter", False)
perf_counter_ns = _reader(CLOCK_MONOTONIC, "perf_counter_ns", True)


@uses("clock_gettime")
def clock_gettime_ns(clk_id: Any, /) -> int:
    clock = _gettime_clock_id(clk_id)
    if clock in HOST_CLOCKS:
        return _clock_ns(clock)
    # CPU clocks (and the negative ids of pthread_getcpuclockid) are the enclave's own; invalid ids get the
    # native EINVAL from the same place.
    return _real_clock_gettime_ns(clock)


@uses("clock_gettime")
def clock_gettime(clk_id: Any, /) -> float:
    clock = _gettime_clock_id(clk_id)
    if clock not in HOST_CLOCKS:
        return _real_clock_gettime(clock)
    sec, nsec = divmod(_clock_ns(clock), _NS)
    return sec + nsec * 1e-9  # CPython's own formula for clock_gettime (not the one time() uses)


@uses("clock_getres")
def clock_getres(clk_id: Any, /) -> float:
    clock = _clock_id(clk_id)
    rt = runtime.RT
    if clock not in HOST_CLOCKS or not rt:
        return _real_clock_getres(clock)
    sec, nsec = divmod(rt.ocall.clock_getres(clock), _NS)
    return sec + nsec * 1e-9


@uses(refused="an enclave cannot set the host's clock")
def clock_settime(clk_id: Any, time: Any, /) -> None:
    raise Unsupported("clock_settime", "an enclave cannot set the host's clock")


@uses(refused="an enclave cannot set the host's clock")
def clock_settime_ns(clk_id: Any, time: Any, /) -> None:
    raise Unsupported("clock_settime_ns", "an enclave cannot set the host's clock")


# -- sleep -------------------------------------------------------------------------------------------------


def _sleep_ns(secs: Any) -> int:
    """Nanoseconds for a sleep argument, with CPython's conversions and errors (rounded up, as it does)."""
    if isinstance(secs, float):
        if math.isnan(secs):
            raise ValueError("Invalid value NaN (not a number)")
        ns = secs * 1e9
        if math.isinf(ns) or not -(2**63) <= ns < 2**63:
            raise OverflowError("timestamp out of range for platform time_t")
        ns = math.ceil(ns)
    else:
        try:
            sec = operator.index(secs)
        except TypeError:
            raise TypeError(f"'{type(secs).__name__}' object cannot be interpreted as an integer") from None
        ns = sec * _NS
        if not -(2**63) <= ns <= _PYTIME_MAX:
            raise OverflowError(_PYTIME_TOO_LARGE)
    if ns < 0:
        raise ValueError("sleep length must be non-negative")
    return ns


@uses("sleep", "clock_gettime")
def sleep(secs: Any, /) -> None:
    ns = _sleep_ns(secs)
    rt = runtime.RT
    if not rt:
        return _real_sleep(secs)
    if ns == 0:
        rt.ocall.sleep(0)  # still a yield of the processor, on the host's side
        return None
    now = _monotonic(rt, CLOCK_MONOTONIC)
    deadline = now + ns
    while now < deadline:
        chunk = min(deadline - now, SLEEP_SLICE_NS)
        slept = rt.ocall.sleep(chunk)
        after = _monotonic(rt, CLOCK_MONOTONIC)
        if slept < chunk or after - now < chunk - EARLY_TOLERANCE_NS:
            raise _refuse(rt, "sleep", f"asked for {chunk} ns, the host answered after {after - now} ns of its "
                                       f"monotonic clock claiming {slept} ns")
        now = after
    return None


# -- calendar conversions whose default is "now" -----------------------------------------------------------


def _now_seconds() -> int:
    return _clock_ns(CLOCK_REALTIME) // _NS  # the C functions floor the current time to whole seconds


@uses("clock_gettime")
def gmtime(secs: Any = None, /) -> _time.struct_time:
    return _real_gmtime(_now_seconds() if secs is None else secs)


@uses("clock_gettime")
def localtime(secs: Any = None, /) -> _time.struct_time:
    return _real_localtime(_now_seconds() if secs is None else secs)


@uses("clock_gettime")
def ctime(secs: Any = None, /) -> str:
    return _real_ctime(_now_seconds() if secs is None else secs)


@uses("clock_gettime")
def asctime(t: Any = None, /) -> str:
    return _real_asctime(_real_localtime(_now_seconds()) if t is None else t)


@uses("clock_gettime")
def strftime(format: Any, t: Any = None, /) -> str:
    return _real_strftime(format, _real_localtime(_now_seconds()) if t is None else t)


# -- datetime ----------------------------------------------------------------------------------------------
#
# datetime.now() and utcnow() read the system clock in C, without going through the time module, and the C
# type's attributes cannot be assigned.  Their entries in the type's own dictionary are replaced once, at
# import, by methods that read the enclave's clock while interposition is installed and defer to the C
# originals otherwise (a host embedding the sim backend keeps its native datetime between enclave runs).
# `date.today()` and `datetime.today()` call `time.time()` themselves and need nothing.

_datetime_type, _tzinfo_type = _datetime.datetime, _datetime.tzinfo
_type_dict = gc.get_referents(_datetime_type.__dict__)[0]
_real_now, _real_utcnow = originals.get("_datetime.datetime", "now"), originals.get("_datetime.datetime", "utcnow")


def _inside() -> bool:
    installed = _time_module_dict.get("time")
    # The interposer may install the function itself or a staticmethod around it (builtins don't bind).
    return runtime.active() and getattr(installed, "__func__", installed) is time


@uses("clock_gettime")
def _now(cls: type[datetime], tz: Any = None) -> Any:
    if not _inside():
        return _real_now.__get__(None, cls)(tz)
    if tz is not None and not isinstance(tz, _tzinfo_type):
        raise TypeError(f"tzinfo argument must be None or of a tzinfo subclass, not type '{type(tz).__name__}'")
    sec, nsec = divmod(_clock_ns(CLOCK_REALTIME), _NS)
    usec = nsec // 1000  # C floors to microseconds
    if tz is None:
        return cls.fromtimestamp(sec).replace(microsecond=usec)
    return tz.fromutc(cls(*_real_gmtime(sec)[:6], usec, tz))


@uses("clock_gettime")
def _utcnow(cls: type[datetime]) -> Any:
    if not _inside():
        return _real_utcnow.__get__(None, cls)()
    sec, nsec = divmod(_clock_ns(CLOCK_REALTIME), _NS)
    return cls(*_real_gmtime(sec)[:6], nsec // 1000)


_now.__name__, _utcnow.__name__ = "now", "utcnow"
_now.__doc__, _utcnow.__doc__ = _real_now.__doc__, _real_utcnow.__doc__
_type_dict["now"], _type_dict["utcnow"] = classmethod(_now), classmethod(_utcnow)
sys._clear_type_cache()  # the method cache may still hold the C entries


# -- zoneinfo ----------------------------------------------------------------------------------------------
#
# The C accelerator `_zoneinfo` looks up `io.open` once, when it is first imported, and uses that forever: if
# the host had imported it, the enclave's tzdata reads would bypass the enclave's file calls; if the enclave
# imported it first, the host would be left calling the enclave's open.  The pure-Python implementation (the
# reference one, identical by PEP 615) opens files with the `open` of the moment, so the enclave uses it: when
# `_zoneinfo` is already loaded its class is swapped for the Python one inside the enclave, and when it is not,
# it is kept from loading at all.

PATCHES: dict[Any, Any] = {}

if "_zoneinfo" in sys.modules and sys.modules["_zoneinfo"] is not None:
    from zoneinfo import _zoneinfo as _py_zoneinfo  # type: ignore[attr-defined]  # private module, no stub

    PATCHES[sys.modules["_zoneinfo"].ZoneInfo] = _py_zoneinfo.ZoneInfo
else:
    sys.modules.setdefault("_zoneinfo", None)  # type: ignore[arg-type]  # `import _zoneinfo` -> ImportError


PATCHES.update(originals.patches("time", {
    "time": time,
    "time_ns": time_ns,
    "monotonic": monotonic,
    "monotonic_ns": monotonic_ns,
    "perf_counter": perf_counter,
    "perf_counter_ns": perf_counter_ns,
    "clock_gettime": clock_gettime,
    "clock_gettime_ns": clock_gettime_ns,
    "clock_getres": clock_getres,
    "clock_settime": clock_settime,
    "clock_settime_ns": clock_settime_ns,
    "sleep": sleep,
    "gmtime": gmtime,
    "localtime": localtime,
    "ctime": ctime,
    "asctime": asctime,
    "strftime": strftime,
}))

__all__ = ["PATCHES", "ClockState", "HOST_CLOCKS", "MONOTONIC_CLOCKS", "SLEEP_SLICE_NS", "EARLY_TOLERANCE_NS"]
