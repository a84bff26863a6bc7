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

Plausible lies: well-formed answers, every field in its range, that a careless enclave would believe (each is
refused by a relation of calls.RULES, checked in validate.py):
    blksize    st_blksize = 2**40 (a buffered open() would then ask for a terabyte)
    notype     st_mode without a file type, and st_nlink = 0
    nlink      st_nlink = 0 for a name just found (stat, lstat)
    seek       lseek answers another position: SEEK_SET to N answers 2**62, SEEK_CUR/END less than the offset
    endless    a directory listing never ends: a page the host gave before, again (or a name twice in one page)
    stdio      a new handle equal to the enclave's own stdout handle (from attach)
    winsize    a terminal of 2**31-1 columns and lines
    realtime   CLOCK_REALTIME (and TAI) answers -2**62
    jump       a monotonic clock jumps a century forward
    flood      a name resolves to 65 arbitrary addresses
    family     a name resolves to an address of another family than the one asked
    pid        getids answers pid 2**62
    longsleep  a sleep claims to have lasted a year
    replay     the previous honest answer of the same call again, its sequence number fixed up
    swap       the answers of two concurrent calls of the same kind exchanged (each keeps its own header); the
               first waits up to SWAP_WAIT_S for a partner and is answered honestly when none comes
"""

from __future__ import annotations

import errno as E
import os
import struct
import time as _time
from collections.abc import Callable, Sequence
from functools import singledispatch
from socket import AF_INET, AF_INET6, SOCK_STREAM
from typing import Any

from . import types as T
from .calls import BY_NUMBER, MAX_RESOLVED, MAX_TERMINAL, RULES, Call
from .records import STAT
from .wire import HEADER, HEADER_SIZE, CallCodec, WireError, decode_answer, encode_error

KINDS: tuple[str, ...] = ("oversize", "negative", "badfd", "seq", "call", "errno", "truncated", "garbage",
                          "hugelen", "backwards", "flip", "blksize", "notype", "nlink", "seek", "endless", "stdio",
                          "winsize", "realtime", "jump", "flood", "family", "pid", "longsleep", "replay", "swap")
# The plausible kinds, and the relation of calls.RULES each one breaks: the calls it applies to come from there.
RULE_OF: dict[str, str] = {"blksize": "blksize", "notype": "filetype", "nlink": "nlink", "seek": "seek",
                           "endless": "listing", "stdio": "fresh", "realtime": "clock", "jump": "clock",
                           "flood": "resolver", "family": "resolver", "pid": "stable", "longsleep": "slept"}
SWAP_WAIT_S = 2.0
REALTIME_CLOCKS = frozenset(getattr(_time, n) for n in ("CLOCK_REALTIME", "CLOCK_REALTIME_COARSE", "CLOCK_TAI")
                            if hasattr(_time, n))
_ST = {f.name: i for i, f in enumerate(STAT.fields)}
_CENTURY_NS = 100 * 365 * 86_400 * 10**9

# Clocks that may never run backwards (the enclave holds them to it: enclave_libc/time.py).
MONOTONIC_CLOCKS = frozenset(getattr(_time, n) for n in (
    "CLOCK_MONOTONIC", "CLOCK_MONOTONIC_RAW", "CLOCK_MONOTONIC_COARSE", "CLOCK_BOOTTIME") if hasattr(_time, n))

# Errnos no call in the table may return: the first one a call cannot return is the lie.
_FOREIGN_ERRNOS = (E.ECHILD, E.EDOM, E.ESRCH, E.ENOEXEC, E.E2BIG, E.ETIME)
_HUGE = 0xFFFFFF00  # a declared length far beyond any frame


# -- what each wire type can falsify --------------------------------------------------------------------------
#
# A lie about a value is a function from the honest value to the false one (None: this value has nothing to
# falsify, e.g. an empty read to flip).  Each lie asks the result's type for its falsifier; a type without one
# (None) cannot carry that lie, which is how `applies` knows from the table alone.

Falsify = Callable[[Any], Any]


@singledispatch
def _negative(t: T.WireType) -> Falsify | None:
    """A negative value where the table says the value is non-negative."""
    return None


@_negative.register
def _negative_int(t: T.Int) -> Falsify | None:
    if t.code.islower() and t.lo is not None and t.lo >= 0:  # signed, yet declared non-negative
        return lambda v: -1
    return None


@_negative.register
def _negative_record(t: T.Record) -> Falsify | None:
    for j, g in enumerate(t.fields):
        inner = _negative(g.type)
        if inner is not None:
            return _in_field(j, inner)
    return None


def _in_field(j: int, falsify: Falsify) -> Falsify:
    """A record's falsifier that falsifies its field j."""
    return lambda rec: _replaced(rec, j, falsify(rec[j]))


@singledispatch
def _flip(t: T.WireType) -> Falsify | None:
    """Other content of the same shape: only a content check can tell."""
    return None


@_flip.register
def _flip_bytes(t: T.Bytes) -> Falsify:
    def flip(v: bytes) -> bytes | None:
        if not v:
            return None  # nothing to change in an empty answer (end of file)
        data = bytearray(v)
        data[len(data) // 2] ^= 1
        return bytes(data)

    return flip


@singledispatch
def _exceed(t: T.WireType, over: int) -> Falsify | None:
    """A value `over` its bound (a count, a length, a number of entries); None when no frame could carry it."""
    return None


@_exceed.register
def _exceed_int(t: T.Int, over: int) -> Falsify:
    return lambda v: over


@_exceed.register
def _exceed_bytes(t: T.Bytes, over: int) -> Falsify | None:
    if over > t.max:
        return None  # the bound is the type's own maximum: no frame could carry more
    return lambda v: bytes(v) + b"\0" * (over - len(v))


@_exceed.register
def _exceed_list(t: T.List, over: int) -> Falsify | None:
    if over > t.max:
        return None

    def pad(v: Sequence[Any]) -> list:
        items = list(v)
        return items + [items[0] if items else well_formed(t.item)] * (over - len(items))

    return pad


@singledispatch
def well_formed(t: T.WireType) -> Any:
    """A well-formed value of type t, to pad a list past its bound."""
    raise TypeError(t)


@well_formed.register
def _well_formed_int(t: T.Int) -> int:
    return t.lo if t.lo is not None and t.lo > 0 else 0


@well_formed.register
def _well_formed_float(t: T.Float) -> float:
    return 0.0


@well_formed.register
def _well_formed_bool(t: T.Bool) -> bool:
    return False


@well_formed.register(T.Bytes)
@well_formed.register(T.Path)
def _well_formed_bytes(t: T.Bytes | T.Path) -> bytes:
    return b"x"


@well_formed.register
def _well_formed_text(t: T.Text) -> str:
    return "x"


@well_formed.register
def _well_formed_record(t: T.Record) -> tuple:
    return tuple(well_formed(f.type) for f in t.fields)


@well_formed.register
def _well_formed_list(t: T.List) -> list:
    return []


def _replaced(rec: Sequence[Any], j: int, value: Any) -> tuple:
    out = list(rec)
    out[j] = value
    return tuple(out)


def _first(c: Call, has: Callable[[T.WireType], object]) -> int | None:
    """The first result whose type has something for this lie (a falsifier, a bound)."""
    return next((i for i, f in enumerate(c.results) if has(f.type) is not None), None)


@singledispatch
def _bound(t: T.WireType) -> T.Bound | None:
    """The request's limit on this value (only integers, byte strings and lists carry one)."""
    return None


@_bound.register(T.Int)
@_bound.register(T.Bytes)
@_bound.register(T.List)
def _bound_declared(t: T.Int | T.Bytes | T.List) -> T.Bound | None:
    return t.bound


def _bounded(c: Call) -> int | None:
    return _first(c, _bound)


def _handles(c: Call) -> tuple[int, ...]:
    return tuple(i for i, f in enumerate(c.results) if f.is_handle)


def applies(kind: str, c: Call) -> bool:
    """Whether the table gives `kind` something to falsify in `c`'s answer."""
    if kind in ("seq", "call", "garbage"):
        return True
    if kind == "errno":
        return any(e not in c.errnos for e in _FOREIGN_ERRNOS)
    if kind == "oversize":
        return _bounded(c) is not None
    if kind == "negative":
        return _first(c, _negative) is not None
    if kind == "badfd":
        return bool(_handles(c))
    if kind == "truncated":
        return bool(c.results)
    if kind == "hugelen":
        return any(not f.type.fixed for f in c.results)
    if kind == "backwards":
        return c.name == "clock_gettime"
    if kind == "flip":
        return _first(c, _flip) is not None
    if kind == "winsize":
        return any(getattr(f.type, "hi", None) == MAX_TERMINAL for f in c.results)
    if kind == "stdio":
        return c.name != "attach" and bool(_handles(c))
    if kind in RULE_OF:
        return any(r.kind == RULE_OF[kind] and c.name in r.calls for r in RULES)
    if kind in ("replay", "swap"):
        return bool(c.results)
    raise ValueError(f"unknown lie {kind!r} (one of {', '.join(KINDS)})")


def wants(kind: str, c: Call, args: Sequence[Any]) -> bool:
    """Whether this very request can carry the lie (a backwards clock only for a monotonic one)."""
    if kind == "backwards":
        return bool(args) and args[0] in MONOTONIC_CLOCKS
    if kind == "jump":
        return bool(args) and args[0] in MONOTONIC_CLOCKS
    if kind == "realtime":
        return bool(args) and args[0] in REALTIME_CLOCKS
    if kind == "seek":
        return args[2] == os.SEEK_SET or args[1] > 0  # otherwise every non-negative position is believable
    return True


def _limit(b: T.Bound, c: Call, args: Sequence[Any]) -> int:
    j = next(i for i, f in enumerate(c.params) if f.name == b.name)
    return args[j] if b.kind == "arg" else len(args[j])


def _falsified(results: list, i: int, falsify: Falsify | None) -> list | None:
    """results with results[i] falsified, or None when that value has nothing to falsify."""
    if falsify is None:
        return None
    value = falsify(results[i])
    if value is None:
        return None
    results[i] = value
    return results


def with_seq(answer: bytes, seq: int) -> bytes:
    """`answer` as the answer to sequence number `seq` (what a replaying or swapping host fixes up)."""
    return answer[:8] + struct.pack("<I", seq) + answer[12:]


def tell(kind: str, codec: CallCodec, args: Sequence[Any], answer: bytes | memoryview,
         issued: Sequence[int] = (), memory: dict | None = None) -> bytes | None:
    """The answer rewritten into lie `kind`, or None when this answer has nothing to falsify (a lie about a
    result needs a successful answer).  `issued`: handles the host gave this enclave before (for badfd);
    `memory`: what the injector remembered of honest answers (the stdio handles, the last answer of each call,
    the last page of each listing) for stdio, replay and endless."""
    c = codec.call
    memory = {} if memory is None else memory
    answer = bytes(answer)
    length, version, kind_, number, seq, err = HEADER.unpack_from(answer, 0)
    if kind == "replay":
        old = memory.get(("last", number))
        return None if old is None or old[16:] == answer[16:] else with_seq(old, seq)
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
        size = len(answer) - HEADER_SIZE
        if size <= 0:
            return None
        cut = answer[:len(answer) - max(1, size // 2)]
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
    falsifiable: int | None
    if kind == "oversize":
        falsifiable = _bounded(c)
        assert falsifiable is not None  # applies("oversize") admits only calls with a bounded result
        t = c.results[falsifiable].type
        bound = _bound(t)
        assert bound is not None
        out = _falsified(results, falsifiable, _exceed(t, _limit(bound, c, args) + 1))
        if out is None:
            return None
        results = out
    elif kind == "negative":
        falsifiable = _first(c, _negative)
        assert falsifiable is not None
        out = _falsified(results, falsifiable, _negative(c.results[falsifiable].type))
        if out is None:
            return None
        results = out
    elif kind == "badfd":
        idx = _handles(c)
        # Alias a handle this enclave already holds (a "foreign" one); with none known, one never issuable.
        results[idx[0]] = issued[-1] if issued else 1
        if len(idx) > 1 and not issued:
            results[idx[1]] = results[idx[0]]
    elif kind == "backwards":
        results[0] = results[0] - 3_600_000_000_000  # an hour before what the host just read
    elif kind == "flip":
        falsifiable = _first(c, _flip)
        assert falsifiable is not None  # applies("flip") admits only calls with a data result
        out = _falsified(results, falsifiable, _flip(c.results[falsifiable].type))
        if out is None:
            return None
        results = out
    elif kind == "blksize":
        results[0] = _replaced(results[0], _ST["blksize"], 2**40)
    elif kind == "notype":
        results[0] = _replaced(results[0], _ST["mode"], results[0][_ST["mode"]] & 0o7777)
        results[0] = _replaced(results[0], _ST["nlink"], 0)
    elif kind == "nlink":
        results[0] = _replaced(results[0], _ST["nlink"], 0)
    elif kind == "seek":
        if args[2] == os.SEEK_SET:
            results[0] = 2**62 if args[1] != 2**62 else 0
        else:
            results[0] = args[1] - 1
    elif kind == "endless":
        page = memory.get(("page", args[0]))
        if page is not None and not args[2]:
            results[0] = page  # the listing starts over instead of ending
        elif results[0]:
            results[0] = [*results[0], results[0][0]]  # one name twice
        else:
            return None
    elif kind == "stdio":
        stdio = memory.get("stdio") or (1, 1, 1)
        results[_handles(c)[0]] = stdio[1] if stdio[1] >= 0 else stdio[0]
    elif kind == "winsize":
        results = [2**31 - 1] * len(results)
    elif kind == "realtime":
        results[0] = -(2**62)
    elif kind == "jump":
        results[0] = results[0] + _CENTURY_NS
    elif kind == "flood":
        entry = (AF_INET, SOCK_STREAM, 6, "", (AF_INET, "", 80, 0, 0, b""))
        results[0] = [(*entry[:4], (AF_INET, f"10.66.{i // 256}.{i % 256}", 80, 0, 0, b""))
                      for i in range(MAX_RESOLVED + 1)]
    elif kind == "family":
        other = AF_INET6 if args[2] == AF_INET else AF_INET
        host = "::1" if other == AF_INET6 else "127.0.0.1"
        results[0] = [(other, SOCK_STREAM, 6, "", (other, host, 80, 0, 0, b""))]
    elif kind == "pid":
        results[0] = 2**62
    elif kind == "longsleep":
        results[0] = 365 * 86_400 * 10**9
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


__all__ = ["KINDS", "applies", "issued_handles", "tell", "wants", "well_formed"]
