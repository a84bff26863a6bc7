"""Sealing for programs inside the enclave: `seal(data, bound_to="enclave"|"signer", aad=b"")` and `unseal`.

    from posix_shim import sealing
    blob = sealing.seal(b"token", bound_to="enclave")
    sealing.unseal(blob)          # b"token", in a later run of the same program under the same policy

See docs/confidentiality.md for key derivation, what an identity is and what a blob looks like.
"""

from __future__ import annotations

from enclave_libc.sealing import SealError, inspect, seal, unseal

__all__ = ["seal", "unseal", "inspect", "SealError"]
