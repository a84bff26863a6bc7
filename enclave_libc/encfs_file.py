"""The raw file `open()` gives for a path in an encrypted folder (`EncryptedFile`, compare FileIO), and the
opening and closing of the one shared state (enclave_libc/encfs_format.py) that all its handles use.

CPython's own buffered and text layers sit above it, so json, csv, zipfile, logging and dbm.dumb work
unchanged.  `fileno()` is refused: a descriptor would hand native code ciphertext.
"""

from __future__ import annotations

import errno
import io as _io
import os as _os
import stat as _stat
from typing import Any

from . import files, runtime
from .encfs_format import CHUNK, _lock, _State, _states
from .errors import oserror, with_filename
from .rawfile import RawFile

_O_CLOEXEC = getattr(_os, "O_CLOEXEC", 0)


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


class EncryptedFile(RawFile):
    """A raw binary file over an encrypted host file (compare FileIO)."""

    _blksize = 2 * CHUNK

    def __init__(self, name: Any, full: bytes, root: bytes, mode: str) -> None:
        self._state: _State | None = None
        if not set(mode) <= set("xrwab+") or sum(c in "rwax" for c in mode) != 1 or mode.count("+") > 1:
            raise ValueError(f"invalid mode: {mode}")
        self._readable = "r" in mode or "+" in mode
        self._writable = "r" not in mode or "+" in mode
        self._appending = "a" in mode
        self._created = "x" in mode
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

    def _release(self) -> None:
        state, self._state = self._state, None
        if state is not None:
            with _lock:
                _release(state)

    @property
    def closefd(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<posix_shim encrypted file name={self.name!r} mode={self.mode!r}>"
