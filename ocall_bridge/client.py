"""The trusted side of the boundary: one stub per ocall, generated from the table.

`OcallClient(transport).stubs.pread(handle, 16, 0)` encodes the request, carries it across, decodes the answer,
and *validates* it before anything is returned: the answer must be for this call and this sequence number,
carry an errno the call can return, and satisfy every bound the table declares.  A lie raises `HostViolation`
(OSError, EIO), is logged, and is never acted on.  A legitimate failure raises `OSError(errno)`; callers add the
filename where Python would.
"""

from __future__ import annotations

import errno as _errno
import itertools
import logging
import os as _os
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Protocol

from .errors import HostViolation
from .types import MAX_FRAME
from .validate import CallChecks, Plausibility
from .wire import CODECS, CallCodec, WireError, decode_answer, encode_request

log = logging.getLogger("posix_shim.enclave")

# Captured at import: the interposer rewrites os attributes, and the client must keep the real ones.
_strerror, _write, _exit = _os.strerror, _os.write, _os._exit


_EINTR = _errno.EINTR


class Transport(Protocol):
    name: str

    def roundtrip(self, frame: bytes, seq: int) -> bytes | memoryview: ...

    def close(self) -> None: ...


# What the enclave side tells a tracer about the calls the host never sees answered as they were: a call the
# policy guard denied before it left, a call served inside the enclave, an answer refused as a host violation.
# (call, args, result, errno, duration_ns, marks, counted); counted=False marks an annotation of a call the
# host side already reported.  None (the default) costs nothing: it is only consulted off the fast path.
EventHook = Callable[[str, tuple, Any, int, int, tuple, bool], None]


class OcallClient:
    """Issues ocalls over one transport.  Thread-safe: sequence numbers come from an atomic counter."""

    def __init__(self, transport: Transport, violation: str = "raise") -> None:
        if violation not in ("raise", "abort"):
            raise ValueError(f"violation must be 'raise' or 'abort', not {violation!r}")
        self.transport = transport
        self.violation = violation
        self.violations: list[HostViolation] = []
        # What the run has seen (validate.Plausibility): every handle the host ever handed over (its table never
        # reuses a number, so a handle given twice would alias another open file), listings, clocks, identity.
        self.plausible = Plausibility()
        self.issued: set[int] = self.plausible.issued
        self.on_event: EventHook | None = None
        self._seq = itertools.count(1)
        self.stubs = SimpleNamespace(**{codec.call.name: self._stub(codec) for codec in CODECS.values()})

    def _stub(self, codec: CallCodec) -> Callable[..., Any]:
        stub = self._exchange(codec, codec.unpack_answer, False)
        if codec.unpack_view is not None:
            # For a call answering one byte string: the data is copied once, from the answer frame into the
            # caller's buffer, instead of into a bytes object first.  FileIO.readinto uses it for bulk reads.
            into = self._exchange(codec, codec.unpack_view, True)
            into.__name__ = f"{codec.call.name}_into"
            into.__qualname__ = f"ocall.{codec.call.name}.into"
            stub.into = into  # type: ignore[attr-defined]
        stub.__name__ = codec.call.name
        stub.__qualname__ = f"ocall.{codec.call.name}"
        return stub

    def _exchange(self, codec: CallCodec, unpack: Callable[[Any, int], Any], into: bool) -> Callable[..., Any]:
        """One call's exchange: encode, carry, decode, check.  With `into`, the function takes the caller's buffer
        first (`into(buffer, *args) -> count`): the answer's bytes land there, under the same checks; `buffer` must
        hold as many bytes as the call's bound allows (the checks hold the host to that bound).  One closure
        serves both (a local truth test), so the small ocalls pay no extra Python frame."""
        checks = CallChecks(codec.call)
        # The checks of the table (ranges, bounds, relations), then those that remember the run: one list.
        answer_checks = [*checks.answer, *self.plausible.checks(codec.call)]
        begin = self.plausible.begin if codec.call.name in Plausibility.TIMED else None
        retry = codec.call.retry_eintr  # the row's fact (PEP 475), see calls.Call
        allowed = checks.errnos
        single = codec.nresults == 1
        none = codec.nresults == 0
        seqs = self._seq
        transport = self.transport
        name = codec.call.name
        refuse = self._refuse
        # The compiled codecs of this call (wire._fast_codecs): what encode_request / decode_answer do, minus
        # their lookups, for a request and a well-formed successful answer; anything else goes the generic way.
        pack_request = codec.pack_request
        # The sim backend's lean route (transport.SimTransport.lean): no frames for arguments that conform.py
        # vouches for; the host runs the same service (host/runtime.py `run`), and the answer meets the same
        # checks below.  Never for the in-place bulk route.
        offer = getattr(transport, "lean", None)
        lean = offer(codec.number) if offer is not None and not into else None
        conform: Any = None  # codec.conform_request, fetched at the first lean call (compiled then: wire.py)
        # The one-copy route (transports that have it, the ring): the answer's data lands in the caller's buffer
        # straight from shared memory, and `answer` is then a private probe frame carrying the header as read.
        place = getattr(transport, "roundtrip_into", None) if into else None
        head = codec.answer.size

        def exchange(*args: Any) -> Any:
            nonlocal conform
            whole = args
            if into:
                buffer, args = args[0], args[1:]
            if begin is not None:
                begin()  # the enclave's own counter brackets the host's answer
            seq = next(seqs) & 0xFFFFFFFF
            answer = None
            placed = False
            if lean is not None:
                if conform is None:
                    conform = codec.conform_request
                request = conform(args)
                if request is not None:
                    answer = lean(request, seq)
            if answer is None:
                try:
                    frame = pack_request(seq, args)
                    if len(frame) > MAX_FRAME:  # cannot happen for a table-derived layout; kept as the last word
                        frame = encode_request(codec, seq, args)
                except WireError as exc:
                    # The program passed something the call cannot carry (an int out of range): Python would
                    # raise OverflowError in the same place.
                    raise OverflowError(f"{name}: {exc}") from None
                if place is None:
                    answer = transport.roundtrip(frame, seq)
                else:
                    answer, placed = place(frame, seq, buffer, head)
            if type(answer) is tuple:  # the lean route's results, already in their decoded form
                err, results = 0, answer
            elif type(answer) is int:  # the lean route's errno answer
                err, results = answer, ()
            else:
                try:
                    results = unpack(answer, seq)
                    if placed:  # the checks below see the data where it now is, the caller's (private) buffer
                        if results is None:
                            raise WireError("not a data answer of this call")
                        results, err = (memoryview(buffer)[:len(results[0])],), 0
                    elif results is None:
                        err, results = decode_answer(answer, codec, seq)
                    else:
                        err = 0
                except WireError as exc:
                    raise refuse(name, f"malformed answer: {exc}", args) from None
            if err:
                if err not in allowed:
                    raise refuse(name, checks.check_errno(err) or "", args)
                if err == _EINTR and retry:
                    return exchange(*whole)  # signal handlers ran between the bytecodes that got us here
                raise OSError(err, _strerror(err) if err > 0 else f"error {err}")
            for check in answer_checks:
                problem = check(args, results)
                if problem:
                    raise refuse(name, problem, args)
            if into:
                data = results[0]
                n = len(data)
                if not placed:
                    buffer[:n] = data
                return n
            if single:
                return results[0]
            return None if none else results

        return exchange

    def _refuse(self, call: str, problem: str, args: tuple = ()) -> HostViolation:
        exc = HostViolation(call, problem)
        self.violations.append(exc)
        log.error("%s", exc.strerror)
        if self.on_event is not None:  # exc.errno is EIO (HostViolation), typed int | None by OSError's stub
            self.on_event(call, args, None, _errno.EIO, 0, (f"HOST VIOLATION: {problem}",), False)
        if self.violation == "abort":
            # Asylo's choice: an enclave that caught its host lying stops at once rather than go on.
            _write(2, f"{exc.strerror}; aborting the enclave\n".encode())
            _exit(70)  # EX_SOFTWARE
        return exc

    def denied(self, call: str, args: tuple, reason: str, err: int = 13) -> None:
        """The enclave's policy guard refused `call` before it left (EACCES, or ENOSYS for a call the policy
        does not enable): tell the tracer, which marks the call with the rule.  Never on the fast path."""
        if self.on_event is not None:
            self.on_event(call, args, None, err, 0, (f"denied: {reason}",), True)

    def close(self) -> None:
        self.transport.close()
