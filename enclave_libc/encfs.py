"""Encrypted folders: files under `--encrypted=DIR` are stored on the host as authenticated ciphertext.

`open()` of a path under such a folder (policy: `Access.encrypted`) returns a raw file (`EncryptedFile`) that
encrypts and authenticates on the way out and checks and decrypts on the way in; CPython's own buffered and
text layers sit above it, so json, csv, zipfile, logging and dbm.dumb work unchanged.  The host sees only the
layout of encfs_format.py, ciphertext lengths in --trace, and the file names (names are not hidden; see the
docs).

The file format (header, chunks, keys, rollback checks) is enclave_libc/encfs_format.py; the raw file
enclave_libc/encfs_file.py.  This module decides which paths are encrypted, gives open() its raw layer, and
serves the path calls that must know about encryption (stat's size, rename, unlink, truncate, link, os.open).

Keys: `seal_key(kind)` from the host (derived there from the platform secret and the enclave identity or its
signer, as for sealing), then HKDF-SHA256 into the AES key and the MAC key, so the host never holds them... in a
real platform; the simulated host holds the platform secret and so could derive them.

Every failed check is a host violation (EIO, logged, and fatal under `--on-violation=abort`).  `fileno()` is
refused (a descriptor would hand native code ciphertext), and so is `os.open` on such a path.
"""

from __future__ import annotations

import errno
import os as _os
import posixpath
import stat as _stat
from typing import Any

from ocall_bridge.calls import uses

from . import files, runtime
from .encfs_file import EncryptedFile, _acquire, _release
from .encfs_format import _lock, _states, _versions
from .errors import Unsupported, oserror, with_filename

_fsencode, _fspath = _os.fsencode, _os.fspath


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


@uses("stat", "lstat", "open", "fstat", "pread", "pwrite", "ftruncate", "close")
def stat(path: Any, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> _os.stat_result:
    st = files.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    if isinstance(path, int) or not _stat.S_ISREG(st.st_mode) or not getattr(runtime.RT.access, "encrypted", ()):
        return st
    full, root = _locate(path, dir_fd)
    if root is None:
        return st
    return _with_size(st, _plain_size(full, root))


@uses("stat", "lstat", "open", "fstat", "pread", "pwrite", "ftruncate", "close")
def lstat(path: Any, *, dir_fd: int | None = None) -> _os.stat_result:
    return stat(path, dir_fd=dir_fd, follow_symlinks=False)


_WRITE_FLAGS = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC | _os.O_APPEND


@uses("open", "fstat", "close", partial="a file (not a directory) in an encrypted folder: its descriptor "
                                          "would read and write ciphertext")
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


@uses("rename", "stat", "lstat", "open", "fstat", "pread", "pwrite", "ftruncate", "close")
def rename(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
    _move(src, dst, files.rename, src_dir_fd, dst_dir_fd)


@uses("replace", "stat", "lstat", "open", "fstat", "pread", "pwrite", "ftruncate", "close")
def replace(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
    _move(src, dst, files.replace, src_dir_fd, dst_dir_fd)


def _forget(path: Any, dir_fd: int | None, fn: Any) -> None:
    fn(path, dir_fd=dir_fd)
    if getattr(runtime.RT.access, "encrypted", ()):
        full, root = _locate(path, dir_fd)
        if root is not None:
            seen = _versions().get(full)
            _versions()[full] = (b"", seen[1] if seen else 0)  # deleted: a restored copy is refused


@uses("unlink")
def unlink(path: Any, *, dir_fd: int | None = None) -> None:
    _forget(path, dir_fd, files.unlink)


@uses("unlink")
def remove(path: Any, *, dir_fd: int | None = None) -> None:
    _forget(path, dir_fd, files.remove)


@uses("truncate", "open", "fstat", "pread", "pwrite", "ftruncate", "close")
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


@uses("link")
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
