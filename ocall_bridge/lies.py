"""A lying host: rewrite an encoded answer frame into one the enclave must refuse.

Used by fault injection (`--inject read:lie=oversize`, `inject.Rule.lie`) to prove that every check the
enclave makes on an answer is there and holds.  Nothing here knows a particular call: each kind of lie finds,
in the call's row of the table, the field it can falsify (a result with a bound to exceed, a non-negative
integer to make negative, a handle to alias, a variable-size field whose length to inflate) and rewrites the
answer the honest host produced.  A lie that has nothing to falsify in a call "does not apply" to it; `applies`
says so from the table alone, so a spec naming such a call is refused when it is parsed.

Kinds:
    oversize   more bytes / a larger count / more list entries than the request allows
    negative   a negative value where the table says a result is non-negative (a count, a size, a handle)
    badfd      a handle the host already issued (it would alias another open file), or one never issuable
    seq        the answer carries another sequence number
    call       the answer is for another call number
    errno      the call fails with an errno it cannot return
    truncated  the frame is cut short (its header length adjusted, so it still frames on a stream)
    garbage    the body is random bytes
    hugelen    a variable-size field claims a huge length
    backwards  a monotonic clock runs backwards (clock_gettime)
    flip       one byte of the answer's data changes: a well-formed answer with other content, which only a
               content check (a signed manifest's trusted files, enclave_libc/trusted.py) can catch
"""

from __future__ import annotations

import errno as E
import os
import struct
import time as _time
from collections.abc import Sequence
from typing import Any

from . import types as T
from .calls import BY_NUMBER, Call
from .wire import HEADER, HEADER_SIZE, CallCodec, WireError, decode_answer, encode_error

KINDS: tuple[str, ...] = ("oversize", "negative", "badfd", "seq", "call", "errno", "truncated", "garbage",
                          "hugelen", "backwards", "flip")

# Clocks that may never run backwards (the enclave holds them to it: enclave_libc/time.py).
MONOTONIC_CLOCKS = frozenset(getattr(_time, n) for n in (
    "CLOCK_MONOTONIC", "CLOCK_MONOTONIC_RAW", "CLOCK_MONOTONIC_COARSE", "CLOCK_BOOTTIME") if hasattr(_time, n))

# Errnos no call in the table may return: the first one a call cannot return is the lie.
_FOREIGN_ERRNOS = (E.ECHILD, E.EDOM, E.ESRCH, E.ENOEXEC, E.E2BIG, E.ETIME)
_HUGE = 0xFFFFFF00  # a declared length far beyond any frame


def _signed_nonneg(t: Any) -> bool:
    return isinstance(t, T.Int) and t.code.islower() and t.lo is not None and t.lo >= 0


def _negative_path(c: Call) -> tuple[int, int] | None:
    """(result index, field index inside a record or -1) of the first non-negative signed integer."""
    for i, f in enumerate(c.results):
        if _signed_nonneg(f.type):
            return i, -1
        if isinstance(f.type, T.Record):
            for j, g in enumerate(f.type.fields):
                if _signed_nonneg(g.type):
                    return i, j
    return None


def _bounded(c: Call) -> int | None:
    for i, f in enumerate(c.results):
        if getattr(f.type, "bound", None) is not None:
            return i
    return None


def _data(c: Call) -> int | None:
    return next((i for i, f in enumerate(c.results) if isinstance(f.type, T.Bytes)), None)


def _handles(c: Call) -> tuple[int, ...]:
    return tuple(i for i, f in enumerate(c.results) if isinstance(f.type, T.Int) and f.type.role == "handle")


def applies(kind: str, c: Call) -> bool:
    """Whether the table gives `kind` something to falsify in `c`'s answer."""
    if kind in ("seq", "call", "garbage"):
        return True
    if kind == "errno":
        return any(e not in c.errnos for e in _FOREIGN_ERRNOS)
    if kind == "oversize":
        return _bounded(c) is not None
    if kind == "negative":
        return _negative_path(c) is not None
    if kind == "badfd":
        return bool(_handles(c))
    if kind == "truncated":
        return bool(c.results)
    if kind == "hugelen":
        return any(not f.type.fixed for f in c.results)
    if kind == "backwards":
        return c.name == "clock_gettime"
    if kind == "flip":
        return _data(c) is not None
    raise ValueError(f"unknown lie {kind!r} (one of {', '.join(KINDS)})")


def wants(kind: str, c: Call, args: Sequence[Any]) -> bool:
    """Whether this very request can carry the lie (a backwards clock only for a monotonic one)."""
    if kind == "backwards":
        return bool(args) and args[0] in MONOTONIC_CLOCKS
    return True


def _zero(t: Any) -> Any:
    """A well-formed value of type t, to pad a list past its bound."""
    if isinstance(t, T.Int):
        return t.lo if t.lo is not None and t.lo > 0 else 0
    if isinstance(t, T.Float):
        return 0.0
    if isinstance(t, T.Bool):
        return False
    if isinstance(t, T.Bytes | T.Path):
        return b"x"
    if isinstance(t, T.Text):
        return "x"
    if isinstance(t, T.Record):
        return tuple(_zero(f.type) for f in t.fields)
    if isinstance(t, T.List):
        return []
    raise TypeError(t)


def _limit(b: T.Bound, c: Call, args: Sequence[Any]) -> int:
    j = next(i for i, f in enumerate(c.params) if f.name == b.name)
    return args[j] if b.kind == "arg" else len(args[j])


def _oversize(c: Call, args: Sequence[Any], results: list) -> list | None:
    i = _bounded(c)
    assert i is not None
    t = c.results[i].type
    over = _limit(t.bound, c, args) + 1
    if isinstance(t, T.Int):
        results[i] = over
    elif isinstance(t, T.Bytes):
        if over > t.max:
            return None  # the bound is the type's own maximum: no frame could carry more
        results[i] = bytes(results[i]) + b"\0" * (over - len(results[i]))
    elif isinstance(t, T.List):
        if over > t.max:
            return None
        items = list(results[i])
        pad = items[0] if items else _zero(t.item)
        results[i] = items + [pad] * (over - len(items))
    return results


def tell(kind: str, codec: CallCodec, args: Sequence[Any], answer: bytes | memoryview,
         issued: Sequence[int] = ()) -> bytes | None:
    """The answer rewritten into lie `kind`, or None when this answer has nothing to falsify (a lie about a
    result needs a successful answer).  `issued`: handles the host gave this enclave before (for badfd)."""
    c = codec.call
    answer = bytes(answer)
    length, version, kind_, number, seq, err = HEADER.unpack_from(answer, 0)
    if kind == "seq":
        return HEADER.pack(length, version, kind_, number, (seq + 1) & 0xFFFFFFFF, err) + answer[HEADER_SIZE:]
    if kind == "call":
        other = next(n for n in sorted(BY_NUMBER) if n != number)
        return HEADER.pack(length, version, kind_, other, seq, err) + answer[HEADER_SIZE:]
    if kind == "errno":
        bad = next(e for e in _FOREIGN_ERRNOS if e not in c.errnos)
        return encode_error(number, seq, bad)
    if kind == "garbage":
        body = os.urandom(max(len(answer) - HEADER_SIZE, 4) + 3)  # never the exact size of a valid body
        return HEADER.pack(HEADER_SIZE + len(body), version, kind_, number, seq, 0) + body
    if err:
        return None
    if kind == "truncated":
        body = len(answer) - HEADER_SIZE
        if body <= 0:
            return None
        cut = answer[:len(answer) - max(1, body // 2)]
        return struct.pack("<I", len(cut)) + cut[4:]
    if kind == "hugelen":
        lay = codec.answer
        if not lay.nvar:
            return None
        at = lay.size - 4 * lay.nvar  # the first declared length, after the fixed fields
        return answer[:at] + struct.pack("<I", _HUGE) + answer[at + 4:]
    try:
        _, values = decode_answer(answer, codec, seq)
    except WireError:
        return None
    results = list(values)
    if kind == "oversize":
        out = _oversize(c, args, results)
        if out is None:
            return None
        results = out
    elif kind == "negative":
        where = _negative_path(c)
        assert where is not None
        i, j = where
        if j < 0:
            results[i] = -1
        else:
            rec = list(results[i])
            rec[j] = -1
            results[i] = tuple(rec)
    elif kind == "badfd":
        idx = _handles(c)
        # Alias a handle this enclave already holds (a "foreign" one); with none known, one never issuable.
        results[idx[0]] = issued[-1] if issued else 1
        if len(idx) > 1 and not issued:
            results[idx[1]] = results[idx[0]]
    elif kind == "backwards":
        results[0] = results[0] - 3_600_000_000_000  # an hour before what the host just read
    elif kind == "flip":
        i = _data(c)
        data = bytearray(results[i])
        if not data:
            return None  # nothing to change in an empty answer (end of file)
        data[len(data) // 2] ^= 1
        results[i] = bytes(data)
    else:
        raise ValueError(f"unknown lie {kind!r}")
    try:
        return codec.pack_answer(seq, results)
    except WireError:
        return None


def issued_handles(codec: CallCodec, answer: bytes | memoryview) -> tuple[int, ...]:
    """The handles an honest answer hands over (remembered so that a later badfd lie can alias one)."""
    idx = _handles(codec.call)
    if not idx or len(answer) < HEADER_SIZE or answer[12:16] != b"\0\0\0\0":
        return ()
    try:
        _, values = decode_answer(answer, codec, HEADER.unpack_from(answer, 0)[4])
    except WireError:
        return ()
    return tuple(values[i] for i in idx)


__all__ = ["KINDS", "applies", "issued_handles", "tell", "wants"]
