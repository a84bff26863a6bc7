"""Randomness is the enclave's own: it never asks the host.

A host that chose the enclave's random bytes would choose its keys, nonces and session ids, so no ocall exists
for randomness.  A real enclave reads its CPU's random-number instruction (RDRAND/RDSEED on SGX) inside the
protected boundary.  In this simulation the kernel's getrandom(2) stands in for that instruction: it is called
from the enclave's own code (in the process backend, from the enclave's own process), never through the
boundary, never through a file the host serves (`/dev/urandom` opened with `open()` *would* be a host file).

Everything Python builds on it follows: `os.urandom`, `os.getrandom`, `secrets`, `random.SystemRandom`,
`uuid.uuid4` (all on os.urandom, which the interposer points here), `random`'s default seeding and hash
randomization (CPython's C code calls getrandom(2) directly), and OpenSSL's generator (seeded the same way).
"""

from __future__ import annotations

from typing import Any

from ocall_bridge import originals
from ocall_bridge.calls import uses

# The entropy source standing in for RDRAND: captured here so that no later patch can redirect it.
_getrandom = originals.get("posix", "getrandom")
_urandom = originals.get("posix", "urandom")


@uses()
def urandom(size: Any, /) -> bytes:
    """`size` random bytes from the enclave's own source (native argument checks and errors)."""
    return _urandom(size)


@uses()
def getrandom(size: Any, flags: Any = 0) -> bytes:
    """getrandom(2) from the enclave's own source; GRND_NONBLOCK and GRND_RANDOM mean what they mean natively."""
    return _getrandom(size, flags)


PATCHES: dict[Any, Any] = originals.patches("posix", {"urandom": urandom, "getrandom": getrandom})

__all__ = ["PATCHES", "urandom", "getrandom"]
