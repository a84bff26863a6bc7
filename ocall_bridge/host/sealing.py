"""Host side of the `sealing` family: sealing keys derived from the platform secret and the enclave's identity.

The platform secret (ocall_bridge/platform.py) stays here; the enclave receives only
HKDF-SHA256(secret, salt="posix_shim sealing v1", info=kind || identity), 32 bytes, so a program can unseal
only what a program with the same identity (kind "enclave") or the same signer (kind "signer") sealed on the
same platform.

`enclave_identity` is the one place that says what an identity is.  Until enclave measurement lands, it is a
documented stand-in computed by the host from what it is asked to run:

    enclave = SHA-256("posix_shim enclave identity v0" 0 SHA-256(entry code) SHA-256(canonical policy))
    signer  = SHA-256("posix_shim signer identity v0" 0 SHA-256(canonical policy))

where the entry code is the script's bytes (a folder's or package's `__main__.py`, a zip's bytes, the text of
-c / stdin) and the canonical policy is the policy's plain data as sorted JSON.  Changing one byte of the
script, or any grant, changes the enclave identity; the signer identity survives script updates under the
same policy (as SGX's MRSIGNER survives enclave upgrades by the same author).  It measures the entry point
only, not the modules it imports.
"""

from __future__ import annotations

import errno
import hashlib
import json
import threading
from typing import Any

from ..originals import os
from ..platform import secret_path
from .runtime import Host

KINDS = ("enclave", "signer")
SECRET_SIZE = 32
_lock = threading.Lock()


def _read_file(path: bytes) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def platform_secret() -> bytes:
    """The platform secret, created (0600, in a 0700 folder) on first use."""
    path = secret_path()
    with _lock:
        try:
            secret = _read_file(path)
        except FileNotFoundError:
            folder = path.rsplit(b"/", 1)[0]
            _makedirs(folder)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:  # another host created it meanwhile
                secret = _read_file(path)
            else:
                secret = os.urandom(SECRET_SIZE)
                try:
                    os.write(fd, secret)
                    os.fsync(fd)
                finally:
                    os.close(fd)
    if len(secret) != SECRET_SIZE:
        raise OSError(errno.EIO, f"platform secret {os.fsdecode(path)} is damaged ({len(secret)} bytes)")
    return secret


def _makedirs(folder: bytes) -> None:
    parts = folder.split(b"/")
    for i in range(2, len(parts) + 1):
        here = b"/".join(parts[:i])
        try:
            os.mkdir(here, 0o700)
        except FileExistsError:
            pass


def canonical_policy(access: Any) -> bytes:
    return json.dumps(access.to_data(), sort_keys=True, separators=(",", ":")).encode()


def entry_code(kind: str, target: str) -> bytes:
    """The bytes that stand for the program in its identity (see the module docstring)."""
    if kind in ("code", "stdin"):
        return target.encode("utf-8", "surrogateescape")
    if kind == "path":
        path = os.fsencode(target)
        try:
            return _read_file(path)
        except IsADirectoryError:
            return _read_file(path.rstrip(b"/") + b"/__main__.py")
    if kind == "module":
        import importlib.util

        spec = importlib.util.find_spec(target)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(target + ".__main__")
        if spec is None or not spec.origin or not spec.has_location:
            return f"module:{target}".encode()
        return _read_file(os.fsencode(spec.origin))
    raise ValueError(f"unknown program kind {kind!r}")


def enclave_identity(kind: str, target: str, access: Any, policy: bytes | None = None) -> dict[str, bytes]:
    """{"enclave": 32 bytes, "signer": 32 bytes} for a program about to run under `access` (`policy`: the
    SHA-256 of its canonical form, when the caller already has it)."""
    code = hashlib.sha256(entry_code(kind, target)).digest()
    if policy is None:
        policy = hashlib.sha256(canonical_policy(access)).digest()
    return {
        "enclave": hashlib.sha256(b"posix_shim enclave identity v0\0" + code + policy).digest(),
        "signer": hashlib.sha256(b"posix_shim signer identity v0\0" + policy).digest(),
    }


def measure(host: Host, kind: str, target: str) -> None:
    """Record the identity of the program the host is about to run (the runner calls this before each run)."""
    try:
        # The policy's hash is kept per host and per policy object: rendering the policy as JSON was a quarter of
        # a trivial sim Enclave.call, and a host's policy does not change under it (a new object is hashed anew).
        cached = getattr(host, "_policy_digest", None)
        if cached is None or cached[0] is not host.access:
            cached = (host.access, hashlib.sha256(canonical_policy(host.access)).digest())
            host._policy_digest = cached  # type: ignore[attr-defined]
        host.seal_identity = enclave_identity(kind, target, host.access, cached[1])  # type: ignore[attr-defined]
    except (OSError, ValueError, ImportError):
        host.seal_identity = None  # type: ignore[attr-defined]  # seal_key then answers EPERM


def preload() -> bool:
    """Import the key derivation now, for a host that shares its interpreter with the enclave (sim): `derive`
    imports it at first use, which in a sim run is while the program runs, through whatever the program did to
    the import system.  False without cryptography (seal_key then fails when asked)."""
    try:
        from cryptography.hazmat.primitives import hashes  # noqa: F401
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: F401
    except ImportError:
        return False
    return True


def derive(secret: bytes, kind: str, identity: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"posix_shim sealing v1",
                info=kind.encode() + b"\0" + identity).derive(secret)


def seal_key(host: Host, kind: int) -> bytes:
    name = KINDS[kind]
    # A signed run (--manifest) has a real measurement and signer (attest.Identity, from the verified manifest):
    # keys are bound to those, as SGX binds them to MRENCLAVE/MRSIGNER.  Otherwise the stand-in above.
    measured = getattr(host, "identity", None)
    if measured is not None and any(getattr(measured, "measurement", b"")):
        return derive(platform_secret(), name, measured.measurement if name == "enclave" else measured.signer)
    identity = getattr(host, "seal_identity", None)
    if not identity:
        raise OSError(errno.EPERM, "no program identity was measured for this enclave")
    return derive(platform_secret(), name, identity[name])
