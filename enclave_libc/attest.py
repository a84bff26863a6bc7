"""Attestation inside the enclave: ask the platform for a quote over 64 bytes of the enclave's own choosing.

The enclave cannot sign for itself (the platform key is the host's) and does not fill in its own identity: the
host writes the measurement and signer of the enclave it launched.  What the enclave can check is the shape of
the answer and that it carries exactly the user data it asked for; a host that answers otherwise is lying
(HostViolation).  Whether the signature and identity are right is for the *verifier* to decide, on the other
side of a connection (posix_shim.attestation.verify).
"""

from __future__ import annotations

from ocall_bridge import quote as Q
from ocall_bridge.calls import uses

from . import runtime


@uses("report")
def report(user_data: bytes) -> bytes:
    """A quote (ocall_bridge/quote.py layout) over `user_data` (at most 64 bytes, zero-padded)."""
    data = bytes(user_data)
    if len(data) > Q.USER_DATA_SIZE:
        raise ValueError(f"user data is at most {Q.USER_DATA_SIZE} bytes, not {len(data)}")
    rt = runtime.current()
    answer = rt.ocall.report(data)
    try:
        body, _, _ = Q.parse(answer)
    except Q.QuoteFormatError as exc:
        raise rt.client._refuse("report", f"the platform answered a malformed quote: {exc}", (data,)) from None
    if body.user_data != Q.pad_user_data(data):
        raise rt.client._refuse("report", "the quote does not carry the user data the enclave asked for", (data,))
    return answer


__all__ = ["report"]
