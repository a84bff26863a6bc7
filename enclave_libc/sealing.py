"""Sealing inside the enclave: data encrypted under a key only this enclave identity (or signer) can get.

The key comes from the host through the `seal_key` ocall, derived there from the platform secret and the
identity the host measured (ocall_bridge/host/sealing.py); the secret never crosses.  Encryption is AES-256-GCM
from `cryptography`, with a fresh random 96-bit nonce per blob.

A sealed blob:

    offset  size  field
    0       8     magic  b"PSSEAL1\\0"
    8       1     kind   0 = bound to the enclave identity, 1 = bound to the signer
    9       8     key id: the first 8 bytes of SHA-256("posix_shim key id" || key) - tells "sealed for another
                  identity" apart from "tampered" without revealing anything about the key
    17      12    nonce
    29      n+16  AES-GCM ciphertext and tag; the associated data is bytes 0..29 followed by the caller's `aad`

so the header is authenticated as well: changing the kind or key id fails authentication too.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ocall_bridge import originals
from ocall_bridge.calls import uses

from . import runtime

MAGIC = b"PSSEAL1\0"
KINDS = {"enclave": 0, "signer": 1}
NAMES = {v: k for k, v in KINDS.items()}
HEADER = len(MAGIC) + 1 + 8 + 12
_urandom = originals.get("posix", "urandom")  # the enclave's own entropy (the registry's: never the host's answer)


class SealError(ValueError):
    """A blob that cannot be unsealed here: not a sealed blob, sealed for another identity, or tampered."""


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"posix_shim key id\0" + key).digest()[:8]


@uses("seal_key")
def seal_key(kind: int) -> bytes:
    """The derived key for `kind`, asked of the host; an answer that is not 32 bytes is a host violation."""
    rt = runtime.current()
    key = rt.ocall.seal_key(kind)
    if len(key) != 32:
        raise rt.client._refuse("seal_key", f"a sealing key must be 32 bytes, not {len(key)}")
    return key


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


@uses("seal_key")
def seal(data: Any, *, bound_to: str = "enclave", aad: Any = b"") -> bytes:
    if bound_to not in KINDS:
        raise ValueError(f"bound_to must be 'enclave' or 'signer', not {bound_to!r}")
    kind = KINDS[bound_to]
    key = seal_key(kind)
    header = MAGIC + bytes([kind]) + key_id(key) + _urandom(12)
    return header + _aesgcm(key).encrypt(header[-12:], bytes(data), header + bytes(aad))


def inspect(blob: Any) -> dict[str, Any]:
    """What a sealed blob says about itself, without any key: {"bound_to", "key_id", "size"}."""
    blob = bytes(blob)
    if len(blob) < HEADER + 16 or not blob.startswith(MAGIC) or blob[8] not in NAMES:
        raise SealError("not a posix_shim sealed blob")
    return {"bound_to": NAMES[blob[8]], "key_id": blob[9:17].hex(), "size": len(blob) - HEADER - 16}


@uses("seal_key")
def unseal(blob: Any, aad: Any = b"") -> bytes:
    from cryptography.exceptions import InvalidTag

    blob = bytes(blob)
    info = inspect(blob)
    key = seal_key(KINDS[info["bound_to"]])
    if key_id(key) != blob[9:17]:
        raise SealError(f"sealed for another {info['bound_to']} identity (or this platform's secret changed): "
                        f"this enclave cannot unseal it")
    try:
        return _aesgcm(key).decrypt(blob[HEADER - 12:HEADER], blob[HEADER:], blob[:HEADER] + bytes(aad))
    except InvalidTag:
        raise SealError("sealed blob failed authentication: it was modified, truncated, or the aad differs") from None
