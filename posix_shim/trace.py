"""Seeing the boundary: an strace for the enclave.

One `TraceEvent` per call, from two places:

* the **host**, for every ocall that reaches it (`wiring.make_host` wraps `Host.perform`): the decoded
  arguments, the answer, the errno, the time the host took, and marks for what the host decided on its own
  (an injected fault, a refusal by the host's copy of the policy);
* the **enclave**, for what the host never sees (`wiring.make_client`): a call the enclave's policy guard
  denied before it left (marked with the rule), a call served inside the enclave (dup, getcwd, chdir, umask
  ...), and an answer refused as a host violation (an extra event marking the call the host just answered).

The events and their text/JSON forms are `trace_format.py` (derived from the ocall table; no printer for any
particular call).  This module decides which calls are traced (`parse_filter`), where events go (`Tracer`) and
wraps the calls served inside the enclave; `--inject` and `--on-violation` are `host_flags.py`.

The sink is host-side: lines go to the host's real stderr or to a file the host opened, with the host's own
captured `write`, never through an enclave fd (in the enclave, stderr is itself an ocall).  A callable sink
(`Enclave(trace=callable)`) receives the events; ocalls it makes itself (a `print` inside the callback on the
sim backend) are not traced, so a trace can never feed itself.
"""

from __future__ import annotations

import argparse
import errno as E
import json
import os as _pyos
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ocall_bridge import types as T
from ocall_bridge.calls import BY_NAME, CALLS, FAMILIES, Call
from ocall_bridge.originals import os as real_os
from ocall_bridge.originals import time as real_time

from . import host_flags
from .trace_format import TraceEvent, format_json, format_text, quote

# ---------------------------------------------------------------------------------------------------------
# Which calls are traced
# ---------------------------------------------------------------------------------------------------------

CLASSES: dict[str, Callable[[Call], bool]] = {
    # strace-like classes, derived from the table
    "%path": lambda c: any(isinstance(f.type, T.Path) for f in c.params),
    "%fd": lambda c: bool(c.fd_params),
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
    # What the function declares (its rows, what it replaces, a refusal) stays true of the wrapper that stands in
    # for it in PATCHES: compat's support table and tests/test_uses.py read it there.
    traced.__dict__.update(fn.__dict__)
    traced.__wrapped__ = fn  # type: ignore[attr-defined]
    traced.__posix_shim_traced__ = True  # type: ignore[attr-defined]
    return traced


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The trace and summary flags, with the host-behaviour flags (`host_flags`) in the same --help group."""
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
    host_flags.add_arguments(group)


def _usage_error(message: str) -> SystemExit:
    """What argparse does with a bad option: the message on stderr, exit status 2."""
    import sys

    print(f"posix-shim: error: {message}", file=sys.stderr)
    return SystemExit(2)


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options for Enclave(**options) derived from the trace and host-behaviour flags; plain data, so any
    backend can carry them.  A bad value exits as argparse does (status 2)."""
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
    try:
        out.update(host_flags.options(args))
    except ValueError as exc:
        raise _usage_error(str(exc)) from None
    return out


__all__ = ["TraceEvent", "Tracer", "add_arguments", "backend_options", "format_text", "format_json",
           "parse_filter", "quote", "tracer_from_options", "install_inside_tracing"]
