"""The byte layout of a posix_shim quote: format "posix_shim-quote", version 1.

Pure layout, no cryptography: the host (`host/attest.py`) fills it in and signs it, the enclave
(`enclave_libc/attest.py`) checks that an answer has this shape before handing it on, and any verifier
(`posix_shim.attestation`) parses it.  All integers are big-endian.

    offset  size  field
         0     8  magic            b"PSQUOTE\\0"
         8     2  version          1
        10     1  backend          1 sim, 2 process (128 and up: reserved for hardware quotes)
        11     1  flags            bit 0: debug enclave; other bits zero
        12     4  reserved         zero
        16    32  measurement      SHA-256 of the canonical manifest (zero: an unsigned enclave)
        48    32  signer           SHA-256 of the manifest signer's raw Ed25519 public key (zero: unsigned)
        80    64  user data        the enclave's 64 bytes (shorter input is zero-padded)
       144    32  platform key id  SHA-256 of the raw Ed25519 public key that signs
       176    64  signature        Ed25519 over bytes 0..175
       240        (end)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

FORMAT = "posix_shim-quote"
MAGIC = b"PSQUOTE\0"
VERSION = 1
HEADER = struct.Struct(">8sHBBI")
BODY_SIZE = HEADER.size + 32 + 32 + 64 + 32  # everything the signature covers: 176
SIGNATURE_SIZE = 64
SIZE = BODY_SIZE + SIGNATURE_SIZE  # 240
USER_DATA_SIZE = 64
BACKENDS = {1: "sim", 2: "process"}
BACKEND_CODES = {name: code for code, name in BACKENDS.items()}
FLAG_DEBUG = 1


class QuoteFormatError(ValueError):
    """Bytes that are not a well-formed quote of a version this build knows."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class QuoteBody:
    version: int
    backend: int
    debug: bool
    measurement: bytes
    signer: bytes
    user_data: bytes
    platform_key_id: bytes

    def pack(self) -> bytes:
        if len(self.measurement) != 32 or len(self.signer) != 32 or len(self.platform_key_id) != 32:
            raise ValueError("measurement, signer and platform key id are 32 bytes each")
        return (HEADER.pack(MAGIC, self.version, self.backend, FLAG_DEBUG if self.debug else 0, 0)
                + self.measurement + self.signer + pad_user_data(self.user_data) + self.platform_key_id)


def pad_user_data(user_data: bytes) -> bytes:
    if len(user_data) > USER_DATA_SIZE:
        raise ValueError(f"user data is at most {USER_DATA_SIZE} bytes, not {len(user_data)}")
    return bytes(user_data) + b"\0" * (USER_DATA_SIZE - len(user_data))


def parse(quote: bytes) -> tuple[QuoteBody, bytes, bytes]:
    """(fields, the signed bytes, the signature); QuoteFormatError for anything but a whole version-1 quote."""
    quote = bytes(quote)
    if len(quote) < HEADER.size:
        raise QuoteFormatError("truncated", f"truncated quote: {len(quote)} bytes, a header alone is {HEADER.size}")
    magic, version, backend, flags, reserved = HEADER.unpack_from(quote, 0)
    if magic != MAGIC:
        raise QuoteFormatError("format", f"not a {FORMAT}: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise QuoteFormatError("version", f"unknown {FORMAT} version {version} (this build knows {VERSION})")
    if len(quote) != SIZE:
        reason = "truncated" if len(quote) < SIZE else "format"
        raise QuoteFormatError(reason, f"{'truncated' if reason == 'truncated' else 'oversized'} quote: "
                                       f"{len(quote)} bytes, version {VERSION} is {SIZE}")
    if flags & ~FLAG_DEBUG or reserved:
        raise QuoteFormatError("format", f"quote has unknown flags {flags:#x} or reserved bits {reserved:#x}")
    o = HEADER.size
    body = QuoteBody(version, backend, bool(flags & FLAG_DEBUG), quote[o:o + 32], quote[o + 32:o + 64],
                     quote[o + 64:o + 128], quote[o + 128:o + 160])
    return body, quote[:BODY_SIZE], quote[BODY_SIZE:]


__all__ = ["FORMAT", "MAGIC", "VERSION", "SIZE", "BODY_SIZE", "USER_DATA_SIZE", "QuoteBody", "QuoteFormatError",
           "parse", "pad_user_data", "BACKENDS", "BACKEND_CODES"]
