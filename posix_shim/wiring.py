"""Building the two halves of a session, the same way on every backend.

Every backend makes its host with `make_host` and its trusted client with `make_client`, so that options which
attach to either side (tracing, fault injection, the violation policy) are wired in one place.

Options understood here (all plain data except `trace`, which may also be a callable):

    trace          True / "stderr" / a FILE path / a callable receiving `trace.TraceEvent`s
    trace_filter   "files,sockets", "open,read", "!time" ...   (trace.parse_filter)
    trace_format   "text" (default) or "json"
    summary        True: a `strace -c` table on the host's stderr when the host closes
    inject         a list of fault-injection specs (ocall_bridge.inject.parse)
    violation      "raise" (default) or "abort"
    identity       {"measurement", "signer", "backend", "debug"}: what the host's platform signs for (manifest runs)
    platform_key   the simulated platform key file (default: attest.default_key_path())
    trusted        {path: sha256 hex}: the manifest's trusted files, checked inside the enclave (integrity.py)

With none of them, the host and client are exactly the plain ones: tracing off costs nothing.  Where the
enclave lives in another process, the backend passes the plain-data options to that process's `make_client`
(a callable cannot cross): the host keeps the sink, the summary and the injection; the enclave side appends
its own events (guard denials, inside calls, refused answers) to the same destination when that is a file or
stderr.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from ocall_bridge.access import Absent, Access
from ocall_bridge.calls import BY_NAME
from ocall_bridge.originals import time as real_time

if TYPE_CHECKING:  # the host's modules load only where a host is made (not in the enclave process), the
    # client's only where a client is made (not in the process backend's runner)
    from ocall_bridge.client import OcallClient, Transport
    from ocall_bridge.host.runtime import Entry, Host

    from . import trace as _trace


def make_host(access: Access, options: dict[str, Any], *, in_process: bool = True) -> Host:
    """The host of one enclave.  `in_process`: the enclave shares this interpreter (sim), so whatever the host may
    import while serving (the platform's signing and key derivation) is imported now, before program code runs;
    a host in a process of its own (the process backend's runner) imports it at first use, so a run that never
    attests or seals does not import cryptography at all."""
    from ocall_bridge.host import attest as _attest
    from ocall_bridge.host.runtime import Host

    from . import trace as _trace

    if in_process:
        if access.call_allowed("report"):
            _attest.preload()
        if access.call_allowed("seal_key"):
            from ocall_bridge.host import sealing as _sealing

            _sealing.preload()
    host = Host(_attest.HidePlatformKey(access, options.get("platform_key") or _attest.default_key_path(),
                                        confine_all="measurement" in (options.get("identity") or {})))
    # The platform (attest.report) signs for the enclave this host launched: the identity comes from the manifest
    # the runner verified (integrity.py), never from the enclave.
    host.identity = _attest.Identity.from_data(options.get("identity") or {})  # type: ignore[attr-defined]
    host.platform_key_path = options.get("platform_key")  # type: ignore[attr-defined]
    # Python children of this enclave are new enclaves of the same backend, started by this host's runner
    # (ocall_bridge/host/children.py); the policy they get is this host's copy.
    backend = (options.get("identity") or {}).get("backend")
    if backend:
        from ocall_bridge.host.children import Launcher

        host.child_launcher = Launcher(sys.executable, backend)  # type: ignore[attr-defined]
    # A child enclave's runner (--spawned): the descriptors its parent passed and the enclave fd number each is
    # to have; they become handles when the enclave asks (ocall_bridge/host/children.py `inherited`).
    host.inherit_pending = [(int(fd), int(real)) for fd, real in options.get("inherit") or ()]  # type: ignore
    tracer = _trace.tracer_from_options(options)
    specs = options.get("inject") or []
    if tracer is None and not specs:
        return host
    # Tracing and injection wrap this host's `perform` (an instance attribute shadowing the method; `serve` calls
    # self.perform), so a host without them runs the unwrapped method: no flag is tested on the fast path.
    marks = threading.local()  # what the injector did to the call in progress on this thread
    if specs:
        def note(mark: str) -> None:
            pending = getattr(marks, "list", None)
            if pending is not None:
                pending.append(mark)

        from ocall_bridge import inject  # only with fault injection asked for: not on every start

        injector = inject.Injector([inject.parse(s) for s in specs], note=note)
        host.before.append(injector.before)
        # Deliberate: an instance attribute shadows the method, with the plain (entry, args) signature; Host.serve
        # passes `into` only to the unwrapped method (it checks for this override).
        host.perform = injector.wrap(host.perform)  # type: ignore[method-assign,assignment]
        if injector.lying:  # lies rewrite the encoded answer, so they wrap serve (inject.Injector.wrap_serve)
            # Same signature; mypy still refuses any callable assigned over a method (the deliberate override).
            host.serve = injector.wrap_serve(host.serve)  # type: ignore[method-assign,assignment]
        host.injector = injector  # type: ignore[attr-defined]
    if tracer is not None:
        host.perform = _traced_perform(host.perform, tracer, marks)  # type: ignore[method-assign]  # as above
        close = host.close

        def close_and_report() -> None:
            try:
                close()
            finally:
                tracer.close()

        host.close = close_and_report  # type: ignore[method-assign]
    host.tracer = tracer  # type: ignore[attr-defined]
    return host


def _traced_perform(perform: Any, tracer: _trace.Tracer, marks: threading.local) -> Any:
    """Host.perform, reporting each call to the tracer: thread, arguments as they arrived, answer, time."""
    from ocall_bridge.host.runtime import NATIVE

    from . import trace as _trace

    perf = real_time.perf_counter_ns  # the host's clock: the enclave's may be interposed
    strerror = os.strerror
    get_tid = threading.get_native_id
    emit = tracer.emit
    Event = _trace.TraceEvent

    def perform_traced(entry: Entry, args: tuple) -> Any:
        c = entry.codec.call
        if not tracer.wants(c.name):
            return perform(entry, args)
        marks.list = pending = []
        tid = get_tid()
        native = getattr(NATIVE, "syscall", None)
        if native:  # a syscall of the child's native code, forwarded by the supervisor: its thread, its name
            pending.append(f"native {native}")
            tid = NATIVE.tid
        t0 = perf()
        try:
            result = perform(entry, args)
        except OSError as exc:
            elapsed = perf() - t0
            marks.list = None
            err = exc.errno if isinstance(exc.errno, int) and exc.errno else errno.EIO
            why = exc.strerror
            if why and why != "injected" and err > 0 and why != strerror(err):
                # Not the kernel's answer but the host's own decision (its copy of the policy, a request it
                # found malformed): the host says why.
                denied = err in (errno.EACCES, errno.ENOSYS) or isinstance(why, Absent)  # Absent: ENOENT, a denial
                pending.append(f"{'denied' if denied else 'refused'} by host: {why}")
            emit(Event(tid, c.name, args, None, err, elapsed, tuple(pending), c.family))
            raise
        elapsed = perf() - t0
        marks.list = None
        emit(Event(tid, c.name, args, result, 0, elapsed, tuple(pending), c.family))
        return result

    return perform_traced


def make_client(transport: Transport, access: Access, options: dict[str, Any]) -> OcallClient:
    # Imported here, before the enclave is entered (both backends make the client first): the process
    # backend's runner never makes a client and does not import the codecs and checks for one.
    from ocall_bridge.client import OcallClient

    # The command line (--on-violation) wins over the policy's `violation` key.
    client = OcallClient(transport, violation=options.get("violation") or access.violation)
    # Every backend serves REALTIME/MONOTONIC from a cached clock (enclave_libc/time.py) unless the run asks
    # for strict time; injected faults are meant to reach the checks on every read, so they make time strict too.
    client.cached_clock = (not options.get("strict_time")  # type: ignore[attr-defined]
                           and not options.get("inject"))
    if options.get("trusted") is not None:  # a signed manifest's run: its trusted files are checked inside
        from enclave_libc import trusted as trusted_files

        client.stubs = trusted_files.guard(client, options["trusted"])
    if not options.get("trace") and not options.get("summary"):
        return client
    from . import trace as _trace

    host = getattr(transport, "host", None)
    tracer = getattr(host, "tracer", None)
    if tracer is None and host is None:
        # The enclave is in a process of its own: it appends its events to the host's destination.
        tracer = _trace.tracer_from_options(options, enclave_side=True)
    if tracer is None or not (tracer.emitting or tracer.summary):
        return client
    get_tid = threading.get_native_id
    Event = _trace.TraceEvent

    def on_event(call: str, args: tuple, result: Any, err: int, ns: int, marks: tuple, counted: bool) -> None:
        c = BY_NAME.get(call)
        tracer.emit(Event(get_tid(), call, args, result, err, ns, marks, c.family if c else "", counted))

    client.on_event = on_event
    _trace.install_inside_tracing()
    return client

