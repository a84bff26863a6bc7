"""Host side of the `attest` family: the simulated platform that signs quotes.

On SGX the quoting enclave signs a report the CPU produced; the measurement in it is what the CPU measured while
loading the enclave, and no software (not the enclave, not the host) can choose it.  Here the *host* plays the
platform: it holds an Ed25519 key (`PlatformKey`, a 0600 file created on first use) and fills each quote with the
identity of the enclave it launched (`Identity`, set by `posix_shim.wiring.make_host` from the manifest the runner
verified) - never with anything the enclave claims.  The enclave contributes only its 64 bytes of user data.

This proves nothing against a malicious host kernel (it holds the key); docs/integrity.md says so and shows where
a hardware quote plugs in instead (`QuoteGenerator`).

Everything here uses the host's captured OS functions (`real.os`): in the sim backend a quote is asked for while
the program's interposition is installed, and the key must never be read through the enclave's own file calls.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import posixpath
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import quote as Q
from ..access import Access
from ..originals import os
from .runtime import Host

if TYPE_CHECKING:  # loaded at first use (`crypto()`), or up front by `preload()` for an in-process host
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger("posix_shim.host")

ENV_KEY = "POSIX_SHIM_PLATFORM_KEY"
ZERO = b"\0" * 32



class _Crypto:
    """The parts of `cryptography` the platform uses, imported together."""

    def __init__(self) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

        self.serialization = serialization
        self.Ed25519PrivateKey = Ed25519PrivateKey
        # Unused here, but part of what the signing and verifying paths load: loaded now with the rest.
        self.preloaded = (InvalidSignature, Ed25519PublicKey)
        self.raw = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


_crypto: _Crypto | None = None
_crypto_lock = threading.Lock()


def crypto() -> _Crypto:
    """`cryptography`'s signing parts, imported at first use: a run that never asks for a quote (most of them)
    does not pay for importing cryptography at start-up (~10-25 ms).  Raises ImportError without it.

    An in-process (sim) host must not import it lazily, though: the first quote is asked for while the program
    runs in the same interpreter, and an import then would resolve through whatever the program did to the
    import system (its sys.path[0] first, its finders): `preload()` imports it before any program code runs.
    """
    global _crypto
    with _crypto_lock:
        if _crypto is None:
            _crypto = _Crypto()
        return _crypto


def preload() -> bool:
    """Import the signing parts now (for a host sharing its interpreter with the enclave); False without them."""
    try:
        crypto()
    except ImportError:  # cryptography is a dependency; an interpreter without it still runs (report: EIO)
        return False
    return True


def default_key_path() -> str:
    """$POSIX_SHIM_PLATFORM_KEY, else $XDG_DATA_HOME/posix_shim/platform-key.pem (~/.local/share by default)."""
    env = os.environ.get(ENV_KEY.encode())
    if env:
        return os.fsdecode(env)
    data = os.environ.get(b"XDG_DATA_HOME") or os.fsencode(posixpath.join(os.fsdecode(
        os.environ.get(b"HOME", b"/")), ".local", "share"))
    return posixpath.join(os.fsdecode(data), "posix_shim", "platform-key.pem")


def key_id(public: Ed25519PublicKey) -> bytes:
    """SHA-256 of the raw 32-byte public key: how a quote names the key that signed it."""
    return hashlib.sha256(public.public_bytes(*crypto().raw)).digest()


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class PlatformKeyError(OSError):
    """The platform key file cannot be used (wrong permissions, not a key)."""


class PlatformKey:
    """The simulated platform's signing key: an Ed25519 private key in a PEM file only its owner may read.

    Created on first use (O_EXCL, mode 0600, in a 0700 folder); a key file anyone else can read is refused,
    since whoever reads it can forge any enclave's quote.  The public half is written next to it (`.pub.pem`)
    for verifiers.
    """

    _lock = threading.Lock()
    _cache: dict[str, PlatformKey] = {}

    def __init__(self, path: str, private: Ed25519PrivateKey) -> None:
        self.path = path
        self.private = private
        self.public = private.public_key()
        self.id = key_id(self.public)

    @classmethod
    def load(cls, path: str | None = None, *, create: bool = True) -> PlatformKey:
        path = path or default_key_path()
        with cls._lock:
            found = cls._cache.get(path)
            if found is not None:
                return found
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                if not create:
                    raise
                key = cls._create(path)
            else:
                try:
                    st = os.fstat(fd)
                    if st.st_mode & 0o077:
                        raise PlatformKeyError(errno.EACCES, f"platform key {path} is readable by others "
                                                             f"(mode {st.st_mode & 0o777:o}); chmod 600 it")
                    pem = _read_all(fd)
                finally:
                    os.close(fd)
                c = crypto()
                try:
                    private = c.serialization.load_pem_private_key(pem, password=None)
                except ValueError as exc:
                    raise PlatformKeyError(errno.EINVAL, f"platform key {path} is not a PEM key: {exc}") from None
                if not isinstance(private, c.Ed25519PrivateKey):
                    raise PlatformKeyError(errno.EINVAL, f"platform key {path} is not an Ed25519 key")
                key = cls(path, private)
            cls._cache[path] = key
            return key

    @classmethod
    def _create(cls, path: str) -> PlatformKey:
        folder = posixpath.dirname(path) or "."
        parts = folder.split("/")
        for i in range(2, len(parts) + 1):  # mkdir -p, private folders
            try:
                os.mkdir("/".join(parts[:i]) or "/", 0o700)
            except FileExistsError:
                pass
        serialization = crypto().serialization
        private = crypto().Ed25519PrivateKey.generate()
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            cls._lock.release()
            try:
                return cls.load(path, create=False)
            finally:
                cls._lock.acquire()
        try:
            _write_all(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        key = cls(path, private)
        pub = public_pem(key.public)
        try:
            fd = os.open(path + ".pub.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                _write_all(fd, pub)
            finally:
                os.close(fd)
        except OSError:
            pass  # the public half can always be derived again (`posix_shim quote pubkey`)
        return key


def public_pem(public: Ed25519PublicKey) -> bytes:
    serialization = crypto().serialization
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Identity:
    """What the host knows about the enclave it launched: the manifest's measurement and signer."""

    measurement: bytes = ZERO
    signer: bytes = ZERO
    backend: str = "sim"
    debug: bool = True

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Identity:
        return cls(bytes.fromhex(data.get("measurement", ZERO.hex())), bytes.fromhex(data.get("signer", ZERO.hex())),
                   str(data.get("backend", "sim")), bool(data.get("debug", True)))


class SimulatedQuoteGenerator:
    """The simulated platform's quote generator (Asylo's "null" assertion generator, with a signature).

    A hardware backend would provide the same `quote(identity, user_data)` backed by the CPU's quoting enclave.
    """

    format = Q.FORMAT

    def __init__(self, key: PlatformKey) -> None:
        self.key = key

    def quote(self, identity: Identity, user_data: bytes) -> bytes:
        body = Q.QuoteBody(Q.VERSION, Q.BACKEND_CODES.get(identity.backend, 1), identity.debug, identity.measurement,
                           identity.signer, Q.pad_user_data(user_data), self.key.id).pack()
        return body + self.key.private.sign(body)


class HidePlatformKey(Access):
    """The host's policy with one more denial: the platform key file, whatever the policy grants.

    Every other question is the wrapped policy's (its bound methods, so no frame is added on the hot path).
    Roots that hold the key are confined strictly (denials_within), so a symlink the enclave plants towards the key
    is resolved by the kernel and refused like the key itself.
    """

    def __init__(self, inner: Access, key_path: str, *, confine_all: bool = False) -> None:
        self.inner = inner
        self.confine_all = confine_all
        self.violation = inner.violation
        self.hidden = posixpath.normpath(os.fsencode(key_path))
        self.name = self.hidden.rsplit(b"/", 1)[-1]
        self._check = inner.check
        for method in ("call_allowed", "env_allowed", "env_values", "native_allowed", "run_programs", "to_data"):
            setattr(self, method, getattr(inner, method))

    def check(self, call: str, kind: str, resource: Any) -> str | None:
        if isinstance(resource, bytes) and self.name in resource and posixpath.normpath(resource) == self.hidden:
            return "the platform key is the host's: no enclave may read or write it"
        return self._check(call, kind, resource)

    def roots(self, kind: str) -> tuple[bytes, ...] | None:
        roots = self.inner.roots(kind)
        # Unconfined (-A): only a signed enclave pays for confinement beneath "/" (every path then takes the
        # kernel's real-path route); an -A enclave was given the host's files already.
        return (b"/",) if roots is None and self.confine_all else roots

    def denials_within(self, root: bytes) -> bool:
        return (root == b"/" or self.hidden.startswith(root.rstrip(b"/") + b"/")) or self.inner.denials_within(root)


def report(host: Host, user_data: bytes) -> bytes:
    """A quote for this host's enclave over `user_data`, signed by the platform key."""
    identity: Identity = getattr(host, "identity", None) or Identity()
    generator = getattr(host, "quote_generator", None)
    if generator is None:
        try:
            crypto()
        except ImportError:
            log.error("cannot sign a quote: the cryptography package is not installed on the host")
            raise OSError(errno.EIO, "the platform cannot sign: cryptography is not installed") from None
        try:
            key = PlatformKey.load(getattr(host, "platform_key_path", None))
        except OSError as exc:
            log.error("cannot sign a quote: %s", exc)
            raise OSError(errno.EIO, f"platform key unavailable: {exc}") from None
        generator = host.quote_generator = SimulatedQuoteGenerator(key)  # type: ignore[attr-defined]
    return generator.quote(identity, user_data)
