"""The sim backend: enclave and host in one process, as Asylo's simulated backend.

An ocall is encode -> host dispatch -> decode on the calling thread, or, where conform.py vouches that the frames
would carry the values unchanged, the same host service and the same answer checks on the Python objects (the
lean route, ocall_bridge/transport.py).  Interposition is installed only while
enclave code runs (`run`, `call`), so a program that embeds an enclave keeps its own real OS calls between
them.  Isolation is logical, not physical: use the process backend when the enclave must not share memory with
the host.
"""

from __future__ import annotations

import traceback
from typing import Any

from enclave_libc import runtime
from enclave_libc.runtime import EnclaveRuntime
from ocall_bridge.access import Access
from ocall_bridge.transport import SimTransport

from . import program
from .ecall import EnclaveCallError, EnclaveStateError, check_plain, resolve_target
from .session import inside
from .wiring import make_client, make_host

NESTED = ("a sim enclave cannot be started by code running inside an enclave: its host would run inside that "
          "enclave with the real OS, and leaving it would take the interposition away from the enclave around it. "
          "Start it from outside (the pytest plugin's `enclave` fixture does)")


class SimBackend:
    def __init__(self, access: Access, **options: Any) -> None:
        if runtime.active():
            raise EnclaveStateError(NESTED)
        self.host = make_host(access, options)
        transport = SimTransport(self.host)
        self.client = make_client(transport, access, options)
        # The transport gives every enclave fd a real descriptor of the same open file (one fd space).
        self.rt = EnclaveRuntime(self.client, access, native=transport)
        previous = runtime.activate(self.rt)
        try:
            self.rt.attach_stdio()
        finally:
            runtime.activate(previous)

    def run(self, kind: str, target: str, args: list[str]) -> int:
        with inside(self.rt):
            return program.run(kind, target, args)

    def call(self, target: str, args: tuple) -> Any:
        with inside(self.rt):
            try:
                result = resolve_target(target)(*args)
                check_plain(result, f"result of {target}")
                return result
            except Exception as exc:
                raise EnclaveCallError(type(exc).__name__, str(exc), traceback.format_exc()) from None

    def close(self) -> None:
        self.rt.fds.close_all()
        self.host.close()
