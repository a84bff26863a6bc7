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
from collections.abc import Callable, Sequence
from typing import Any

from . import types as T
from .calls import Call

Check = Callable[[Sequence[Any], Sequence[Any]], str | None]  # (request args, values) -> problem or None


def _int_checks(name: str, t: T.Int, params: dict[str, int], get: Callable[[Sequence[Any], Sequence[Any]], Any]
                ) -> list[Check]:
    checks: list[Check] = []
    if t.lo is not None:
        lo = t.lo
        checks.append(lambda a, v: None if get(a, v) >= lo else f"{name}={get(a, v)} is below {lo}")
    if t.hi is not None:
        hi = t.hi
        checks.append(lambda a, v: None if get(a, v) <= hi else f"{name}={get(a, v)} is above {hi}")
    if t.bound is not None:
        checks.append(_bound_check(name, t.bound, params, lambda a, v: get(a, v)))
    return checks


def _bound_check(name: str, b: T.Bound, params: dict[str, int], measure: Callable) -> Check:
    j = params[b.name]
    if b.kind == "arg":
        return lambda a, v: None if measure(a, v) <= a[j] else f"{name} is {measure(a, v)}, more than {b.name}={a[j]}"
    return lambda a, v: (None if measure(a, v) <= len(a[j])
                         else f"{name} is {measure(a, v)}, more than the {len(a[j])} bytes of {b.name}")


def _field_checks(fields: Sequence[T.Field], params: dict[str, int], prefix: str = "") -> list[Check]:
    """Checks for values laid out as `fields`; values are reached through `v[i]`."""
    checks: list[Check] = []
    for i, f in enumerate(fields):
        name = prefix + f.name
        t = f.type
        if isinstance(t, T.Int):
            checks += _int_checks(name, t, params, lambda a, v, i=i: v[i])
        elif isinstance(t, T.Float) and t.lo is not None:
            checks.append(lambda a, v, i=i, lo=t.lo, name=name: None if v[i] >= lo else f"{name} below {lo}")
        elif isinstance(t, T.Bytes) and t.bound is not None:
            checks.append(_bound_check(name, t.bound, params, lambda a, v, i=i: len(v[i])))
        elif isinstance(t, T.Record):
            inner = _field_checks(t.fields, params, prefix=name + ".")
            if inner:
                checks.append(_nested(inner, i))
        elif isinstance(t, T.List):
            if t.bound is not None:
                checks.append(_bound_check(name, t.bound, params, lambda a, v, i=i: len(v[i])))
            inner = _field_checks(t.item.fields, params, prefix=f"{name}[].")
            if inner:
                checks.append(_each(inner, i))
    return checks


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
