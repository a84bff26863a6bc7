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
import struct
from collections.abc import Callable, Sequence
from typing import Any

from . import types as T
from .calls import Call

Check = Callable[[Sequence[Any], Sequence[Any]], str | None]  # (request args, values) -> problem or None


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
        for c in ordered:
            problem = c(a, v)
            if problem:
                return problem
        return None  # only a value outside its struct code's range (never decoded from a frame) gets here

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


def _field_checks(fields: Sequence[T.Field], params: dict[str, int], prefix: str = "") -> list[Check]:
    """Checks for values laid out as `fields`; values are reached through `v[i]`."""
    checks: list[Check] = []  # every check in field order: the order in which problems are reported
    ranges: list[tuple[int, int, int]] = []  # plain integer ranges, fused into one check
    others: list[Check] = []  # everything else, in field order
    for i, f in enumerate(fields):
        name = prefix + f.name
        t = f.type
        if isinstance(t, T.Int):
            found = _int_checks(name, t, params, i)
            checks += found
            if t.lo is not None or t.hi is not None:
                code_lo, code_hi = _code_range(t.code)
                ranges.append((i, code_lo if t.lo is None else t.lo, code_hi if t.hi is None else t.hi))
                others += found[1:]  # the bound check, if any
            else:
                others += found
            continue
        before = len(checks)
        if isinstance(t, T.Float) and t.lo is not None:
            checks.append(lambda a, v, i=i, lo=t.lo, name=name: None if v[i] >= lo else f"{name} below {lo}")
        elif isinstance(t, T.Bytes) and t.bound is not None:
            checks.append(_bound_check(name, t.bound, params, i, measure_len=True))
        elif isinstance(t, T.Record):
            inner = _field_checks(t.fields, params, prefix=name + ".")
            if inner:
                checks.append(_nested(inner, i))
        elif isinstance(t, T.List):
            if t.bound is not None:
                checks.append(_bound_check(name, t.bound, params, i, measure_len=True))
            inner = _field_checks(t.item.fields, params, prefix=f"{name}[].")
            if inner:
                checks.append(_each(inner, i))
        others += checks[before:]
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


class CallChecks:
    """The compiled checks of one call, for both directions."""

    __slots__ = ("call", "request", "answer", "errnos", "handles")

    def __init__(self, c: Call) -> None:
        params = {f.name: i for i, f in enumerate(c.params)}
        self.call = c
        # Handles are checked by the host against its handle table, not here.
        self.request = _field_checks(c.params, params)
        self.answer = _field_checks(c.results, params)
        self.errnos = c.errnos
        self.handles = tuple(i for i, f in enumerate(c.params)
                             if isinstance(f.type, T.Int) and f.type.role == "handle")

    def check_request(self, args: Sequence[Any]) -> str | None:
        for c in self.request:
            problem = c(args, args)
            if problem:
                return problem
        return None

    def check_answer(self, args: Sequence[Any], results: Sequence[Any]) -> str | None:
        for c in self.answer:
            problem = c(args, results)
            if problem:
                return problem
        return None

    def check_errno(self, err: int) -> str | None:
        if err in self.errnos:
            return None
        name = E.errorcode.get(err, str(err))
        return f"errno {name} is not one {self.call.name} can return"
