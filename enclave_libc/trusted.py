"""Trusted files: the bytes of every file a signed manifest lists are checked before anyone inside sees one.

Gramine's `sgx.trusted_files`, for this runtime.  The check sits in one place: between the enclave's file
functions and the ocall stubs (`guard` wraps `client.stubs` once, before the runtime is built from them), so
`os.open`, `open()`, `io.open_code` (the importer) and `linecache` all pass through it without knowing.

* open of a trusted path: read-only only (a write open is EACCES); the whole file is read through the host
  handle *at open*, hashed, and compared with the manifest.  A mismatch closes the handle, logs a host violation
  naming the file, and fails the open with EACCES.  A match keeps the verified bytes in the enclave, and every
  later read, pread, lseek, fstat size and sendfile of that handle is served from them: a host that swaps the
  file after the check (TOCTOU) is never asked again.
* open of Python source (`*.py`) the manifest does not list: EACCES.  Code the signer never saw does not run.
* open of cached bytecode (`*.pyc`): ENOENT, so the importer compiles the verified source instead (and
  `sys.dont_write_bytecode` keeps it from writing caches through the host).
* every other file: the manifest's policy decides, as in an unsigned run.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import os as _os
import posixpath
import sys
import threading
from types import SimpleNamespace
from typing import Any

from ocall_bridge.client import OcallClient
from ocall_bridge.types import MAX_DATA

log = logging.getLogger("posix_shim.enclave")

_WRITE = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC | _os.O_APPEND
_SEEK_SET, _SEEK_CUR, _SEEK_END = 0, 1, 2
_SEEK_DATA, _SEEK_HOLE = getattr(_os, "SEEK_DATA", 3), getattr(_os, "SEEK_HOLE", 4)
_strerror = _os.strerror


class _Verified:
    __slots__ = ("data", "pos", "path")

    def __init__(self, data: bytes, path: bytes) -> None:
        self.data = data
        self.pos = 0
        self.path = path


class TrustedFiles:
    """The manifest's table ({absolute path: SHA-256}) and the verified contents of open trusted handles."""

    def __init__(self, client: OcallClient, table: dict[str, str]) -> None:
        self.client = client
        self.table = {posixpath.normpath(_os.fsencode(p)): bytes.fromhex(h) for p, h in table.items()}
        self.open_files: dict[int, _Verified] = {}
        self.lock = threading.Lock()

    # -- the checks --------------------------------------------------------------------------------------------
    @staticmethod
    def _refuse(reason: str) -> OSError:
        return OSError(errno.EACCES, f"{_strerror(errno.EACCES)}: {reason}")

    def open(self, real: Any, stubs: Any, path: bytes, flags: int, mode: int) -> int:
        norm = posixpath.normpath(path)
        digest = self.table.get(norm)
        if digest is None:
            if norm.endswith(b".pyc"):
                raise OSError(errno.ENOENT, "cached bytecode is not read in a signed enclave (its verified source "
                                            "is compiled instead)")
            if norm.endswith(b".py") and not flags & _os.O_DIRECTORY:
                text = _os.fsdecode(norm)
                log.warning("posix_shim: %s is Python source the manifest does not list as trusted; refused", text)
                raise self._refuse(f"{text} is not a trusted file of the manifest")
            return real(path, flags, mode)
        if flags & _WRITE:
            raise self._refuse(f"{_os.fsdecode(norm)} is a trusted file: read-only in a signed enclave")
        handle = real(path, flags, mode)
        try:
            data = self._read_all(stubs, handle)
        except BaseException:
            stubs.close(handle)
            raise
        got = hashlib.sha256(data).digest()
        if not hmac.compare_digest(got, digest):
            stubs.close(handle)
            text = _os.fsdecode(norm)
            # A host violation (logged, counted, traced; aborts under violation=abort), answered as EACCES.
            self.client._refuse("open", f"trusted file {text} does not match the manifest (sha256 expected "
                                        f"{digest.hex()}, the host served {got.hex()})", (path, flags, mode))
            raise self._refuse(f"{text} does not match its hash in the manifest")
        with self.lock:
            self.open_files[handle] = _Verified(data, norm)
        return handle

    @staticmethod
    def _read_all(stubs: Any, handle: int) -> bytes:
        chunks: list[bytes] = []
        offset = 0
        while True:
            chunk = stubs.pread(handle, MAX_DATA, offset)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            offset += len(chunk)

    # -- serving verified handles ------------------------------------------------------------------------------
    def read(self, v: _Verified, count: int) -> bytes:
        with self.lock:
            data = v.data[v.pos:v.pos + count]
            v.pos += len(data)
        return data

    def lseek(self, v: _Verified, offset: int, whence: int) -> int:
        with self.lock:
            size = len(v.data)
            if whence == _SEEK_SET:
                new = offset
            elif whence == _SEEK_CUR:
                new = v.pos + offset
            elif whence == _SEEK_END:
                new = size + offset
            elif whence in (_SEEK_DATA, _SEEK_HOLE):
                if offset < 0 or offset >= size:
                    raise OSError(errno.ENXIO, _strerror(errno.ENXIO))
                new = offset if whence == _SEEK_DATA else size
            else:
                raise OSError(errno.EINVAL, _strerror(errno.EINVAL))
            if new < 0:
                raise OSError(errno.EINVAL, _strerror(errno.EINVAL))
            v.pos = new
            return new


def guard(client: OcallClient, table: dict[str, str]) -> SimpleNamespace:
    """client.stubs with the trusted-file checks in front of open and the verified bytes behind reads."""
    stubs = client.stubs
    trusted = TrustedFiles(client, table)
    files = trusted.open_files
    sys.dont_write_bytecode = True  # caches would be written through the host, and never read back anyway
    wrapped = dict(vars(stubs))
    real_open, real_read, real_pread = stubs.open, stubs.read, stubs.pread
    real_lseek, real_fstat, real_close, real_sendfile = stubs.lseek, stubs.fstat, stubs.close, stubs.sendfile

    def open(path: bytes, flags: int, mode: int) -> int:
        return trusted.open(real_open, stubs, path, flags, mode)

    def read(handle: int, count: int) -> bytes:
        v = files.get(handle)
        return real_read(handle, count) if v is None else trusted.read(v, count)

    real_into = getattr(real_read, "into", None)
    if real_into is not None:
        def into(buffer: Any, handle: int, count: int) -> int:
            v = files.get(handle)
            if v is None:
                return real_into(buffer, handle, count)
            data = trusted.read(v, count)
            buffer[:len(data)] = data
            return len(data)

        read.into = into  # type: ignore[attr-defined]

    def pread(handle: int, count: int, offset: int) -> bytes:
        v = files.get(handle)
        return real_pread(handle, count, offset) if v is None else v.data[offset:offset + count]

    def lseek(handle: int, offset: int, whence: int) -> int:
        v = files.get(handle)
        return real_lseek(handle, offset, whence) if v is None else trusted.lseek(v, offset, whence)

    def fstat(handle: int) -> tuple:
        st = real_fstat(handle)
        v = files.get(handle)
        if v is None:
            return st
        st = list(st)
        st[6] = len(v.data)  # the size the program sees is the verified one (calls.STAT: size is field 6)
        return tuple(st)

    def close(handle: int) -> None:
        with trusted.lock:
            files.pop(handle, None)
        real_close(handle)

    def sendfile(out: int, in_: int, offset: int, count: int) -> int:
        v = files.get(in_)
        if v is None:
            return real_sendfile(out, in_, offset, count)
        if offset < 0:
            data = trusted.read(v, count)
            sent = stubs.write(out, data) if data else 0
            if sent < len(data):
                trusted.lseek(v, sent - len(data), _SEEK_CUR)  # give back what was not written
            return sent
        data = v.data[offset:offset + count]
        return stubs.write(out, data) if data else 0

    wrapped.update(open=open, read=read, pread=pread, lseek=lseek, fstat=fstat, close=close, sendfile=sendfile)
    out = SimpleNamespace(**wrapped)
    out.trusted = trusted
    return out


__all__ = ["TrustedFiles", "guard"]
