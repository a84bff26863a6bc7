"""How a request frame reaches the host and its answer comes back.

Every transport offers `roundtrip(frame, seq) -> answer frame`.  The trusted client does not care which one
carries its frames; the wire format is the same on all of them.

* `SimTransport`: the host lives in this process; a round trip is a function call on the calling thread.
* The process transport (a socketpair to a child process) lives in `process.py`.
"""

from __future__ import annotations

from .errors import HostGone
from .host.runtime import Host


class SimTransport:
    """Enclave and host in one process, as Asylo's simulated backend."""

    name = "sim"

    def __init__(self, host: Host) -> None:
        self.host = host

    def roundtrip(self, frame: bytes, seq: int) -> bytes:
        answer = self.host.serve(frame)
        if answer is None:
            raise HostGone("the host dropped a frame it could not parse")
        return answer

    def close(self) -> None:
        self.host.close()
