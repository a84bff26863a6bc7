"""The trusted side of the boundary: one stub per ocall, generated from the table.

`OcallClient(transport).stubs.pread(handle, 16, 0)` encodes the request, carries it across, decodes the answer,
and *validates* it before anything is returned: the answer must be for this call and this sequence number,
carry an errno the call can return, and satisfy every bound the table declares.  A lie raises `HostViolation`
(OSError, EIO), is logged, and is never acted on.  A legitimate failure raises `OSError(errno)`; callers add the
filename where Python would.
"""

from __future__ import annotations

import itertools
import logging
import os as _os
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Protocol

from .errors import HostViolation
from .validate import CallChecks
from .wire import CODECS, CallCodec, WireError, decode_answer, encode_request

log = logging.getLogger("posix_shim.enclave")

# Captured at import: the interposer rewrites os attributes, and the client must keep the real ones.
_strerror, _write, _exit = _os.strerror, _os.write, _os._exit


class Transport(Protocol):
    name: str

    def roundtrip(self, frame: bytes, seq: int) -> bytes: ...

    def close(self) -> None: ...


TraceHook = Callable[[CallCodec, tuple, Any, int, int], None]  # (codec, args, result, errno, duration_ns)


class OcallClient:
    """Issues ocalls over one transport.  Thread-safe: sequence numbers come from an atomic counter."""

    def __init__(self, transport: Transport, violation: str = "raise") -> None:
        if violation not in ("raise", "abort"):
            raise ValueError(f"violation must be 'raise' or 'abort', not {violation!r}")
        self.transport = transport
        self.violation = violation
        self.violations: list[HostViolation] = []
        self._seq = itertools.count(1)
        self.stubs = SimpleNamespace(**{codec.call.name: self._stub(codec) for codec in CODECS.values()})

    def _stub(self, codec: CallCodec) -> Callable[..., Any]:
        checks = CallChecks(codec.call)
        answer_checks = checks.answer
        allowed = checks.errnos
        single = codec.nresults == 1
        none = codec.nresults == 0
        seqs = self._seq
        transport = self.transport
        name = codec.call.name
        refuse = self._refuse

        def stub(*args: Any) -> Any:
            seq = next(seqs) & 0xFFFFFFFF
            try:
                frame = encode_request(codec, seq, args)
            except WireError as exc:
                # The program passed something the call cannot carry (an int out of range): Python would
                # raise OverflowError in the same place.
                raise OverflowError(f"{name}: {exc}") from None
            answer = transport.roundtrip(frame, seq)
            try:
                err, results = decode_answer(answer, codec, seq)
            except WireError as exc:
                raise refuse(name, f"malformed answer: {exc}") from None
            if err:
                if err not in allowed:
                    raise refuse(name, checks.check_errno(err) or "")
                raise OSError(err, _strerror(err) if err > 0 else f"error {err}")
            for check in answer_checks:
                problem = check(args, results)
                if problem:
                    raise refuse(name, problem)
            if single:
                return results[0]
            return None if none else results

        stub.__name__ = name
        stub.__qualname__ = f"ocall.{name}"
        return stub

    def _refuse(self, call: str, problem: str) -> HostViolation:
        exc = HostViolation(call, problem)
        self.violations.append(exc)
        log.error("%s", exc.strerror)
        if self.violation == "abort":
            # Asylo's choice: an enclave that caught its host lying stops at once rather than go on.
            _write(2, f"{exc.strerror}; aborting the enclave\n".encode())
            _exit(70)  # EX_SOFTWARE
        return exc

    def close(self) -> None:
        self.transport.close()
