"""What a trace says: one `TraceEvent` per call at the boundary, and its strace-style line or JSON object.

Every line, every JSON object and the summary are derived from the ocall table: argument names, types and
order come from the call's `Field`s, and integers are decoded by a small table from field names to families
of constants (`FIELD_CONSTANTS`).  There is no printer for any particular call.

Apart from `trace.py` (which decides what is traced and where it goes) because rendering is pure: it touches
no descriptor, so a tool can format events the library API handed it without a tracer.
"""

from __future__ import annotations

import errno as E
import fcntl as _fcntl
import functools
import os as _pyos
import select as _select
import socket as _socket
import time as _time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ocall_bridge import types as T
from ocall_bridge.calls import BY_NAME, Call

# ---------------------------------------------------------------------------------------------------------
# The event
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceEvent:
    """One call at the boundary, as the library API hands it to `Enclave(trace=callable)`.

    `args` and `result` are the values that crossed (paths as bytes, host handle numbers, the results tuple of
    a call with several results); `errno` is 0 on success; `marks` say what else happened: "inside" (served in
    the enclave), "denied: RULE", "INJECTED ...", "HOST VIOLATION: ...".
    """

    thread: int
    call: str
    args: tuple
    result: Any
    errno: int
    duration_ns: int
    marks: tuple[str, ...] = ()
    family: str = ""
    counted: bool = True  # False for an annotation of an event already emitted (a host violation)

    def line(self) -> str:
        return format_text(self)

    def to_json(self) -> dict[str, Any]:
        return format_json(self)


# ---------------------------------------------------------------------------------------------------------
# Decoders: field name -> family of constants.  This is data; which field gets which family is the only
# knowledge here, and it is about names in the table, not about calls.
# ---------------------------------------------------------------------------------------------------------


@functools.cache
def _ints(module: Any) -> tuple[tuple[str, int], ...]:
    """A module's integer constants, read once (the decoders below ask socket's eight times: at every start)."""
    out = []
    for name in dir(module):
        value = getattr(module, name)
        if isinstance(value, int):
            out.append((name, int(value)))
    return tuple(out)


def _consts(modules: Iterable[Any], prefix: str, exclude: Iterable[str] = ()) -> dict[str, int]:
    out: dict[str, int] = {}
    skip = set(exclude)
    for module in modules:
        for name, value in _ints(module):
            if name.startswith(prefix) and name not in skip and name not in out:
                out[name] = value
    return out


# Aliases lose to their canonical names (O_NDELAY is O_NONBLOCK, O_FSYNC is O_SYNC ...).
_O = _consts([_pyos], "O_", ["O_NDELAY", "O_FSYNC", "O_RSYNC", "O_ACCMODE", "O_LARGEFILE", "O_ASYNC"])
_ACCMODE = 3


def _bits(value: int, table: dict[str, int]) -> str:
    """Greedy, widest constants first: O_SYNC (two bits) before O_DSYNC (one of them)."""
    parts = []
    rest = value
    for name, bit in sorted(table.items(), key=lambda kv: (-bin(kv[1]).count("1"), kv[1], kv[0])):
        if bit and rest & bit == bit:
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return "|".join(parts) if parts else "0"


def _enum(table: dict[str, int]) -> Callable[[int], str]:
    names: dict[int, str] = {}
    for name, value in sorted(table.items(), key=lambda kv: len(kv[0])):
        names.setdefault(value, name)
    return lambda v: names.get(v, str(v))


def _open_flags(v: int) -> str:
    acc = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}.get(v & _ACCMODE, str(v & _ACCMODE))
    rest = _bits(v & ~_ACCMODE, {k: b for k, b in _O.items() if b & ~_ACCMODE})
    return acc if rest == "0" else f"{acc}|{rest}"


def _flags_of(table: dict[str, int]) -> Callable[[int], str]:
    return lambda v: _bits(v, table)


def _octal(v: int) -> str:
    return f"0{v:o}" if v else "0"


def _access_mode(v: int) -> str:
    return "F_OK" if v == 0 else _bits(v, {"R_OK": 4, "W_OK": 2, "X_OK": 1})


_SOCK_TYPES = _enum(_consts([_socket], "SOCK_", ["SOCK_NONBLOCK", "SOCK_CLOEXEC"]))
_SOCK_FLAGS = {n: getattr(_socket, n) for n in ("SOCK_NONBLOCK", "SOCK_CLOEXEC") if hasattr(_socket, n)}


def _sock_type(v: int) -> str:
    flags = 0
    for bit in _SOCK_FLAGS.values():
        flags |= v & bit
    base = _SOCK_TYPES(v & ~flags)
    return base if not flags else f"{base}|{_bits(flags, _SOCK_FLAGS)}"


DECODERS: dict[str, Callable[[int], str]] = {
    "open_flags": _open_flags,
    "o_bits": _flags_of({k: b for k, b in _O.items() if b & ~_ACCMODE}),  # status flags with no access mode
    "mode": _octal,
    "access": _access_mode,
    "whence": _enum({n: getattr(_pyos, n) for n in ("SEEK_SET", "SEEK_CUR", "SEEK_END", "SEEK_DATA", "SEEK_HOLE")
                     if hasattr(_pyos, n)}),
    "how": _enum(_consts([_socket], "SHUT_")),
    "poll": _flags_of(_consts([_select], "POLL", ["POLLRDNORM", "POLLWRNORM"])),
    "lock": _flags_of(_consts([_fcntl], "LOCK_", ["LOCK_MAND", "LOCK_READ", "LOCK_WRITE", "LOCK_RW"])),
    "clock": _enum(_consts([_time], "CLOCK_")),
    "af": _enum(_consts([_socket], "AF_")),
    "sock_type": _sock_type,
    "msg": _flags_of(_consts([_socket], "MSG_", ["MSG_EOF", "MSG_FASTOPEN"])),
    "sol": _enum({**_consts([_socket], "SOL_"), **_consts([_socket], "IPPROTO_")}),
    "ai": _flags_of(_consts([_socket], "AI_")),
    "ni": _flags_of(_consts([_socket], "NI_", ["NI_MAXHOST", "NI_MAXSERV"])),
    "dt": _enum({"DT_UNKNOWN": 0, "DT_FIFO": 1, "DT_CHR": 2, "DT_DIR": 4, "DT_BLK": 6, "DT_REG": 8, "DT_LNK": 10,
                 "DT_SOCK": 12}),
}

# Which decoder a field gets: by (call, field) first, then by (family, field), then by field name alone.
FIELD_CONSTANTS: dict[tuple[str, str] | str, str] = {
    "flags": "open_flags",
    "mode": "mode",
    "whence": "whence",
    "how": "how",
    "events": "poll",
    "revents": "poll",
    "operation": "lock",
    "clock": "clock",
    "family": "af",
    "type": "sock_type",
    "level": "sol",
    ("access", "mode"): "access",
    ("pipe", "flags"): "o_bits",
    ("sockets", "flags"): "msg",
    ("accept", "flags"): "sock_type",
    ("getaddrinfo", "flags"): "ai",
    ("getnameinfo", "flags"): "ni",
    ("getdents", "type"): "dt",  # a directory entry's d_type, not a socket type
}


def decoder_for(c: Call, name: str) -> Callable[[int], str] | None:
    key = FIELD_CONSTANTS.get((c.name, name)) or FIELD_CONSTANTS.get((c.family, name)) or FIELD_CONSTANTS.get(name)
    return DECODERS.get(key) if key else None


# ---------------------------------------------------------------------------------------------------------
# Values -> text, by wire type
# ---------------------------------------------------------------------------------------------------------

STRING_LIMIT = 32  # strace's default -s
LIST_LIMIT = 3
_ESCAPES = {0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"}


def quote(data: bytes | bytearray | memoryview | str, limit: int = STRING_LIMIT) -> str:
    """strace's string form: escaped, in double quotes, abbreviated with '...' after `limit` bytes."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data[:limit + 1])
    out = []
    for b in raw[:limit]:
        esc = _ESCAPES.get(b)
        out.append(esc if esc else chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}")
    return '"' + "".join(out) + '"' + ("..." if len(raw) > limit or len(data) > limit else "")


@functools.singledispatch
def _value(t: Any, v: Any, c: Call, name: str) -> str:
    """A value as strace shows it, by its wire type (each type registers its form below)."""
    return repr(v)


@_value.register
def _(t: T.Int, v: Any, c: Call, name: str) -> str:
    dec = decoder_for(c, name) if t.role != T.HANDLE else None
    return dec(v) if dec is not None and isinstance(v, int) else str(v)


@_value.register
def _(t: T.Bool, v: Any, c: Call, name: str) -> str:
    return "true" if v else "false"


@_value.register
def _(t: T.Path, v: Any, c: Call, name: str) -> str:
    return quote(v, T.MAX_PATH)  # strace abbreviates buffers, never paths


@_value.register(T.Bytes)
@_value.register(T.Text)
def _(t: Any, v: Any, c: Call, name: str) -> str:
    return quote(v)


@_value.register
def _(t: T.Record, v: Any, c: Call, name: str) -> str:
    return _record(t, v, c)


@_value.register
def _(t: T.List, v: Any, c: Call, name: str) -> str:
    items = [_record(t.item, item, c) for item in v[:LIST_LIMIT]]
    more = f", ... /* {len(v)} entries */" if len(v) > LIST_LIMIT else ""
    return "[" + ", ".join(items) + more + "]"


def _record(rec: T.Record, v: Any, c: Call) -> str:
    if not isinstance(v, tuple | list) or len(v) != len(rec.fields):
        return repr(v)
    # Empty fields say nothing (an AF_INET address has no path); the rest are shown by name.
    parts = [f"{f.name}={_value(f.type, x, c, f.name)}" for f, x in zip(rec.fields, v, strict=True)
             if x not in (0, b"", "", None) or f is rec.fields[0]]
    return "{" + ", ".join(parts[:6]) + (", ..." if len(parts) > 6 else "") + "}"


def format_args(c: Call, args: tuple) -> str:
    if c.inside:  # no typed parameters: the Python arguments as the program passed them
        return ", ".join(quote(a) if isinstance(a, bytes | str) else repr(a) for a in args)
    return ", ".join(_value(f.type, a, c, f.name) for f, a in zip(c.params, args, strict=False))


def format_result(c: Call, result: Any) -> str:
    if c.inside:
        return "0" if result is None else quote(result) if isinstance(result, bytes | str) else repr(result)
    fields = c.results
    if not fields:
        return "0"
    if len(fields) == 1:
        f = fields[0]
        if isinstance(result, bytes | bytearray | memoryview | str):  # a buffer or a name: its length, then it
            return f"{len(result)} {quote(result)}"
        return _value(f.type, result, c, f.name)
    values = result if isinstance(result, tuple | list) else (result,)
    return "{" + ", ".join(f"{f.name}={_value(f.type, v, c, f.name)}"
                           for f, v in zip(fields, values, strict=False)) + "}"


def errno_name(err: int) -> str:
    if err > 0:
        return E.errorcode.get(err, f"E{err}")
    names = {getattr(_socket, n): n for n in dir(_socket) if n.startswith("EAI_")}
    return names.get(err, str(err))


# glibc's gai_strerror texts (Python has no binding for it): getaddrinfo failures travel as negative EAI_* codes.
_GAI_TEXT = {
    "EAI_ADDRFAMILY": "Address family for hostname not supported", "EAI_AGAIN": "Temporary failure in name "
    "resolution", "EAI_BADFLAGS": "Bad value for ai_flags", "EAI_FAIL": "Non-recoverable failure in name "
    "resolution", "EAI_FAMILY": "ai_family not supported", "EAI_MEMORY": "Memory allocation failure",
    "EAI_NODATA": "No address associated with hostname", "EAI_NONAME": "Name or service not known",
    "EAI_SERVICE": "Servname not supported for ai_socktype", "EAI_SOCKTYPE": "ai_socktype not supported",
    "EAI_SYSTEM": "System error", "EAI_OVERFLOW": "Argument buffer overflow",
}


def errno_text(err: int) -> str:
    if err > 0:
        return _pyos.strerror(err)
    return _GAI_TEXT.get(errno_name(err), f"error {err}")


def format_duration(ns: int) -> str:
    us = ns / 1000
    return f"<{us:.0f}us>" if us >= 1 else f"<{us:.1f}us>"


def format_text(ev: TraceEvent) -> str:
    c = BY_NAME.get(ev.call)
    args = format_args(c, ev.args) if c is not None else ", ".join(map(repr, ev.args))
    if ev.errno:
        res = f"-1 {errno_name(ev.errno)} ({errno_text(ev.errno)})"
    else:
        res = format_result(c, ev.result) if c is not None else repr(ev.result)
    marks = "".join(f" ({m})" for m in ev.marks)
    return f"[{ev.thread}] {ev.call}({args}) = {res}{marks} {format_duration(ev.duration_ns)}"


@functools.singledispatch
def _json_value(t: Any, v: Any, c: Call | None, name: str) -> Any:
    """A value for the JSON trace, by its wire type (None: a value with no declared type, shown as it is)."""
    if isinstance(v, bytes | bytearray | memoryview):
        b = bytes(v)
        return {"len": len(b), "head": b[:STRING_LIMIT].decode("utf-8", "backslashreplace")}
    if isinstance(v, tuple | list):
        return [_json_value(None, x, c, name) for x in v]
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return repr(v)


@_json_value.register
def _(t: T.Int, v: Any, c: Call | None, name: str) -> Any:
    if c is not None and t.role != T.HANDLE and isinstance(v, int):
        dec = decoder_for(c, name)
        return dec(v) if dec is not None and name not in ("mode",) else v
    return _json_value(None, v, c, name)


@_json_value.register
def _(t: T.Path, v: Any, c: Call | None, name: str) -> Any:
    return _pyos.fsdecode(bytes(v)) if isinstance(v, bytes | bytearray | memoryview) else _json_value(None, v, c, name)


@_json_value.register
def _(t: T.Record, v: Any, c: Call | None, name: str) -> Any:
    if isinstance(v, tuple | list) and len(v) == len(t.fields):
        return {f.name: _json_value(f.type, x, c, f.name) for f, x in zip(t.fields, v, strict=True)}
    return _json_value(None, v, c, name)


@_json_value.register
def _(t: T.List, v: Any, c: Call | None, name: str) -> Any:
    return [_json_value(t.item, x, c, name) for x in v]


def format_json(ev: TraceEvent) -> dict[str, Any]:
    c = BY_NAME.get(ev.call)
    if c is not None and not c.inside:
        args = {f.name: _json_value(f.type, a, c, f.name) for f, a in zip(c.params, ev.args, strict=False)}
        if ev.errno or not c.results:
            result: Any = None
        elif len(c.results) == 1:
            result = _json_value(c.results[0].type, ev.result, c, c.results[0].name)
        else:
            result = {f.name: _json_value(f.type, v, c, f.name) for f, v in zip(c.results, ev.result, strict=False)}
    else:
        args = {str(i): _json_value(None, a, None, "") for i, a in enumerate(ev.args)}
        result = _json_value(None, ev.result, None, "")
    out = {"thread": ev.thread, "call": ev.call, "family": ev.family, "args": args, "result": result,
           "errno": ev.errno, "duration_ns": ev.duration_ns, "marks": list(ev.marks)}
    if ev.errno:
        out["error"] = errno_name(ev.errno)
        out["message"] = errno_text(ev.errno)
    return out


__all__ = ["TraceEvent", "errno_name", "errno_text", "format_args", "format_json", "format_result", "format_text",
           "quote"]
