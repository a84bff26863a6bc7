"""Attestation: quotes that say which enclave is running, and their verification anywhere.

Two halves, as Asylo's assertion generators and verifiers:

* a **generator** makes a quote over 64 bytes of user data.  Inside an enclave, `report(user_data)` asks the
  platform through the `report` ocall (the host fills in the measurement and signer of the enclave *it*
  launched and signs with the platform key it holds).  `PlatformQuoteGenerator` is the same platform used
  directly by a process that holds the key (tests, or a host vouching for an enclave it runs).
* a **verifier** checks a quote: `verify(quote, platform_keys=..., measurement=..., signer=..., user_data=...)`
  returns the verified `QuoteFields` or raises `QuoteError` naming what is wrong (expected and actual values).
  It needs only the platform's *public* keys, so it runs in any ordinary Python process.

The format is "posix_shim-quote" version 1 (byte layout in `ocall_bridge/quote.py` and docs/integrity.md).  A
hardware quote (an SGX DCAP quote, say) plugs in as another format: `register_verifier(magic, verifier)` for the
verifying side, and a generator with the same `generate(user_data) -> bytes` for the producing side.

The simulated platform key proves nothing against a malicious host: the host holds it and can sign any
measurement it likes.  It proves the *protocol*: that the right fields are bound, checked and refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ocall_bridge import quote as Q
from ocall_bridge.host.attest import (
    Identity,
    PlatformKey,
    SimulatedQuoteGenerator,
    default_key_path,
    key_id,
    public_pem,
)

FORMAT = Q.FORMAT
VERSION = Q.VERSION
USER_DATA_SIZE = Q.USER_DATA_SIZE


class QuoteError(ValueError):
    """A quote that does not verify.  `reason` is one of: truncated, format, version, platform_key, signature,
    measurement, signer, user_data, debug."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class QuoteFields:
    """What a verified quote says."""

    format: str
    version: int
    backend: str
    debug: bool
    measurement: bytes
    signer: bytes
    user_data: bytes
    platform_key_id: bytes

    @property
    def measurement_hex(self) -> str:
        return self.measurement.hex()

    @property
    def signer_hex(self) -> str:
        return self.signer.hex()

    def describe(self) -> str:
        return (f"format {self.format} v{self.version}\nbackend {self.backend}{' (debug)' if self.debug else ''}\n"
                f"measurement {self.measurement.hex()}\nsigner {self.signer.hex()}\n"
                f"user data {self.user_data.hex()}\nplatform key {self.platform_key_id.hex()}")


# -- keys --------------------------------------------------------------------------------------------------

KeySpec = Any  # an Ed25519PublicKey, 32 raw bytes, PEM bytes, or the path of a PEM file


def load_public_key(spec: KeySpec) -> Ed25519PublicKey:
    if isinstance(spec, Ed25519PublicKey):
        return spec
    if isinstance(spec, bytes | bytearray) and len(spec) == 32:
        return Ed25519PublicKey.from_public_bytes(bytes(spec))
    if isinstance(spec, str | os.PathLike):
        with open(spec, "rb") as f:
            spec = f.read()
    if isinstance(spec, bytes | bytearray):
        key = serialization.load_pem_public_key(bytes(spec))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("platform keys are Ed25519 public keys")
        return key
    raise TypeError(f"cannot use {type(spec).__name__} as a platform key")


def load_public_keys(specs: KeySpec | Iterable[KeySpec]) -> list[Ed25519PublicKey]:
    if isinstance(specs, Ed25519PublicKey | bytes | bytearray | str | os.PathLike):
        specs = [specs]
    return [load_public_key(s) for s in specs]


def platform_public_key(path: str | None = None) -> Ed25519PublicKey:
    """The local simulated platform's public key (the private key is created on first use)."""
    return PlatformKey.load(path).public


def platform_public_pem(path: str | None = None) -> bytes:
    return public_pem(platform_public_key(path))


# -- verifying ---------------------------------------------------------------------------------------------

class QuoteVerifier(Protocol):
    """Checks one quote format's own evidence (structure and signature) and says what it attests."""

    def verify(self, quote: bytes) -> QuoteFields: ...


class SimulatedQuoteVerifier:
    """posix_shim-quote v1: an Ed25519 signature by one of the trusted platform keys."""

    def __init__(self, platform_keys: KeySpec | Iterable[KeySpec]) -> None:
        self.keys = {key_id(k): k for k in load_public_keys(platform_keys)}
        if not self.keys:
            raise ValueError("no platform key to verify against")

    def verify(self, quote: bytes) -> QuoteFields:
        try:
            body, signed, signature = Q.parse(quote)
        except Q.QuoteFormatError as exc:
            raise QuoteError(exc.reason, str(exc)) from None
        key = self.keys.get(body.platform_key_id)
        if key is None:
            raise QuoteError("platform_key", f"quote signed by an unknown platform key {body.platform_key_id.hex()} "
                                             f"(trusted: {', '.join(k.hex() for k in self.keys)})")
        try:
            key.verify(signature, signed)
        except InvalidSignature:
            raise QuoteError("signature", "quote signature does not verify: the quote was altered after the "
                                          "platform signed it") from None
        return QuoteFields(Q.FORMAT, body.version, Q.BACKENDS.get(body.backend, f"backend-{body.backend}"),
                           body.debug, body.measurement, body.signer, body.user_data, body.platform_key_id)


# magic -> factory(platform_keys) -> QuoteVerifier.  A hardware format registers its own.
_VERIFIERS: dict[bytes, Callable[[Any], QuoteVerifier]] = {Q.MAGIC: SimulatedQuoteVerifier}


def register_verifier(magic: bytes, factory: Callable[[Any], QuoteVerifier]) -> None:
    """Teach `verify` another quote format, recognised by its leading `magic` bytes."""
    _VERIFIERS[bytes(magic)] = factory


def _as_bytes(value: bytes | str, what: str, size: int) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{what} must be {size * 2} hex digits, not {value!r}") from None
    if len(value) != size:
        raise ValueError(f"{what} must be {size} bytes ({size * 2} hex digits), not {len(value)}")
    return bytes(value)


def verify(quote: bytes, *, platform_keys: KeySpec | Iterable[KeySpec], measurement: bytes | str | None = None,
           signer: bytes | str | None = None, user_data: bytes | None = None,
           allow_debug: bool = True) -> QuoteFields:
    """Verify `quote` and return its fields; QuoteError names the first thing wrong.

    measurement / signer (bytes or hex): the identity the caller expects; None accepts any (and then the
    caller must look at the returned fields).  user_data: the exact bytes (a nonce, a key hash) the quote must
    carry, zero-padded to 64 - a quote made for another nonce is a replay.  allow_debug=False refuses debug
    enclaves.
    """
    quote = bytes(quote)
    factory = next((f for magic, f in _VERIFIERS.items() if quote.startswith(magic)), None)
    if factory is None:
        if len(quote) < len(Q.MAGIC):
            raise QuoteError("truncated", f"truncated quote: {len(quote)} bytes")
        raise QuoteError("format", f"not a quote of any known format (starts with {quote[:8]!r})")
    fields = factory(platform_keys).verify(quote)
    if measurement is not None:
        want = _as_bytes(measurement, "measurement", 32)
        if not hmac.compare_digest(want, fields.measurement):
            raise QuoteError("measurement", f"wrong measurement: expected {want.hex()}, "
                                            f"the quote has {fields.measurement.hex()}")
    if signer is not None:
        want = _as_bytes(signer, "signer", 32)
        if not hmac.compare_digest(want, fields.signer):
            raise QuoteError("signer", f"wrong signer: expected {want.hex()}, the quote has {fields.signer.hex()}")
    if user_data is not None:
        want = Q.pad_user_data(bytes(user_data))
        if not hmac.compare_digest(want, fields.user_data):
            raise QuoteError("user_data", f"user data mismatch (a replayed quote, or one made for another "
                                          f"nonce/key): expected {want.hex()}, the quote has {fields.user_data.hex()}")
    if not allow_debug and fields.debug:
        raise QuoteError("debug", "the quote is from a debug enclave, and debug enclaves are not accepted")
    return fields


# -- generating --------------------------------------------------------------------------------------------

class QuoteGenerator(Protocol):
    """Makes quotes over user data (Asylo's assertion generator).  A hardware backend provides another one."""

    def generate(self, user_data: bytes) -> bytes: ...


class EnclaveQuoteGenerator:
    """Inside an enclave: the platform (the host, through the `report` ocall) signs for this enclave."""

    def generate(self, user_data: bytes) -> bytes:
        return report(user_data)


class PlatformQuoteGenerator:
    """The simulated platform used directly by a process that holds its key, for a given identity.

    For tests and for a host vouching for an enclave it runs; an enclave itself uses `report`.
    """

    def __init__(self, *, measurement: bytes | str, signer: bytes | str, backend: str = "sim", debug: bool = True,
                 key_path: str | None = None) -> None:
        self.identity = Identity(_as_bytes(measurement, "measurement", 32), _as_bytes(signer, "signer", 32),
                                 backend, debug)
        self._gen = SimulatedQuoteGenerator(PlatformKey.load(key_path))

    def generate(self, user_data: bytes) -> bytes:
        return self._gen.quote(self.identity, user_data)


def in_enclave() -> bool:
    from enclave_libc import runtime

    return runtime.active()


def report(user_data: bytes = b"") -> bytes:
    """Inside an enclave: a quote over `user_data` (at most 64 bytes) signed by the platform."""
    if not in_enclave():
        raise RuntimeError("attestation.report() runs inside an enclave (python -m posix_shim ...); outside one, "
                           "use a QuoteGenerator such as PlatformQuoteGenerator")
    from enclave_libc import attest

    return attest.report(user_data)


def default_generator() -> QuoteGenerator:
    return EnclaveQuoteGenerator()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


__all__ = ["FORMAT", "VERSION", "QuoteError", "QuoteFields", "QuoteGenerator", "QuoteVerifier", "verify", "report",
           "register_verifier", "SimulatedQuoteVerifier", "EnclaveQuoteGenerator", "PlatformQuoteGenerator",
           "platform_public_key", "platform_public_pem", "load_public_keys", "default_key_path", "in_enclave"]
