"""What a test did at the boundary: the policy denials it met and (with --enclave-trace) its ocalls, for the
failure report; and the runtime's own frames taken out of its traceback.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest


def _package_dir(file: str | None) -> str:
    if file is None:  # a namespace package has no __init__.py; these three are regular packages
        raise ImportError("posix_shim's own packages must be regular packages (with __init__.py)")
    return os.path.dirname(os.path.abspath(file)) + os.sep


INTERNAL_DIRS = tuple(_package_dir(m) for m in (
    __import__("posix_shim").__file__, __import__("enclave_libc").__file__, __import__("ocall_bridge").__file__))

_HINT = re.compile(r"allow with --allow-(read|write|net|env)=([^\s,)]+)")


def hide_runtime_frames(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Take the runtime's own frames (the trusted libc, the boundary, this front end) out of a test's
    traceback: to the test they are what libc is to a native run, so the last frame shown is the test's or its
    library's call.  The frames are unlinked from the raw traceback (as `program.print_exception` does for a
    program), because pytest rebuilds its entries from the raw links when it cuts the traceback."""
    from _pytest._code import Traceback

    from ..program import _strip

    head = excinfo.tb
    if str(Traceback(head)[0].path).startswith(INTERNAL_DIRS):
        return  # nothing of the test's own above the runtime: keep everything
    _strip(excinfo.value, set())
    excinfo.traceback = Traceback(head)


@dataclasses.dataclass
class Record:
    """One test's boundary record, kept in its stash: filled while it runs, reported if it fails."""

    denials: list[tuple[str, str, int]] = dataclasses.field(default_factory=list)
    events: list[Any] | None = None
    failed: bool = False
    recording: bool = False  # the trace keeps the test's own phases only, not pytest's reporting in between

    def denial_text(self) -> str:
        lines = []
        for call, reason, err in self.denials:
            what = "refused (ENOSYS)" if err != 13 else "denied"
            lines.append(f"{call}() {what}: {reason}")
            hint = _HINT.search(reason)
            if hint:
                kind, value = hint.groups()
                lines.append(f"    to allow it in this test only: @pytest.mark.enclave(allow_{kind}=[{value!r}])")
        lines.append("(the session's policy: [tool.posix_shim] in pyproject.toml or --enclave-policy FILE; "
                     "see docs/pytest.md)")
        return "\n".join(lines)

    def write_trace(self, directory: str, nodeid: str) -> None:
        from ..trace_format import format_text

        os.makedirs(directory, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:200] or "test"
        lines = [f"# posix_shim trace of the failing test {nodeid}"]
        lines += [format_text(ev) for ev in self.events or ()]
        if self.events is None:
            lines.append("# (nothing ran inside an enclave)")
        with open(os.path.join(directory, name + ".trace"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


RECORD = pytest.StashKey[Record]()


def watch(rt: Any, record: Record, trace: bool) -> Callable[[], None]:
    """Record the runtime's policy denials (and, with `trace`, every ocall) into `record`; returns the undo.

    Denials are seen where the enclave's guard reports them (`client.denied`), whether or not the library that
    made the call lets the PermissionError reach the test.  Ocalls are seen at the guarded stubs (`rt.ocall`),
    which the families look up on each call, so this is the enclave's view: arguments sent, answers accepted.
    """
    client = rt.client
    original_denied = client.denied

    def denied(call: str, args: tuple, reason: str, err: int = 13) -> None:
        record.denials.append((call, reason, err))
        original_denied(call, args, reason, err)

    client.denied = denied
    undo_ocalls: Callable[[], None] = lambda: None
    if trace:
        undo_ocalls = _trace_ocalls(rt, record)

    def undo() -> None:
        undo_ocalls()
        if client.__dict__.get("denied") is denied:
            del client.denied

    return undo


def _trace_ocalls(rt: Any, record: Record) -> Callable[[], None]:
    from enclave_libc.errors import PolicyDenied, PolicyHidden
    from ocall_bridge.calls import BY_NAME
    from ocall_bridge.originals import time as real_time

    from ..trace_format import TraceEvent

    if record.events is None:
        record.events = []
    events = record.events
    perf = real_time.perf_counter_ns  # the host's clock: the enclave's is itself an ocall
    tid = threading.get_native_id
    namespace = rt.ocall
    originals = dict(vars(namespace))

    def traced(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        family = BY_NAME[name].family if name in BY_NAME else ""

        def call(*args: Any) -> Any:
            if not record.recording:
                return fn(*args)
            t0 = perf()
            try:
                result = fn(*args)
            except OSError as exc:
                marks = (f"denied: {exc.reason}",) if isinstance(exc, PolicyDenied | PolicyHidden) else ()
                events.append(TraceEvent(tid(), name, args, None, exc.errno or 5, perf() - t0, marks, family))
                raise
            events.append(TraceEvent(tid(), name, args, result, 0, perf() - t0, (), family))
            return result

        return call

    for name, fn in originals.items():
        setattr(namespace, name, traced(name, fn))
    return lambda: namespace.__dict__.update(originals)


def recording(item: pytest.Item) -> Iterator[None]:
    """The body of a hookwrapper that marks the record as recording around the hook."""
    record: Record | None = item.stash.get(RECORD, None)
    if record is None:
        yield
        return
    record.recording = True
    try:
        yield
    finally:
        record.recording = False

