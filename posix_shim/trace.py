"""Seeing the boundary: an strace for the enclave.

One `TraceEvent` per call, from two places:

* the **host**, for every ocall that reaches it (`wiring.make_host` wraps `Host.perform`): the decoded
  arguments, the answer, the errno, the time the host took, and marks for what the host decided on its own
  (an injected fault, a refusal by the host's copy of the policy);
* the **enclave**, for what the host never sees (`wiring.make_client`): a call the enclave's policy guard
  denied before it left (marked with the rule), a call served inside the enclave (dup, getcwd, chdir, umask
  ...), and an answer refused as a host violation (an extra event marking the call the host just answered).

Every line, every JSON object and the summary are derived from the ocall table: argument names, types and
order come from the call's `Field`s, and integers are decoded by a small table from field names to families
of constants (`FIELD_CONSTANTS`).  There is no printer for any particular call.

The sink is host-side: lines go to the host's real stderr or to a file the host opened, with the host's own
captured `write`, never through an enclave fd (in the enclave, stderr is itself an ocall).  A callable sink
(`Enclave(trace=callable)`) receives the events; ocalls it makes itself (a `print` inside the callback on the
sim backend) are not traced, so a trace can never feed itself.
"""

from __future__ import annotations

import argparse
import errno as E
import fcntl as _fcntl
import json
import os as _pyos
import select as _select
import socket as _socket
import threading
import time as _time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ocall_bridge import types as T
from ocall_bridge.calls import BY_NAME, CALLS, FAMILIES, Call
from ocall_bridge.originals import os as real_os
from ocall_bridge.originals import time as real_time

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


def _consts(modules: Iterable[Any], prefix: str, exclude: Iterable[str] = ()) -> dict[str, int]:
    out: dict[str, int] = {}
    skip = set(exclude)
    for module in modules:
        for name in dir(module):
            value = getattr(module, name)
            if name.startswith(prefix) and name not in skip and isinstance(value, int) and name not in out:
                out[name] = int(value)
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


def _value(t: T.WireType, v: Any, c: Call, name: str) -> str:
    if isinstance(t, T.Int):
        dec = decoder_for(c, name) if t.role != "handle" else None
        return dec(v) if dec is not None and isinstance(v, int) else str(v)
    if isinstance(t, T.Bool):
        return "true" if v else "false"
    if isinstance(t, T.Float):
        return repr(v)
    if isinstance(t, T.Path):
        return quote(v, T.MAX_PATH)  # strace abbreviates buffers, never paths
    if isinstance(t, T.Bytes | T.Text):
        return quote(v)
    if isinstance(t, T.Record):
        return _record(t, v, c)
    if isinstance(t, T.List):
        items = [_record(t.item, item, c) for item in v[:LIST_LIMIT]]
        more = f", ... /* {len(v)} entries */" if len(v) > LIST_LIMIT else ""
        return "[" + ", ".join(items) + more + "]"
    return repr(v)


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
        if isinstance(f.type, T.Bytes | T.Text | T.Path):
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


def _json_value(t: T.WireType | None, v: Any, c: Call | None, name: str) -> Any:
    if isinstance(t, T.Int) and c is not None and t.role != "handle" and isinstance(v, int):
        dec = decoder_for(c, name)
        return dec(v) if dec is not None and name not in ("mode",) else v
    if isinstance(v, bytes | bytearray | memoryview):
        b = bytes(v)
        if isinstance(t, T.Path):
            return _pyos.fsdecode(b)
        return {"len": len(b), "head": b[:STRING_LIMIT].decode("utf-8", "backslashreplace")}
    if isinstance(t, T.Record) and isinstance(v, tuple | list) and len(v) == len(t.fields):
        return {f.name: _json_value(f.type, x, c, f.name) for f, x in zip(t.fields, v, strict=True)}
    if isinstance(t, T.List):
        return [_json_value(t.item, x, c, name) for x in v]
    if isinstance(v, tuple | list):
        return [_json_value(None, x, c, name) for x in v]
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return repr(v)


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


# ---------------------------------------------------------------------------------------------------------
# Which calls are traced
# ---------------------------------------------------------------------------------------------------------

CLASSES: dict[str, Callable[[Call], bool]] = {
    # strace-like classes, derived from the table
    "%path": lambda c: any(isinstance(f.type, T.Path) for f in c.params),
    "%fd": lambda c: any(isinstance(f.type, T.Int) and f.type.role == "handle" for f in c.params),
    "%inside": lambda c: c.inside,
    "%blocking": lambda c: c.blocking,
}


def is_filter(text: str) -> bool:
    """Whether every comma-separated word names calls (so `--trace=files,open` is a filter, not a file)."""
    words = [w.strip() for w in text.split(",")]
    return bool(words) and all(w.lstrip("!") in BY_NAME or w.lstrip("!") in FAMILIES or w.lstrip("!") in CLASSES
                               or w.lstrip("!") == "all" for w in words if w)


def parse_filter(text: str | Iterable[str] | None) -> frozenset[str] | None:
    """A set of call names, or None for every call.  Words: call, family, %class, all; '!' excludes."""
    if text is None:
        return None
    words = [w.strip() for w in (text.split(",") if isinstance(text, str) else text)]
    words = [w for w in words if w]
    if not words:
        return None
    include: set[str] = set()
    exclude: set[str] = set()
    for word in words:
        target = exclude if word.startswith("!") else include
        name = word.lstrip("!")
        if name in BY_NAME:
            target.add(name)
        elif name in FAMILIES:
            target.update(c.name for c in CALLS if c.family == name)
        elif name in CLASSES:
            target.update(c.name for c in CALLS if CLASSES[name](c))
        elif name == "all":
            target.update(BY_NAME)
        else:
            raise ValueError(f"unknown call, family or class {name!r} in trace filter "
                             f"(families: {', '.join(FAMILIES)}; classes: {', '.join(CLASSES)})")
    if not include:
        include = set(BY_NAME)
    return frozenset(include - exclude)


# ---------------------------------------------------------------------------------------------------------
# The tracer: filter, sink, summary
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Stat:
    calls: int = 0
    errors: int = 0
    ns: int = 0


@dataclass
class Tracer:
    """Where events go.  One per host (and, on a backend whose enclave is another process, one there too)."""

    sink: Callable[[TraceEvent], None] | None = None  # the library callback
    fd: int = -1  # a host descriptor to write lines to (-1: none)
    json: bool = False
    calls: frozenset[str] | None = None  # None: every call
    summary: bool = False
    summary_fd: int = 2
    owns_fd: bool = False
    stats: dict[str, _Stat] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)
    closed: bool = False
    _sink_failed: bool = False

    @property
    def emitting(self) -> bool:
        return self.sink is not None or self.fd >= 0

    def wants(self, name: str) -> bool:
        return self.calls is None or name in self.calls

    def emit(self, ev: TraceEvent) -> None:
        if self.closed or not self.wants(ev.call):
            return
        local = self._local
        if getattr(local, "busy", False):
            return  # an ocall made by the sink itself: never trace our own trace writes
        local.busy = True
        try:
            if self.summary:
                with self._lock:
                    st = self.stats.get(ev.call)
                    if st is None:
                        st = self.stats[ev.call] = _Stat()
                    # An annotation (a refused answer) remarks on a call already counted: it adds nothing.
                    if ev.counted:
                        st.calls += 1
                        st.ns += ev.duration_ns
                        st.errors += 1 if ev.errno else 0
            if self.fd >= 0:
                text = json.dumps(format_json(ev)) if self.json else format_text(ev)
                self._write(self.fd, text + "\n")
            if self.sink is not None:
                try:
                    self.sink(ev)
                except Exception as exc:  # a broken callback must not turn the program's call into a failure
                    if not self._sink_failed:
                        self._sink_failed = True
                        self._write(2, f"posix_shim: the trace callback raised {type(exc).__name__}: {exc} "
                                       f"(reported once; tracing goes on)\n")
        finally:
            local.busy = False

    def _write(self, fd: int, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")
        with self._lock:
            while data:
                try:
                    n = real_os.write(fd, data)
                except InterruptedError:
                    continue
                except OSError:
                    return  # the trace destination is gone; the program goes on
                data = data[n:]

    def summary_table(self) -> str:
        """The `strace -c` table."""
        with self._lock:
            rows = sorted(self.stats.items(), key=lambda kv: (-kv[1].ns, -kv[1].calls, kv[0]))
        total_ns = sum(s.ns for _, s in rows)
        total_calls = sum(s.calls for _, s in rows)
        total_errors = sum(s.errors for _, s in rows)
        rule = "------ ----------- ----------- --------- --------- ----------------"
        lines = ["% time     seconds  usecs/call     calls    errors call", rule]
        for name, s in rows:
            pct = 100.0 * s.ns / total_ns if total_ns else 0.0
            per = s.ns // 1000 // s.calls if s.calls else 0
            errors = str(s.errors) if s.errors else ""
            lines.append(f"{pct:6.2f} {s.ns / 1e9:11.6f} {per:11d} {s.calls:9d} {errors:>9} {name}")
        lines.append(rule)
        lines.append(f"{100.0 if total_ns else 0.0:6.2f} {total_ns / 1e9:11.6f} {'':>11} {total_calls:9d} "
                     f"{total_errors or '':>9} total")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        if self.closed:
            return
        if self.summary:
            self._write(self.summary_fd, self.summary_table())
        self.closed = True
        if self.owns_fd and self.fd >= 0:
            try:
                real_os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


def open_destination(dest: Any, append: bool = False) -> tuple[int, bool]:
    """(fd, owned) for a trace destination: True/'-'/'stderr' is the host's stderr, a str a file path."""
    if dest is True or dest in ("-", "stderr"):
        return 2, False
    path = _pyos.fsencode(dest)
    flags = real_os.O_WRONLY | real_os.O_CREAT | real_os.O_APPEND | real_os.O_CLOEXEC
    if not append:
        flags |= real_os.O_TRUNC
    return real_os.open(path, flags, 0o644), True


def tracer_from_options(options: dict[str, Any], enclave_side: bool = False) -> Tracer | None:
    """The tracer the options ask for, or None.

    Options (all plain data except `trace` may be a callable): trace (True, "stderr", a FILE path, or a
    callable receiving TraceEvents), trace_filter, trace_format ("text" | "json"), summary (bool).
    `enclave_side` is for a backend whose enclave runs in another process: it appends to the host's file
    rather than truncating it, and keeps no summary (the host's summary counts the ocalls).
    """
    dest = options.get("trace")
    summary = bool(options.get("summary")) and not enclave_side
    if not dest and not summary:
        return None
    sink = dest if callable(dest) else None
    fd, owned = -1, False
    if dest and sink is None:
        fd, owned = open_destination(dest, append=enclave_side)
    fmt = options.get("trace_format", "text")
    if fmt not in ("text", "json"):
        raise ValueError(f"trace_format must be 'text' or 'json', not {fmt!r}")
    return Tracer(sink=sink, fd=fd, json=fmt == "json", calls=parse_filter(options.get("trace_filter")),
                  summary=summary, owns_fd=owned)


# ---------------------------------------------------------------------------------------------------------
# Calls served inside the enclave
# ---------------------------------------------------------------------------------------------------------

_inside_installed = False
_inside_lock = threading.Lock()


def install_inside_tracing() -> None:
    """Make the enclave's own implementations of the `inside` rows report to the active enclave's tracer.

    The functions are found by name in `enclave_libc.<family>` (the table says which rows are inside) and
    wrapped once per process, only when some enclave in it traces: with no tracing anywhere, nothing is
    wrapped and nothing costs.  A wrapper asks the *active* runtime's client for its hook, so enclaves that do
    not trace pay one attribute lookup per inside call.
    """
    global _inside_installed
    with _inside_lock:
        if _inside_installed:
            return
        import importlib

        from enclave_libc import runtime

        perf = real_time.perf_counter_ns
        for c in CALLS:
            if not c.inside:
                continue
            try:
                module = importlib.import_module(f"enclave_libc.{c.family}")
            except ModuleNotFoundError:
                continue
            fn = getattr(module, c.name, None)
            if fn is None or getattr(fn, "__posix_shim_traced__", False):
                continue
            wrapper = _inside_wrapper(c, fn, runtime, perf)
            setattr(module, c.name, wrapper)
            patches = getattr(module, "PATCHES", {})
            for original, replacement in list(patches.items()):
                if replacement is fn:
                    patches[original] = wrapper
        _inside_installed = True


def _inside_wrapper(c: Call, fn: Callable[..., Any], runtime: Any, perf: Callable[[], int]) -> Callable[..., Any]:
    name = c.name

    def traced(*args: Any, **kwargs: Any) -> Any:
        rt = runtime.RT
        hook = getattr(getattr(rt, "client", None), "on_event", None)
        if hook is None:
            return fn(*args, **kwargs)
        t0 = perf()
        try:
            result = fn(*args, **kwargs)
        except OSError as exc:
            hook(name, args, None, exc.errno or E.EIO, perf() - t0, ("inside",), True)
            raise
        hook(name, args, result, 0, perf() - t0, ("inside",), True)
        return result

    traced.__name__ = fn.__name__
    traced.__qualname__ = fn.__qualname__
    traced.__doc__ = fn.__doc__
    traced.__wrapped__ = fn  # type: ignore[attr-defined]
    traced.__posix_shim_traced__ = True  # type: ignore[attr-defined]
    return traced


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Trace, summary and injection flags."""
    group = parser.add_argument_group("tracing and fault injection")
    group.add_argument("--trace", nargs="?", const=True, default=None, metavar="FILE|CALLS",
                       help="trace every ocall to stderr, strace style; --trace=FILE writes to FILE; "
                            "--trace=files,open,!close traces only those calls (call, family or %%class names)")
    group.add_argument("--trace-output", metavar="FILE", help="write the trace to FILE (implies --trace)")
    group.add_argument("--trace-filter", metavar="CALLS",
                       help="trace only these calls: names, families, %%path, %%fd, %%inside, %%blocking; '!' "
                            "excludes (implies --trace)")
    group.add_argument("--trace-format", choices=("text", "json"), default="text",
                       help="text lines (default) or JSON lines for tools")
    group.add_argument("--summary", action="store_true",
                       help="at exit, print a table of calls, errors and time per call to stderr (strace -c)")
    group.add_argument("--inject", action="append", default=[], metavar="SPEC",
                       help="host-side fault injection: CALL:error=ERRNO[:when=N[+STEP]], CALL:short[=N], "
                            "CALL:delay=MS, CALL:lie=KIND (repeatable)")
    group.add_argument("--on-violation", choices=("raise", "abort"), default=None,
                       help="when the host lies: raise OSError(EIO) in the program (default), or abort the enclave "
                            "at once with status 70")
    group.add_argument("--strict-time", action="store_true",
                       help="ask the host on every clock read (default on the process backend: a cached clock, "
                            "resynced with the host every 10 ms; docs/time-env.md)")


def _usage_error(message: str) -> SystemExit:
    """What argparse does with a bad option: the message on stderr, exit status 2."""
    import sys

    print(f"posix-shim: error: {message}", file=sys.stderr)
    return SystemExit(2)


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options for Enclave(**options) derived from the trace flags; plain data, so any backend can carry them."""
    out: dict[str, Any] = {}
    trace = getattr(args, "trace", None)
    filt = getattr(args, "trace_filter", None)
    dest: Any = None
    if isinstance(trace, str):
        if is_filter(trace):
            filt = trace if filt is None else f"{trace},{filt}"
            dest = True
        else:
            dest = _pyos.path.abspath(trace)
    elif trace:
        dest = True
    if getattr(args, "trace_output", None):
        dest = _pyos.path.abspath(args.trace_output)
    if filt and dest is None:
        dest = True
    if dest is not None:
        out["trace"] = dest
        out["trace_format"] = getattr(args, "trace_format", "text")
        if filt:
            try:
                parse_filter(filt)
            except ValueError as exc:
                raise _usage_error(str(exc)) from None
            out["trace_filter"] = filt
    if getattr(args, "summary", False):
        out["summary"] = True
        if filt and "trace_filter" not in out:
            out["trace_filter"] = filt
    specs = list(getattr(args, "inject", None) or [])
    if specs:
        from ocall_bridge import inject  # only with --inject: not on every start

        for spec in specs:
            try:
                inject.parse(spec)
            except inject.InjectSpecError as exc:
                raise _usage_error(f"--inject {exc}") from None
        out["inject"] = specs
    if getattr(args, "on_violation", None):
        out["violation"] = args.on_violation
    if getattr(args, "strict_time", False):
        out["strict_time"] = True
    return out


__all__ = ["TraceEvent", "Tracer", "add_arguments", "backend_options", "format_text", "format_json",
           "parse_filter", "tracer_from_options", "install_inside_tracing"]
