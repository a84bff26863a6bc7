"""One encrypted file: its layout on the host, its keys, and the state the enclave keeps of it while open.

The folder-level behaviour (which paths are encrypted, open(), the path calls) is enclave_libc/encfs.py and the
raw file object enclave_libc/encfs_file.py; this module is the format both rest on, and what
`python -m posix_shim sealed` reads to describe a file (MAGIC, HDR, KINDS, CHUNK).

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
"""

from __future__ import annotations

import hashlib
import hmac
import os as _os
import struct
import threading
from collections.abc import Iterator
from typing import Any

from ocall_bridge import originals
from ocall_bridge.types import MAX_DATA

from . import files, runtime
from .errors import HostViolation

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
_urandom = originals.get("posix", "urandom")
_lock = threading.RLock()  # one lock for every encrypted file: the shared states and the scratch buffers


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
        for k, n, rec in self._listed(self._blobs(first, last)):
            o = (k - first) * CHUNK
            self._decrypt(k, rec, out[o:o + n])

    def _listed(self, blobs: list[tuple[int, int, memoryview]]) -> Iterator[tuple[int, int, memoryview]]:
        """(k, plaintext length, record) of each chunk in `blobs`, once its tag is the one the root lists: a
        chunk from another version or place is refused before any decryption."""
        tags, size = self.tags, self.size
        for i, j, blob in blobs:
            for k in range(i, j + 1):
                at = (k - i) * REC
                n = min(CHUNK, size - k * CHUNK)
                rec = blob[at:at + OVER + n]
                if rec[-16:] != tags[k]:
                    raise _violation("pread", self.full, f"chunk {k} is not the one the header lists")
                yield k, n, rec

    def _decrypt(self, k: int, rec: memoryview, out: memoryview) -> None:
        """Check chunk k's record (nonce, ciphertext, tag) by AES-GCM and write its plaintext into `out`."""
        from cryptography.exceptions import InvalidTag

        try:
            self.keys.decrypt_into(rec[:12], rec[12:], self._aad(k), out)
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
        blobs = self._blobs(first, (end - 1) // CHUNK)
        self.raw = None  # spent from here on, whatever happens below
        plains = []
        for k, n, rec in self._listed(blobs):
            self._decrypt(k, rec, rec[12:12 + n])
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
        encrypt_into, tags = self.keys.encrypt_into, self.tags
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
                encrypt_into(nonce, plain, self._aad(k), out[at + 12:tag_at + 16])
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
