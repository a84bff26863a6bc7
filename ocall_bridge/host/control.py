"""Host side of the `control` family: the handshake that starts a session."""

from __future__ import annotations

from ..originals import os
from .runtime import Host


def attach(host: Host, version: int) -> tuple[int, int, int]:
    """Hand the enclave its standard streams.

    The host gives duplicates, never its own descriptors 0-2: an enclave that closes its stdout closes only its
    copy, and the host can still report on its stderr afterwards.
    """
    handles = []
    for fd in (0, 1, 2):
        try:
            dup = os.dup(fd)
        except OSError:
            handles.append(-1)  # that stream is closed on the host: the enclave sees EBADF on it, as natively
            continue
        handles.append(host.handles.add(dup, "stdio"))
    return handles[0], handles[1], handles[2]
