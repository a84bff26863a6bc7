"""Checks of meaning, derived from the table: what a well-formed frame may still get wrong.

`wire.py` guarantees a frame has the declared shape.  This module checks that the values make sense for the
call: ranges (`Int.lo/hi`), bounds tied to the request (`read` may not return more than `count` bytes, `write`
may not claim more than it was given), list lengths, the errnos a call may return, and the same rules inside
records.  The enclave runs `check_answer` on every answer (the host is untrusted: Iago attacks); the host runs
`check_request` on every request (the enclave is untrusted: sandbox view).

The checks are compiled once per call into a flat list of small closures, so a call with nothing to check
costs one empty loop.
"""

from __future__ import annotations

import errno as E
import socket as _socket
import stat as _stat
import struct
import threading
import time as _time
from collections.abc import Callable, Sequence
from functools import singledispatch
from typing import Any, NamedTuple

from . import calls as K
from . import types as T
from .calls import Call
from .errors import require

Check = Callable[[Sequence[Any], Sequence[Any]], str | None]  # (request args, values) -> problem or None


def first_problem(checks: Sequence[Check], a: Sequence[Any], v: Sequence[Any]) -> str | None:
    """The first problem the checks find in v (request args a), in their order, or None.  (The hot paths - the
    client's answer loop, the host's request loop, a record's nested checks - run the same loop inline.)"""
    for check in checks:
        problem = check(a, v)
        if problem:
            return problem
    return None


# Each check is one closure that reads its value straight from v[i]: a small call costs a handful of them on
# every ocall, on both sides, so they take no helper calls and format a message only on failure.


def _int_checks(name: str, t: T.Int, params: dict[str, int], i: int) -> list[Check]:
    checks: list[Check] = []
    lo, hi = t.lo, t.hi
    if lo is not None and hi is not None:
        checks.append(lambda a, v: None if lo <= v[i] <= hi else (
            f"{name}={v[i]} is below {lo}" if v[i] < lo else f"{name}={v[i]} is above {hi}"))
    elif lo is not None:
        checks.append(lambda a, v: None if v[i] >= lo else f"{name}={v[i]} is below {lo}")
    elif hi is not None:
        checks.append(lambda a, v: None if v[i] <= hi else f"{name}={v[i]} is above {hi}")
    if t.bound is not None:
        checks.append(_bound_check(name, t.bound, params, i, measure_len=False))
    return checks


def _bound_check(name: str, b: T.Bound, params: dict[str, int], i: int, measure_len: bool) -> Check:
    """v[i] (or len(v[i]) with measure_len) may not exceed the argument b.name (or its length)."""
    j = params[b.name]
    bname = b.name
    if b.kind == "arg":
        if measure_len:
            return lambda a, v: None if len(v[i]) <= a[j] else f"{name} is {len(v[i])}, more than {bname}={a[j]}"
        return lambda a, v: None if v[i] <= a[j] else f"{name} is {v[i]}, more than {bname}={a[j]}"
    if measure_len:
        return lambda a, v: (None if len(v[i]) <= len(a[j])
                             else f"{name} is {len(v[i])}, more than the {len(a[j])} bytes of {bname}")
    return lambda a, v: (None if v[i] <= len(a[j])
                         else f"{name} is {v[i]}, more than the {len(a[j])} bytes of {bname}")


def _code_range(code: str) -> tuple[int, int]:
    bits = 8 * struct.calcsize("<" + code)
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if code.islower() else (0, (1 << bits) - 1)


def _fuse(ranges: list[tuple[int, int, int]], others: list[Check], ordered: list[Check]) -> list[Check]:
    """The range checks of several integer fields as one chained comparison.

    A missing lo or hi is the struct code's own limit, which a decoded value always meets.  On a failure the
    ordered checks are run to name the first problem, so the message is the one the separate checks give.
    """
    if not ranges:
        return ordered

    def explain(a: Sequence[Any], v: Sequence[Any]) -> str | None:
        # None only for a value outside its struct code's range (never decoded from a frame).
        return first_problem(ordered, a, v)

    if len(ranges) == 1:
        ((i0, lo0, hi0),) = ranges
        fused = lambda a, v: None if lo0 <= v[i0] <= hi0 else explain(a, v)
    elif len(ranges) == 2:
        (i0, lo0, hi0), (i1, lo1, hi1) = ranges
        fused = lambda a, v: None if lo0 <= v[i0] <= hi0 and lo1 <= v[i1] <= hi1 else explain(a, v)
    elif len(ranges) == 3:
        (i0, lo0, hi0), (i1, lo1, hi1), (i2, lo2, hi2) = ranges
        fused = lambda a, v: (None if lo0 <= v[i0] <= hi0 and lo1 <= v[i1] <= hi1 and lo2 <= v[i2] <= hi2
                              else explain(a, v))
    else:
        bounds = tuple(ranges)

        def fused(a: Sequence[Any], v: Sequence[Any]) -> str | None:
            for i, lo, hi in bounds:
                if not lo <= v[i] <= hi:
                    return explain(a, v)
            return None

    return [fused, *others]


class TypeChecks(NamedTuple):
    """What one field's type asks of its value: the checks in report order, and (for an integer with a lo or hi)
    its range as (index, lo, hi), fused with the other fields' ranges into one comparison; `checks[0]` is then the
    range's own check, which runs only to name a failure."""

    checks: list[Check]
    range: tuple[int, int, int] | None = None


@singledispatch
def type_checks(t: T.WireType, name: str, params: dict[str, int], i: int) -> TypeChecks:
    """The checks of meaning a value of type `t` at v[i] needs.  By default none: wire.py has already held it to
    its shape (a Bool, a NUL-free Path, UTF-8 Text within their maxima)."""
    return TypeChecks([])


@type_checks.register
def _int(t: T.Int, name: str, params: dict[str, int], i: int) -> TypeChecks:
    found = _int_checks(name, t, params, i)
    if t.lo is None and t.hi is None:
        return TypeChecks(found)
    code_lo, code_hi = _code_range(t.code)
    return TypeChecks(found, (i, code_lo if t.lo is None else t.lo, code_hi if t.hi is None else t.hi))


@type_checks.register
def _float(t: T.Float, name: str, params: dict[str, int], i: int) -> TypeChecks:
    if t.lo is None:
        return TypeChecks([])
    lo = t.lo
    # The value is compared as decoded: NaN fails it too.
    return TypeChecks([lambda a, v: None if v[i] >= lo else f"{name} below {lo}"])


@type_checks.register
def _bytes(t: T.Bytes, name: str, params: dict[str, int], i: int) -> TypeChecks:
    if t.bound is None:
        return TypeChecks([])
    return TypeChecks([_bound_check(name, t.bound, params, i, measure_len=True)])


@type_checks.register
def _record(t: T.Record, name: str, params: dict[str, int], i: int) -> TypeChecks:
    inner = _field_checks(t.fields, params, prefix=name + ".")
    return TypeChecks([_nested(inner, i)] if inner else [])


@type_checks.register
def _list(t: T.List, name: str, params: dict[str, int], i: int) -> TypeChecks:
    checks = [] if t.bound is None else [_bound_check(name, t.bound, params, i, measure_len=True)]
    inner = _field_checks(t.item.fields, params, prefix=f"{name}[].")
    if inner:
        checks.append(_each(inner, i))
    return TypeChecks(checks)


def _field_checks(fields: Sequence[T.Field], params: dict[str, int], prefix: str = "") -> list[Check]:
    """Checks for values laid out as `fields`; values are reached through `v[i]`."""
    checks: list[Check] = []  # every check in field order: the order in which problems are reported
    ranges: list[tuple[int, int, int]] = []  # plain integer ranges, fused into one check
    others: list[Check] = []  # everything else, in field order
    for i, f in enumerate(fields):
        found, rng = type_checks(f.type, prefix + f.name, params, i)
        checks += found
        if rng is not None:
            ranges.append(rng)
            others += found[1:]  # the bound check, if any
        else:
            others += found
    return _fuse(ranges, others, checks)


def _nested(inner: list[Check], i: int) -> Check:
    def check(a: Sequence[Any], v: Sequence[Any]) -> str | None:
        for c in inner:
            problem = c(a, v[i])
            if problem:
                return problem
        return None

    return check


def _each(inner: list[Check], i: int) -> Check:
    def check(a: Sequence[Any], v: Sequence[Any]) -> str | None:
        for item in v[i]:
            for c in inner:
                problem = c(a, item)
                if problem:
                    return problem
        return None

    return check


# -- relations (calls.RULES): what an answer must mean ---------------------------------------------------------
#
# Stateless kinds become ordinary answer checks of CallChecks; the kinds that remember the run (handles handed
# over, the names of a listing, the clocks, the identity) live in Plausibility, one per enclave client.

_FILE_TYPES = frozenset({_stat.S_IFREG, _stat.S_IFDIR, _stat.S_IFLNK, _stat.S_IFCHR, _stat.S_IFBLK, _stat.S_IFIFO,
                         _stat.S_IFSOCK})
_RESOLVED_FAMILIES = frozenset({_socket.AF_INET, _socket.AF_INET6})
_SEEK_SET = 0
# Indices into the records, from the table itself: a field renamed in calls.py cannot silently check another.
_ST = {f.name: i for i, f in enumerate(K.STAT.fields)}
_VFS = {f.name: i for i, f in enumerate(K.STATVFS.fields)}
_ST_MODE, _ST_NLINK, _ST_BLKSIZE = _ST["mode"], _ST["nlink"], _ST["blksize"]


def _filetype(c: Call) -> Check:
    follows = c.name == "stat"

    def check(a: Sequence[Any], v: Sequence[Any]) -> str | None:
        mode = v[0][_ST_MODE]
        kind = _stat.S_IFMT(mode)
        if kind not in _FILE_TYPES:
            return f"st.mode {mode:#o} has no valid file type"
        if follows and kind == _stat.S_IFLNK:
            return "stat follows symlinks, yet answered one"
        return None

    return check


def _nlink(c: Call) -> Check:
    return lambda a, v: None if v[0][_ST_NLINK] >= 1 else f"st.nlink is {v[0][_ST_NLINK]} for a name just found"


def _blksize(c: Call) -> Check:
    lo, hi = K.BLKSIZE_MIN, K.BLKSIZE_MAX

    def check(a: Sequence[Any], v: Sequence[Any]) -> str | None:
        b = v[0][_ST_BLKSIZE]
        if lo <= b <= hi and not b & (b - 1):
            return None
        return f"st.blksize {b} is not a power of two in {lo}..{hi}"

    return check


def _statvfs(c: Call) -> Check:
    blocks, bfree, bavail = _VFS["blocks"], _VFS["bfree"], _VFS["bavail"]
    files, ffree, favail = _VFS["files"], _VFS["ffree"], _VFS["favail"]

    def check(a: Sequence[Any], v: Sequence[Any]) -> str | None:
        st = v[0]
        if st[bfree] > st[blocks] or st[bavail] > st[blocks]:
            return f"{st[bfree]} free / {st[bavail]} available blocks of {st[blocks]}"
        if st[ffree] > st[files] or st[favail] > st[files]:
            return f"{st[ffree]} free / {st[favail]} available inodes of {st[files]}"
        return None

    return check


def _seek(c: Call) -> Check:
    def check(a: Sequence[Any], v: Sequence[Any]) -> str | None:
        position, offset = v[0], a[1]
        if a[2] == _SEEK_SET:
            return None if position == offset else f"SEEK_SET to {offset} answered position {position}"
        return None if position >= offset else f"position {position} is before the offset {offset} asked"

    return check


def _dirent(c: Call) -> Check:
    """A directory entry's name is one path component: a host that answered "../x", "a/b", "." or a name with NUL
    would make scandir hand the program a path outside the directory it listed."""

    def check(a: Sequence[Any], v: Sequence[Any]) -> str | None:
        for name, *_ in v[0]:
            if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
                return f"directory entry {bytes(name)[:64]!r} is not a file name"
        return None

    return check


def _resolver(c: Call) -> Check:
    limit = K.MAX_RESOLVED
    families = _RESOLVED_FAMILIES
    fam_arg = [f.name for f in c.params].index("family")

    def check(a: Sequence[Any], v: Sequence[Any]) -> str | None:
        results = v[0]
        if len(results) > limit:
            return f"{len(results)} resolver answers, more than {limit}"
        asked = a[fam_arg]
        for family, _type, _proto, _canon, addr in results:
            if family not in families or (asked and family != asked):
                return f"an answer of family {family} for a request of family {asked}"
            if addr[0] != family:
                return f"an address of family {addr[0]} in an answer of family {family}"
        return None

    return check


_STATELESS: dict[str, Callable[[Call], Check]] = {
    "filetype": _filetype, "nlink": _nlink, "blksize": _blksize, "statvfs": _statvfs, "seek": _seek,
    "dirent": _dirent, "resolver": _resolver,
}
STATEFUL = frozenset({"fresh", "listing", "clock", "slept", "stable"})
_KINDS_USED, _KINDS_CHECKED = {r.kind for r in K.RULES}, set(_STATELESS) | STATEFUL
require(_KINDS_USED == _KINDS_CHECKED,
        f"rule kinds of calls.RULES with no check: {sorted(_KINDS_USED - _KINDS_CHECKED)}; "
        f"checks no rule uses: {sorted(_KINDS_CHECKED - _KINDS_USED)}")


def relation_checks(c: Call) -> list[Check]:
    """The stateless relations calls.RULES declares for `c`, as answer checks."""
    return [_STATELESS[r.kind](c) for r in K.RULES if c.name in r.calls and r.kind in _STATELESS]


class CallChecks:
    """The compiled checks of one call, for both directions."""

    __slots__ = ("call", "request", "ranges", "answer", "errnos", "handles")

    def __init__(self, c: Call) -> None:
        params = {f.name: i for i, f in enumerate(c.params)}
        self.call = c
        # Handles are checked by the host against its handle table, not here.
        self.request = _field_checks(c.params, params)
        self.ranges = _field_checks(c.results, params)  # what the answer's fields allow on their own
        self.answer = self.ranges + relation_checks(c)  # and what they must mean (calls.RULES)
        self.errnos = c.errnos
        self.handles = tuple(i for i, f in enumerate(c.params) if f.is_handle)

    def check_request(self, args: Sequence[Any]) -> str | None:
        return first_problem(self.request, args, args)

    def check_answer(self, args: Sequence[Any], results: Sequence[Any]) -> str | None:
        return first_problem(self.answer, args, results)

    def check_ranges(self, args: Sequence[Any], results: Sequence[Any]) -> str | None:
        """The answer's ranges and bounds only, without the relations of calls.RULES."""
        return first_problem(self.ranges, args, results)

    def check_errno(self, err: int) -> str | None:
        if err in self.errnos:
            return None
        name = E.errorcode.get(err, str(err))
        return f"errno {name} is not one {self.call.name} can return"


# -- relations that remember the run ------------------------------------------------------------------------------

_counter_clock = getattr(_time, "CLOCK_BOOTTIME", _time.CLOCK_MONOTONIC)
_counter_get = _time.clock_gettime_ns  # captured at import: the interposer never rewrites ocall_bridge


def own_counter() -> int:
    """The enclave's own elapsed-time counter: the stand-in for RDTSC, which an SGX2 enclave reads itself.

    It is never asked of the host (this process reads its own CLOCK_BOOTTIME, which also counts a suspend), so it
    can bound how far the host's clocks move between two answers.  It says nothing about the absolute time: the
    enclave has no trusted calendar, so REALTIME is only held to a plausible range and to the counter's pace.
    """
    return _counter_get(_counter_clock)


_REALTIME_CLOCKS = frozenset(getattr(_time, n) for n in ("CLOCK_REALTIME", "CLOCK_REALTIME_COARSE", "CLOCK_TAI")
                             if hasattr(_time, n))
_AHEAD_ONLY_CLOCKS = frozenset(getattr(_time, n) for n in ("CLOCK_MONOTONIC", "CLOCK_MONOTONIC_RAW",
                                                           "CLOCK_MONOTONIC_COARSE") if hasattr(_time, n))


class _Track:
    """What the answers so far say about one host clock: its offset to the counter lies in [lo, hi] at time t."""

    __slots__ = ("lo", "hi", "t")

    def __init__(self, lo: int, hi: int, t: int) -> None:
        self.lo, self.hi, self.t = lo, hi, t


class Plausibility:
    """The relations of calls.RULES that need memory of the run, for one enclave client.

    `checks(call)` gives the answer checks to run after the stateless ones; `begin()` must run on the calling
    thread before a timed call (clock_gettime, sleep) leaves, so that the counter brackets the host's reading.
    A check commits what it learns only when the answer passes: a refused lie leaves no trace in the state.
    """

    TIMED = frozenset({"clock_gettime", "sleep"})

    def __init__(self, counter: Callable[[], int] = own_counter) -> None:
        self.counter = counter
        self.issued: set[int] = set()  # every handle the host ever handed over, stdio's included
        self.listings: dict[int, set[bytes] | None] = {}  # handle -> names of the listing in progress (None: ended)
        self.clocks: dict[int, _Track] = {}
        self.ids: tuple | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def begin(self) -> None:
        self._local.t = self.counter()

    def checks(self, c: Call) -> list[Check]:
        out: list[Check] = []
        kinds = {r.kind for r in K.RULES if c.name in r.calls}
        if "fresh" in kinds:
            out.append(self._fresh(c))
        if "listing" in kinds:
            out.append(self._listing)
        if "clock" in kinds:
            out.append(self._clock)
        if "slept" in kinds:
            out.append(self._slept)
        if "stable" in kinds:
            out.append(self._stable)
        if c.name == "close":
            out.append(self._closed)
        return out

    # -- handles ---------------------------------------------------------------------------------------------
    def _fresh(self, c: Call) -> Check:
        if c.name == "attach":
            idx = tuple(range(len(c.results)))  # the stdio handles; -1 where the host's stream is closed
        else:
            idx = tuple(i for i, f in enumerate(c.results) if f.is_handle)
        closed_ok = c.name == "attach"
        fresh = self.fresh_handles

        def check(a: Sequence[Any], v: Sequence[Any]) -> str | None:
            return fresh([v[i] for i in idx if not (closed_ok and v[i] == -1)])

        return check

    def fresh_handles(self, got: Sequence[int]) -> str | None:
        """The "fresh" rule for handles an answer hands over (also those inside recvmsg's SCM_RIGHTS data):
        never 0-2, never twice, never one handed over before; they count as handed over from now on."""
        for h in got:
            if h < 3:
                return f"handle {h} is one the host never issues"
        if len(set(got)) != len(got):
            return f"the same handle twice: {list(got)}"
        with self._lock:
            for h in got:
                if h in self.issued:
                    return f"handle {h} was issued before: it would alias another open file"
            self.issued.update(got)
        return None

    # -- directory listings ----------------------------------------------------------------------------------
    def _listing(self, a: Sequence[Any], v: Sequence[Any]) -> str | None:
        handle, restart, entries = a[0], a[2], v[0]
        with self._lock:
            seen = None if restart else self.listings.get(handle, set())
            if seen is None and not restart:
                if entries:
                    return "the listing goes on after it ended"
                return None
            seen = set() if seen is None else seen
            if not entries:
                self.listings[handle] = None  # ended: until a restart, only an empty answer is believable
                return None
            names = [bytes(e[0]) for e in entries]
            fresh = set(names)
            if len(fresh) != len(names) or not fresh.isdisjoint(seen):
                again = next(n for n in names if n in seen or names.count(n) > 1)
                return f"directory entry {again[:64]!r} listed twice"
            if len(seen) + len(fresh) > K.MAX_LISTING:
                return f"a listing of more than {K.MAX_LISTING} names"
            seen |= fresh
            self.listings[handle] = seen
        return None

    def _closed(self, a: Sequence[Any], v: Sequence[Any]) -> None:
        with self._lock:
            self.listings.pop(a[0], None)  # a number is never reused: its listing state can go

    # -- time --------------------------------------------------------------------------------------------------
    def _clock(self, a: Sequence[Any], v: Sequence[Any]) -> str | None:
        """REALTIME/TAI within REALTIME_MIN..MAX and within CLOCK_DRIFT (+ CLOCK_SLACK_NS) of the enclave's own
        counter since the last answer, both ways; MONOTONIC/RAW/COARSE never ahead of it by more, BOOTTIME both
        ways; a first monotonic answer below UPTIME_MAX_NS."""
        t_ans = self.counter()
        t_req = getattr(self._local, "t", t_ans)
        clock, ns = a[0], v[0]
        lo_now, hi_now = ns - t_ans, ns - t_req  # the reading happened between t_req and t_ans
        with self._lock:
            track = self.clocks.get(clock)
            if track is None:
                if clock in _REALTIME_CLOCKS and not K.REALTIME_MIN_NS <= ns <= K.REALTIME_MAX_NS:
                    return f"clock {clock} answered {ns} ns, outside 2000..2200"
                if clock not in _REALTIME_CLOCKS and ns > K.UPTIME_MAX_NS:
                    return f"clock {clock} answered {ns} ns, more than a century since boot"
                self.clocks[clock] = _Track(lo_now, hi_now, t_ans)
                return None
            drift = int(K.CLOCK_DRIFT * max(0, t_ans - track.t))
            slack = K.CLOCK_SLACK_NS
            if lo_now > track.hi + drift + slack:
                return (f"clock {clock} ran {(lo_now - track.hi) / 1e9:.3f} s ahead of the enclave's own counter "
                        f"since its last answer")
            if clock not in _AHEAD_ONLY_CLOCKS and hi_now < track.lo - drift - slack:
                return (f"clock {clock} fell {(track.lo - hi_now) / 1e9:.3f} s behind the enclave's own counter "
                        f"since its last answer")
            lo, hi = max(track.lo - drift, lo_now), min(track.hi + drift, hi_now)
            if clock in _AHEAD_ONLY_CLOCKS:
                lo = lo_now  # a monotonic clock stops while the machine sleeps: it may fall behind the counter
            if lo > hi:
                lo, hi = lo_now, hi_now  # within the slack: the reading itself is the best knowledge
            track.lo, track.hi, track.t = lo, hi, max(track.t, t_ans)
        return None

    def _slept(self, a: Sequence[Any], v: Sequence[Any]) -> str | None:
        t_ans = self.counter()
        t_req = getattr(self._local, "t", None)
        asked, slept = a[0], v[0]
        if slept < asked:
            return f"a sleep of {asked} ns claims to have lasted {slept} ns"
        if t_req is None:
            return None
        elapsed = t_ans - t_req
        if slept > elapsed + K.CLOCK_SLACK_NS + K.CLOCK_DRIFT * elapsed:
            return f"a sleep claims {slept} ns; the enclave's own counter saw {elapsed} ns pass"
        if elapsed < asked - 1_000_000:
            return f"a sleep of {asked} ns came back after {elapsed} ns of the enclave's own counter"
        return None

    # -- identity --------------------------------------------------------------------------------------------
    def _stable(self, a: Sequence[Any], v: Sequence[Any]) -> str | None:
        ids = tuple(v)
        if ids[0] == ids[1]:
            return f"pid {ids[0]} is its own parent"
        with self._lock:
            if self.ids is None:
                self.ids = ids
            elif self.ids != ids:
                return f"identity {ids} differs from {self.ids}, answered earlier in this run"
        return None
