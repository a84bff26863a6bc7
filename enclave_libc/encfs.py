"""Encrypted folders: files under `--encrypted=DIR` are stored on the host as authenticated ciphertext.

`open()` of a path under such a folder (policy: `Access.encrypted`) returns a raw file (`EncryptedFile`) that
encrypts and authenticates on the way out and checks and decrypts on the way in; CPython's own buffered and
text layers sit above it, so json, csv, zipfile, logging and dbm.dumb work unchanged.  The host sees only the
layout below, ciphertext lengths in --trace, and the file names (names are not hidden; see the docs).

On the host, one file is:

    +--------------------------- header, 112 bytes ---------------------------+
    | magic "PSENC2\\0\\0" (8) | kind (1) | 0 (7) | file id (16) | size (8)       |
    | version (8) | root = SHA-256(tag 0 || tag 1 || ...) (32) | MAC (32)         |
    +--------------------------------------------------------------------------+
    | chunk 0: nonce (12) | AES-GCM(65536 bytes of plaintext) | tag (16)        |   at 112 + i * 65564
    | chunk 1: ...                                                              |
    | last chunk: nonce (12) | AES-GCM(1..65536 bytes) | tag (16)               |
    +--------------------------------------------------------------------------+

* Each chunk is AES-256-GCM with a fresh random nonce per write; its associated data is the file id and the
  chunk index, so a chunk moved to another place or another file fails.
* The header MAC (HMAC-SHA256) covers magic, kind, file id, size, version, root and the file's path relative
  to its encrypted folder: a file swapped for another's (or renamed behind the program's back) fails; a
  truncated or extended file no longer has the length `size` implies; an old copy of a chunk has a tag that is
  not in `root`.
* The enclave remembers, per path, the (file id, version) it last wrote during this run: an older copy of the
  whole file put back by the host (rollback), or a deleted file restored, is refused.  Across restarts nothing
  inside survives, so a rollback to a state the enclave once wrote cannot be detected then (docs).

Keys: `seal_key(kind)` from the host (derived there from the platform secret and the enclave identity or its
signer, as for sealing), then HKDF-SHA256 into the AES key and the MAC key, so the host never holds them... in a
real platform; the simulated host holds the platform secret and so could derive them.

Every failed check is a host violation (EIO, logged, and fatal under `--on-violation=abort`).  `fileno()` is
refused (a descriptor would hand native code ciphertext), and so is `os.open` on such a path.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import io as _io
import os as _os
import posixpath
import stat as _stat
import struct
import threading
from typing import Any

from ocall_bridge.types import MAX_DATA

from . import files, runtime
from .errors import HostViolation, Unsupported, oserror, with_filename

MAGIC = b"PSENC2\0\0"
# 64 KiB of plaintext per chunk: each AES-GCM call and each Python step per chunk has a fixed cost that 4 KiB
# chunks paid 256 times per MiB (reads ran at 3-19 % of plain I/O); at 64 KiB it is paid 16 times.  The price is
# in small random writes and reads, which seal or open one whole chunk: about 64 KiB of AES (tens of
# microseconds), the same order as the one ocall such an access makes anyway.
CHUNK = 64 << 10
HDR = 112
OVER = 12 + 16  # nonce + tag per chunk
REC = CHUNK + OVER
RAW_CACHE = 16 << 20
SCRATCH_MAX = 4 << 20
KINDS = {"enclave": 0, "signer": 1}
_urandom = _os.urandom
_fsencode, _fspath = _os.fsencode, _os.fspath
_O_CLOEXEC = getattr(_os, "O_CLOEXEC", 0)
_lock = threading.RLock()


# -- where -----------------------------------------------------------------------------------------------------


def _root_of(full: bytes) -> bytes | None:
    rt = runtime.RT
    if not rt:
        return None
    for root in getattr(rt.access, "encrypted", ()):
        if full == root or full.startswith(root + b"/"):
            return root
    return None


def _locate(path: Any, dir_fd: int | None = None) -> tuple[bytes, bytes | None]:
    """(absolute normalized path, its encrypted folder or None)."""
    rt = runtime.RT
    p = _fsencode(_fspath(path))
    full = posixpath.normpath(rt.resolve(p, dir_fd))
    return full, _root_of(full)


def _violation(call: str, full: bytes, problem: str) -> HostViolation:
    return runtime.RT.client._refuse(call, f"encrypted file {_os.fsdecode(full)}: {problem}")


def _versions() -> dict[bytes, tuple[bytes, int]]:
    return runtime.RT.extra.setdefault("encfs.versions", {})


def _states() -> dict[bytes, _State]:
    return runtime.RT.extra.setdefault("encfs.open", {})


# -- keys ------------------------------------------------------------------------------------------------------


class _Keys:
    aes: Any  # cryptography's AESGCM
    mac: bytes
    encrypt_into: Any  # AESGCM.encrypt_into, or a copying stand-in for older cryptography releases
    decrypt_into: Any

    def __init__(self, kind: int) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        from .sealing import seal_key

        base = seal_key(kind)
        # The derived keys of one base key, kept for this run only (runtime.RT.extra): HKDF and the AESGCM
        # object cost more than a small file's I/O, and the base key is still asked of the host at every open.
        known = runtime.RT.extra.setdefault("encfs.keys", {})
        if base in known:
            self.aes, self.mac, self.encrypt_into, self.decrypt_into = known[base]
            return
        okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"posix_shim encrypted files v1",
                   info=b"chunk key || header mac key").derive(base)
        self.aes = aes = AESGCM(okm[:32])
        self.mac = okm[32:]
        # encrypt_into/decrypt_into (newer cryptography releases) write into our buffers; with an older one the
        # same results are copied there.
        self.encrypt_into = getattr(aes, "encrypt_into", None) or _copying(aes.encrypt)
        self.decrypt_into = getattr(aes, "decrypt_into", None) or _copying(aes.decrypt)
        known[base] = (self.aes, self.mac, self.encrypt_into, self.decrypt_into)


def _copying(fn: Any) -> Any:
    def into(nonce: Any, data: Any, aad: Any, out: memoryview) -> int:
        result = fn(nonce, data, aad)
        out[:len(result)] = result
        return len(result)

    return into


# -- one file's state, shared by every handle open on it ------------------------------------------------------


class _State:
    """Header fields, chunk tags and the host descriptor of one encrypted file."""

    def __init__(self, full: bytes, root: bytes, fd: int, writable: bool) -> None:
        self.full, self.root, self.fd, self.writable = full, root, fd, writable
        self.refs = 0
        self.kind = KINDS[getattr(runtime.RT.access, "encrypted_bound", "signer")]
        # Asked at every open, never cached: a later program run in the same enclave has another identity.
        self.keys = _Keys(self.kind)
        self.file_id = b""
        self.size = 0
        self.version = 0
        self.tags: list[bytes] = []
        self.cache: tuple[int, bytes] | None = None  # the last chunk decrypted
        # The chunk records as read (and verified against the root) at open, for files up to RAW_CACHE: the
        # first read after open then costs no ocall.  Dropped at the first write.
        self.raw: list[tuple[int, Any]] | None = None  # (index of its first chunk, whole records)

    @property
    def rel(self) -> bytes:
        return self.full[len(self.root):].lstrip(b"/")

    def _mac(self, root_hash: bytes) -> bytes:
        msg = (MAGIC + bytes([self.kind]) + self.file_id + struct.pack("<QQ", self.size, self.version)
               + root_hash + self.rel)
        return hmac.digest(self.keys.mac, msg, "sha256")

    def _header(self) -> bytes:
        root_hash = hashlib.sha256(b"".join(self.tags)).digest()
        return (MAGIC + bytes([self.kind]) + b"\0" * 7 + self.file_id + struct.pack("<QQ", self.size, self.version)
                + root_hash + self._mac(root_hash))

    def length(self) -> int:
        """The host file's length that `size` implies."""
        if not self.size:
            return HDR
        n = -(-self.size // CHUNK)
        return HDR + (n - 1) * REC + OVER + (self.size - (n - 1) * CHUNK)

    # -- creating and loading --------------------------------------------------------------------------------
    def create(self) -> None:
        self.file_id = _urandom(16)
        self.size, self.tags, self.cache = 0, [], None
        self.version = _versions().get(self.full, (b"", 0))[1]
        self.commit()

    def load(self, actual: int) -> None:
        """Verify the file the host has (`actual` bytes by its fstat) and take its header and tags.

        A file whose records fit the copy kept for reads (RAW_CACHE) is read whole, header included, into one
        enclave buffer: its bytes are copied once from the host's answers, then verified (header MAC, length,
        tags against the root) and later decrypted from that copy.  `actual` only sizes the buffer and the
        reads; it is checked against the authenticated size before anything else is read.
        """
        full = self.full
        buf: memoryview | None = None
        if actual <= HDR + RAW_CACHE:
            buf = _records_buffer(self, max(actual, HDR))
            got = files.pread_into(self.fd, buf, 0)
            head = bytes(buf[:min(got, HDR)])
        else:
            head = files.pread(self.fd, HDR, 0)
        if len(head) < HDR:
            raise _violation("pread", full, f"{len(head)} bytes: not an encrypted file (no header)")
        if head[:8] != MAGIC or head[8] not in KINDS.values():
            raise _violation("pread", full, "not an encrypted file (bad magic)")
        if head[8] != self.kind:
            raise _violation("pread", full, "encrypted under the other key binding (enclave/signer)")
        self.file_id = head[16:32]
        self.size, self.version = struct.unpack("<QQ", head[32:48])
        root_hash, mac = head[48:80], head[80:112]
        if not hmac.compare_digest(self._mac(root_hash), mac):
            raise _violation("pread", full, "header authentication failed (modified, another file's, or not "
                                            "written by this enclave's key)")
        if actual != self.length():
            what = "truncated" if actual < self.length() else "extended"
            raise _violation("fstat", full, f"{what}: {actual} bytes on the host, {self.length()} expected")
        n = -(-self.size // CHUNK)
        end = self.length()
        raw: list[tuple[int, Any]] | None
        if buf is not None:
            pos = got
            while pos < end:
                more = files.pread_into(self.fd, buf[pos:end], pos)
                if not more:
                    raise _violation("pread", full, "truncated while reading")
                pos += more
            records = buf[HDR:end]
            tags = [bytes(records[at - 16:at]) for at in range(REC, len(records) + 1, REC)]
            if len(records) % REC:
                tags.append(bytes(records[-16:]))
            raw = [(0, records)]
        else:
            raw = None
            tags = []
            pos = HDR
            carry = b""
            while pos < end:
                piece = files.pread(self.fd, min(MAX_DATA - MAX_DATA % REC, end - pos), pos)
                if not piece:
                    raise _violation("pread", full, "truncated while reading")
                carry = carry + piece if carry else piece
                pos += len(piece)
                whole = len(carry) // REC * REC
                tags.extend(carry[at - 16:at] for at in range(REC, whole + 1, REC))
                carry = carry[whole:]
            if carry:
                tags.append(carry[-16:])
        if len(tags) != n or hashlib.sha256(b"".join(tags)).digest() != root_hash:
            raise _violation("pread", full, "chunks do not match the header (swapped, reordered or rolled back)")
        self.tags = tags
        self.raw = raw
        seen = _versions().get(full)
        if seen is not None and seen != (self.file_id, self.version):
            if seen[0] == self.file_id and self.version < seen[1]:
                raise _violation("pread", full, f"rolled back to version {self.version}; this enclave wrote "
                                                f"version {seen[1]}")
            raise _violation("pread", full, "replaced: this is not the file this enclave last wrote here")
        _versions()[full] = (self.file_id, self.version)

    def commit(self) -> None:
        """Write the header for the current state (version + 1) and remember that version."""
        self.version += 1
        files.pwrite(self.fd, self._header(), 0)
        _versions()[self.full] = (self.file_id, self.version)

    # -- chunks ------------------------------------------------------------------------------------------------
    def _aad(self, i: int) -> bytes:
        return self.file_id + struct.pack("<Q", i)

    def _plain(self, first: int, last: int, out: memoryview) -> None:
        """Decrypt chunks first..last into out (their plaintext length), each checked against the tag the root
        lists and by AES-GCM.

        The records come from the copy kept at open, or from as few preads as MAX_DATA allows; either way they
        are bytes in enclave memory, read once from the host, and decrypted from there through views: no
        per-chunk copies or objects (decrypt_into).
        """
        from cryptography.exceptions import InvalidTag

        decrypt_into, tags, size, fid = self.keys.decrypt_into, self.tags, self.size, self.file_id
        for i, j, blob in self._blobs(first, last):
            for k in range(i, j + 1):
                at = (k - i) * REC
                n = min(CHUNK, size - k * CHUNK)
                rec = blob[at:at + OVER + n]
                if rec[-16:] != tags[k]:
                    raise _violation("pread", self.full, f"chunk {k} is not the one the header lists")
                o = (k - first) * CHUNK
                try:
                    decrypt_into(rec[:12], rec[12:], fid + struct.pack("<Q", k), out[o:o + n])
                except InvalidTag:
                    raise _violation("pread", self.full, f"chunk {k} failed authentication") from None

    def _blobs(self, first: int, last: int) -> list[tuple[int, int, memoryview]]:
        """(i, j, records of chunks i..j) covering first..last: views of the copy kept at open, or preads."""
        size = self.size
        out = []
        if self.raw is not None:
            for s0, piece in self.raw:
                i, j = max(first, s0), min(last, s0 + (len(piece) + REC - 1) // REC - 1)
                if i <= j:
                    at = (i - s0) * REC
                    out.append((i, j, memoryview(piece)[at:(j - s0) * REC + OVER + min(CHUNK, size - j * CHUNK)]))
            return out
        i = first
        while i <= last:
            j = min(last, i + MAX_DATA // REC - 1)
            start = HDR + i * REC
            stop = HDR + j * REC + OVER + min(CHUNK, size - j * CHUNK)
            got = files.pread(self.fd, stop - start, start)
            if len(got) < stop - start:  # a short answer: the rest, then one copy of the whole
                parts = [got]
                at = start + len(got)
                while at < stop and parts[-1]:
                    parts.append(files.pread(self.fd, stop - at, at))
                    at += len(parts[-1])
                got = b"".join(parts)
            if len(got) != stop - start:
                raise _violation("pread", self.full, f"chunks {i}..{j} are {len(got)} bytes, not {stop - start}")
            out.append((i, j, memoryview(got)))
            i = j + 1
        return out

    def chunk(self, i: int) -> bytes:
        if self.cache is not None and self.cache[0] == i:
            return self.cache[1]
        buf = bytearray(min(CHUNK, self.size - i * CHUNK))
        self._plain(i, i, memoryview(buf))
        plain = bytes(buf)
        self.cache = (i, plain)
        return plain

    def read(self, pos: int, n: int) -> bytes:
        end = min(self.size, pos + n)
        if pos >= end:
            return b""
        first, last = pos // CHUNK, (end - 1) // CHUNK
        off = pos - first * CHUNK
        if first == last:
            return self.chunk(first)[off:off + end - pos]
        if end == self.size and self.raw is not None:
            return self._read_to_end_in_place(first, pos, end)
        total = last * CHUNK + min(CHUNK, self.size - last * CHUNK) - first * CHUNK
        out = _scratch("encfs.in", total)
        self._plain(first, last, out)
        if end < self.size:  # the next read starts in this chunk; at the end of the file none will
            self.cache = (last, bytes(out[(last - first) * CHUNK:]))
        return bytes(out[off:off + end - pos])

    def _read_to_end_in_place(self, first: int, pos: int, end: int) -> bytes:
        """A read to the end of the file from the copy kept at open (readall after open, the common case): each
        chunk is checked and decrypted where its ciphertext lies in that copy, and the plaintexts are gathered
        once into the answer.  Half the memory traffic of decrypting into a second buffer; the copy is spent, so
        a later read takes its records from the host again (and checks them against the same tags)."""
        from cryptography.exceptions import InvalidTag

        decrypt_into, tags, size, fid = self.keys.decrypt_into, self.tags, self.size, self.file_id
        blobs = self._blobs(first, (end - 1) // CHUNK)
        self.raw = None  # spent from here on, whatever happens below
        plains = []
        for i, j, blob in blobs:
            for k in range(i, j + 1):
                at = (k - i) * REC
                n = min(CHUNK, size - k * CHUNK)
                rec = blob[at:at + OVER + n]
                if rec[-16:] != tags[k]:
                    raise _violation("pread", self.full, f"chunk {k} is not the one the header lists")
                try:
                    decrypt_into(rec[:12], rec[12:], fid + struct.pack("<Q", k), rec[12:12 + n])
                except InvalidTag:
                    raise _violation("pread", self.full, f"chunk {k} failed authentication") from None
                plains.append(rec[12:12 + n])
        off = pos - first * CHUNK
        if off:
            plains[0] = plains[0][off:]
        return b"".join(plains)

    def write(self, pos: int, data: Any) -> None:
        """Seal data (bytes-like) at plaintext offset pos, then commit the header."""
        if pos > self.size:  # a hole reads back as zeros, as natively
            gap = pos - self.size
            data, pos = b"\0" * gap + bytes(data), self.size
        view = memoryview(data).cast("B")
        end = pos + len(view)
        try:
            self._seal(view, pos, end)
        except BaseException:
            self.cache = None
            raise
        finally:
            self.raw = None  # the records it held for the chunks written are stale
        self.size = max(self.size, end)
        self.commit()

    def _seal(self, view: memoryview, pos: int, end: int) -> None:
        """Encrypt the chunks view touches straight into one buffer of records per pwrite (encrypt_into: no
        per-chunk objects) and write them; the tags follow.  A partly overwritten chunk is merged with its old
        plaintext first (which may still come from the copy kept at open)."""
        first, last = pos // CHUNK, (end - 1) // CHUNK
        nchunks, old_size = len(self.tags), self.size
        encrypt_into, tags, fid = self.keys.encrypt_into, self.tags, self.file_id
        per = MAX_DATA // REC  # records per pwrite
        plain: Any = b""
        i = first
        while i <= last:
            j = min(last, i + per - 1)
            out = _scratch("encfs.out", (j - i) * REC + OVER + min(CHUNK, max(old_size, end) - j * CHUNK))
            nonces = _urandom(12 * (j - i + 1))
            for k in range(i, j + 1):
                start = k * CHUNK
                lo, hi = max(pos, start) - start, min(end, start + CHUNK) - start
                piece = view[start + lo - pos:start + hi - pos]
                if k < nchunks and (lo > 0 or hi < min(CHUNK, old_size - start)):
                    old = self.chunk(k)  # partly overwritten: the rest of the chunk stays
                    plain = old[:lo] + piece + old[hi:]
                else:
                    plain = piece
                at = (k - i) * REC
                nonce = nonces[(k - i) * 12:(k - i + 1) * 12]
                out[at:at + 12] = nonce
                tag_at = at + 12 + len(plain)
                encrypt_into(nonce, plain, fid + struct.pack("<Q", k), out[at + 12:tag_at + 16])
                tag = bytes(out[tag_at:tag_at + 16])
                if k < len(tags):
                    tags[k] = tag
                else:
                    tags.append(tag)
            _pwrite_all(self.fd, out, HDR + i * REC)
            i = j + 1
        if first <= last:
            # The last chunk written stays at hand (and no older one, now stale): appends and small writes go on
            # where the last one ended without opening it again.
            self.cache = (last, bytes(plain))

    def truncate(self, size: int) -> None:
        if size > self.size:
            self.write(size, b"")  # zeros up to size
            return
        if size == self.size:
            return
        n = -(-size // CHUNK)
        keep = self.chunk(n - 1)[:size - (n - 1) * CHUNK] if n else b""
        self.raw = None
        self.tags = self.tags[:n - 1] if n else []
        self.size = (n - 1) * CHUNK if n else 0
        self.cache = None
        files.ftruncate(self.fd, self.length())
        if n:
            self.write((n - 1) * CHUNK, keep)  # the new last chunk, re-encrypted; commits
        else:
            self.commit()


def _records_buffer(state: _State, n: int) -> memoryview:
    """n bytes for an opening file's records, which it keeps (state.raw) for the reads that follow.

    Small files share one buffer kept for the run, as _scratch does: the file that loaded last owns it, and the
    one it takes it from drops its copy (its reads then pread again, as after a write).
    """
    if n > SCRATCH_MAX:
        return memoryview(bytearray(n))
    extra = runtime.RT.extra
    owner = extra.get("encfs.raw.owner")
    if owner is not None and owner is not state:
        owner.raw = None
    extra["encfs.raw.owner"] = state
    return _scratch("encfs.raw", n)


def _scratch(name: str, n: int) -> memoryview:
    """n bytes of a buffer kept for this run (runtime.RT.extra) and reused by every large read or write: a fresh
    megabyte per call costs more in page faults than the AES work it holds.  Used under _lock only; a read and a
    write each have their own (a write reads the chunks it partly overwrites)."""
    if n > SCRATCH_MAX:
        return memoryview(bytearray(n))
    extra = runtime.RT.extra
    buf = extra.get(name)
    if buf is None or len(buf) < n:
        buf = extra[name] = bytearray(max(n, MAX_DATA))
    return memoryview(buf)[:n]


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = files.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _acquire(full: bytes, root: bytes, writable: bool, create: bool, exclusive: bool,
             fresh: bool = False) -> _State:
    """The shared state of `full`, opening (and verifying, or creating) it if no handle has it open.

    `fresh` ("w" mode) starts the file over without reading what was there, as O_TRUNC does natively.
    """
    states = _states()
    state = states.get(full)
    if state is not None and (state.writable or not writable):
        state.refs += 1
        if fresh:
            state.truncate(0)
        return state
    flags = (_os.O_RDWR if writable else _os.O_RDONLY) | _O_CLOEXEC
    created = False
    if fresh and not exclusive and state is None:
        fd = files.open(full, flags | _os.O_CREAT | _os.O_TRUNC, 0o666)  # empty now, as "w" natively
        created = True
    elif create:
        try:
            fd = files.open(full, flags | _os.O_CREAT | _os.O_EXCL, 0o666)
            created = True
        except FileExistsError:
            if exclusive:
                raise
            fd = files.open(full, flags)
    else:
        fd = files.open(full, flags)
    try:
        st = files.fstat(fd)
        if _stat.S_ISDIR(st.st_mode):
            raise oserror(errno.EISDIR, _os.fsdecode(full))
        if state is not None:  # upgrade a read-only state to a writable descriptor
            files.close(state.fd)
            state.fd, state.writable = fd, True
            state.refs += 1
            if fresh:
                state.truncate(0)
            return state
        state = _State(full, root, fd, writable)
        if created:  # new (O_EXCL) or emptied (O_TRUNC)
            state.create()
        elif fresh:
            files.ftruncate(fd, 0)
            state.create()
        else:
            state.load(st.st_size)
    except BaseException:
        files.close(fd)
        raise
    state.refs = 1
    states[full] = state
    return state


def _release(state: _State) -> None:
    state.refs -= 1
    if state.refs <= 0:
        _states().pop(state.full, None)
        if runtime.RT.extra.get("encfs.raw.owner") is state:
            del runtime.RT.extra["encfs.raw.owner"]
        state.raw = None
        files.close(state.fd)


# -- the raw file ---------------------------------------------------------------------------------------------


class EncryptedFile(_io.RawIOBase):
    """A raw binary file over an encrypted host file (compare FileIO)."""

    _blksize = 2 * CHUNK

    def __init__(self, name: Any, full: bytes, root: bytes, mode: str) -> None:
        self._state: _State | None = None
        if not set(mode) <= set("xrwab+") or sum(c in "rwax" for c in mode) != 1 or mode.count("+") > 1:
            raise ValueError(f"invalid mode: {mode}")
        self._readable = "r" in mode or "+" in mode
        self._writable = "r" not in mode or "+" in mode
        self._appending = "a" in mode
        self._mode = mode
        self.name = name
        with _lock:
            try:
                self._state = _acquire(full, root, self._writable, "r" not in mode, "x" in mode, fresh="w" in mode)
            except OSError as exc:
                raise with_filename(exc, name) from None  # the name as the program gave it, as natively
        self._pos = self._state.size if self._appending else 0

    def _live(self) -> _State:
        if self._state is None or self.closed:
            raise ValueError("I/O operation on closed file")
        return self._state

    def readable(self) -> bool:
        self._live()
        return self._readable

    def writable(self) -> bool:
        self._live()
        return self._writable

    def seekable(self) -> bool:
        self._live()
        return True

    def isatty(self) -> bool:
        self._live()
        return False

    def fileno(self) -> int:
        raise _io.UnsupportedOperation(
            "fileno: this file is in an encrypted folder; a descriptor would give native code its ciphertext, "
            "not its contents (use the file object)")

    def readinto(self, b: Any) -> int:
        state = self._live()
        if not self._readable:
            raise _io.UnsupportedOperation("File not open for reading")
        view = memoryview(b).cast("B")
        with _lock:
            data = state.read(self._pos, len(view))
        view[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        state = self._live()
        if not self._readable:
            raise _io.UnsupportedOperation("File not open for reading")
        with _lock:
            data = state.read(self._pos, max(state.size - self._pos, 0))
        self._pos += len(data)
        return data

    def write(self, b: Any) -> int:
        state = self._live()
        if not self._writable:
            raise _io.UnsupportedOperation("File not open for writing")
        data = memoryview(b).cast("B")  # sealed straight from the caller's buffer, under the lock
        with _lock:
            if self._appending:
                self._pos = state.size
            if data:
                state.write(self._pos, data)
        self._pos += len(data)
        return len(data)

    def seek(self, pos: int, whence: int = 0) -> int:
        state = self._live()
        if whence == 0:
            new = pos
        elif whence == 1:
            new = self._pos + pos
        elif whence == 2:
            new = state.size + pos
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if new < 0:
            raise oserror(errno.EINVAL)
        self._pos = new
        return new

    def tell(self) -> int:
        self._live()
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        state = self._live()
        if not self._writable:
            raise _io.UnsupportedOperation("File not open for writing")
        size = self._pos if size is None else size
        if size < 0:
            raise oserror(errno.EINVAL)
        with _lock:
            state.truncate(size)
        return size

    def close(self) -> None:
        if not self.closed:
            try:
                super().close()
            finally:
                state, self._state = self._state, None
                if state is not None:
                    with _lock:
                        _release(state)

    @property
    def mode(self) -> str:
        m = self._mode.replace("b", "")
        if "x" in m:
            return "xb+" if "+" in m else "xb"
        if "a" in m:
            return "ab+" if "+" in m else "ab"
        if "w" in m:
            return "rb+" if "+" in m else "wb"
        return "rb+" if "+" in m else "rb"

    @property
    def closefd(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<posix_shim encrypted file name={self.name!r} mode={self.mode!r}>"


def open_raw(file: Any, mode: str) -> EncryptedFile | None:
    """The raw layer for `open()`, when `file` is under an encrypted folder; None otherwise."""
    rt = runtime.RT
    if not rt or not getattr(rt.access, "encrypted", ()) or isinstance(file, int):
        return None
    full, root = _locate(file)
    if root is None:
        return None
    return EncryptedFile(file, full, root, mode)


def refuse_descriptor(file: Any, call: str = "open") -> None:
    """Raise if `file` is under an encrypted folder: descriptor-level access would see ciphertext."""
    rt = runtime.RT
    if not rt or not getattr(rt.access, "encrypted", ()) or isinstance(file, int):
        return
    full, root = _locate(file)
    if root is not None:
        raise Unsupported(call, f"{_os.fsdecode(full)} is in an encrypted folder: a descriptor would read and write "
                                "its ciphertext; open it with open() instead")


# -- path calls that must know about encryption ---------------------------------------------------------------

_orig_stat, _orig_lstat, _orig_open = _os.stat, _os.lstat, _os.open
_orig_rename, _orig_replace, _orig_unlink, _orig_remove = _os.rename, _os.replace, _os.unlink, _os.remove
_orig_truncate, _orig_link = _os.truncate, _os.link


def _plain_size(full: bytes, root: bytes) -> int:
    with _lock:
        state = _states().get(full)
        if state is not None:
            return state.size
        state = _acquire(full, root, False, False, False)
        try:
            return state.size
        finally:
            _release(state)


def _with_size(st: _os.stat_result, size: int) -> _os.stat_result:
    fields = list(st[:10])
    fields[6] = size
    extra = {k: getattr(st, k) for k in ("st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns",
                                         "st_ctime_ns", "st_blksize", "st_blocks", "st_rdev")}
    return _os.stat_result(fields, extra)


def stat(path: Any, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> _os.stat_result:
    st = files.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    if isinstance(path, int) or not _stat.S_ISREG(st.st_mode) or not getattr(runtime.RT.access, "encrypted", ()):
        return st
    full, root = _locate(path, dir_fd)
    if root is None:
        return st
    return _with_size(st, _plain_size(full, root))


def lstat(path: Any, *, dir_fd: int | None = None) -> _os.stat_result:
    return stat(path, dir_fd=dir_fd, follow_symlinks=False)


_WRITE_FLAGS = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC | _os.O_APPEND


def os_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
    """os.open: directories in an encrypted folder open as usual (os.walk, rmtree, fd-relative calls); a file
    there is refused, because its descriptor would read and write ciphertext."""
    rt = runtime.RT
    if isinstance(path, int) or not getattr(rt.access, "encrypted", ()):
        return files.open(path, flags, mode, dir_fd=dir_fd)
    _full, root = _locate(path, dir_fd)
    if root is None or flags & _os.O_DIRECTORY:
        return files.open(path, flags, mode, dir_fd=dir_fd)
    if flags & _WRITE_FLAGS:
        refuse_descriptor(path if dir_fd is None else _full, "open")
    fd = files.open(path, flags, mode, dir_fd=dir_fd)
    if _stat.S_ISDIR(files.fstat(fd).st_mode):
        return fd
    files.close(fd)
    refuse_descriptor(path if dir_fd is None else _full, "open")
    raise AssertionError("unreachable")


def _move(src: Any, dst: Any, fn: Any, src_dir_fd: int | None, dst_dir_fd: int | None) -> None:
    if not getattr(runtime.RT.access, "encrypted", ()):
        return fn(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
    s_full, s_root = _locate(src, src_dir_fd)
    d_full, d_root = _locate(dst, dst_dir_fd)
    if s_root is None and d_root is None:
        return fn(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
    # (No s_root here means d_root has one: a move in.)
    if s_root is None or s_root != d_root or _stat.S_ISDIR(files.lstat(src, dir_fd=src_dir_fd).st_mode):
        # Files are bound to their path inside their folder: moving one out, in, or a whole directory would
        # need every file re-encrypted.  EXDEV is what a move across file systems gets, and shutil.move answers
        # it by copying (through open(), so re-encrypting) and deleting.
        raise OSError(errno.EXDEV, "Invalid cross-device link (a move into, out of or within an encrypted "
                                   "folder that is not a plain file rename)", src, None, dst)
    with _lock:
        state = _acquire(s_full, s_root, True, False, False)  # verifies the file before it is moved
        try:
            fn(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            states, versions = _states(), _versions()
            versions[s_full] = (b"", state.version)  # the old name must stay empty: a copy put back is refused
            if states.get(s_full) is state:
                del states[s_full]
            state.full = d_full
            states[d_full] = state
            state.commit()  # the header now binds the new path
        finally:
            _release(state)


def rename(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
    _move(src, dst, files.rename, src_dir_fd, dst_dir_fd)


def replace(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
    _move(src, dst, files.replace, src_dir_fd, dst_dir_fd)


def _forget(path: Any, dir_fd: int | None, fn: Any) -> None:
    fn(path, dir_fd=dir_fd)
    if getattr(runtime.RT.access, "encrypted", ()):
        full, root = _locate(path, dir_fd)
        if root is not None:
            seen = _versions().get(full)
            _versions()[full] = (b"", seen[1] if seen else 0)  # deleted: a restored copy is refused


def unlink(path: Any, *, dir_fd: int | None = None) -> None:
    _forget(path, dir_fd, files.unlink)


def remove(path: Any, *, dir_fd: int | None = None) -> None:
    _forget(path, dir_fd, files.remove)


def truncate(path: Any, length: int) -> None:
    """os.truncate: a file in an encrypted folder is cut (or extended) in its plaintext, re-encrypting the new
    last chunk; cutting its ciphertext on the host would leave a file that no longer authenticates."""
    if isinstance(path, int) or not getattr(runtime.RT.access, "encrypted", ()):
        return files.truncate(path, length)
    full, root = _locate(path)
    if root is None:
        return files.truncate(path, length)
    if length < 0:
        raise oserror(errno.EINVAL, path)
    with _lock:
        try:
            state = _acquire(full, root, True, False, False)
        except OSError as exc:
            raise with_filename(exc, path) from None
        try:
            state.truncate(length)
        finally:
            _release(state)


def link(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None,
         follow_symlinks: bool = True) -> None:
    """os.link: a second name for a file in an encrypted folder would not match the path its header binds."""
    if getattr(runtime.RT.access, "encrypted", ()):
        if _locate(src, src_dir_fd)[1] is not None or _locate(dst, dst_dir_fd)[1] is not None:
            raise OSError(errno.EXDEV, "Invalid cross-device link (files in an encrypted folder are bound to "
                                       "one path: copy instead)", src, None, dst)
    return files.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=follow_symlinks)


os_open.__name__ = os_open.__qualname__ = "open"  # reads as os.open in reprs and tracebacks

PATCHES: dict[Any, Any] = {
    _orig_stat: stat,
    _orig_lstat: lstat,
    _orig_open: os_open,
    _orig_rename: rename,
    _orig_replace: replace,
    _orig_unlink: unlink,
    _orig_remove: remove,
    _orig_truncate: truncate,
    _orig_link: link,
}
