"""Directory listing inside the enclave: os.listdir and os.scandir over the `getdents` ocall.

Entries come with their d_type, so `DirEntry.is_dir()` / `is_file()` / `is_symlink()` answer without another
ocall, exactly as CPython's DirEntry avoids a stat; `stat()` is asked once and cached.  Listing is batched
(up to 1024 entries per ocall) and streamed, so a huge directory never needs one huge frame.
"""

from __future__ import annotations

import os as _os
import stat as _stat
import sys
import warnings as _warnings
from typing import Any, cast

from . import runtime
from .errors import with_filename
from .files import _fd_of, _like, _path, stat_result
from .patches import interposed, patches_of

_BATCH = 1024
_KINDS = "string, bytes, os.PathLike, integer or None"  # what scandir/listdir accept, in their TypeError
_DT_DIR, _DT_REG, _DT_LNK = 4, 8, 10
_fsdecode = _os.fsdecode


@interposed("stat", "lstat", original="posix.DirEntry")
class DirEntry:
    """What os.scandir yields: name, path, and cached type answers."""

    __slots__ = ("name", "path", "_full", "_dtype", "_ino", "_stat", "_lstat")

    def __init__(self, name: str | bytes, path: str | bytes, full: bytes, dtype: int, ino: int) -> None:
        self.name = name
        self.path = path
        self._full = full  # absolute host path, for the stat ocalls
        self._dtype = dtype
        self._ino = ino
        self._stat: _os.stat_result | None = None
        self._lstat: _os.stat_result | None = None

    def __fspath__(self) -> str | bytes:
        return self.path

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle 'posix.{type(self).__name__}' object")  # as the C type: no state to give

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"

    def inode(self) -> int:
        return self._ino

    def stat(self, *, follow_symlinks: bool = True) -> _os.stat_result:
        if follow_symlinks and self.is_symlink():
            if self._stat is None:
                self._stat = self._ocall_stat("stat")
            return self._stat
        if self._lstat is None:
            self._lstat = self._ocall_stat("lstat")
        return self._lstat

    def _ocall_stat(self, call: str) -> _os.stat_result:
        try:
            return stat_result(getattr(runtime.RT.ocall, call)(self._full))
        except OSError as exc:
            raise with_filename(exc, self.path) from None

    def _mode_is(self, test: Any, dtype: int, follow_symlinks: bool) -> bool:
        if self._dtype and not (follow_symlinks and self._dtype == _DT_LNK):
            return self._dtype == dtype
        try:
            return test(self.stat(follow_symlinks=follow_symlinks).st_mode)
        except FileNotFoundError:
            return False  # a dangling link or a vanished entry is neither, as natively

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._mode_is(_stat.S_ISDIR, _DT_DIR, follow_symlinks)

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._mode_is(_stat.S_ISREG, _DT_REG, follow_symlinks)

    def is_symlink(self) -> bool:
        if self._dtype:
            return self._dtype == _DT_LNK
        try:
            return _stat.S_ISLNK(self.stat(follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    def is_junction(self) -> bool:
        return False


class ScandirIterator:
    """The iterator os.scandir returns: a context manager that releases its host handle when done."""

    def __init__(self, handle: int | None, own: bool, arg: Any, prefix: str | bytes | None, base: bytes) -> None:
        self._handle = handle
        self._own = own  # False for scandir(fd): the fd stays the caller's
        self._arg = arg
        self._prefix = prefix  # None for scandir(fd): an entry's path is its bare name, as natively
        self._base = base
        self._batch: list[tuple] = []
        self._restart = True

    def __iter__(self) -> ScandirIterator:
        return self

    def __next__(self) -> DirEntry:
        while not self._batch:
            if self._handle is None:
                raise StopIteration
            try:
                batch = runtime.RT.ocall.getdents(self._handle, _BATCH, self._restart)
            except OSError as exc:
                self.close()
                raise with_filename(exc, self._arg) from None
            self._restart = False
            if not batch:
                self.close()
                raise StopIteration
            batch.reverse()
            self._batch = batch
        raw, dtype, ino = self._batch.pop()
        prefix = self._prefix
        name: str | bytes
        path: str | bytes
        if isinstance(prefix, bytes):  # names and paths as bytes, like the path given
            name = raw
            path = prefix + raw if prefix.endswith(b"/") else prefix + b"/" + raw
        else:
            name = _fsdecode(raw)
            path = name if prefix is None else (prefix + name if prefix.endswith("/") else prefix + "/" + name)
        return DirEntry(name, path, self._base + raw, dtype, ino)

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None and self._own:
            runtime.RT.ocall.close(handle)

    def __enter__(self) -> ScandirIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle 'posix.{type(self).__name__}' object")

    def __del__(self) -> None:
        try:
            if self._handle is not None and self._own:
                # As natively: an iterator dropped before it was exhausted or closed is a leaked descriptor.
                _warnings.warn(f"unclosed scandir iterator {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()
        except Exception:
            pass


@interposed("open", "getdents", "close", "stat", "lstat")
def scandir(path: Any = None) -> ScandirIterator:
    rt = runtime.RT
    if path is None:
        path = "."
    if isinstance(path, int):
        of = rt.fds.get(_fd_of(path))
        base = (of.path or b"") + b"/"
        # scandir(fd) lists from the start and leaves the fd open, as natively.
        return ScandirIterator(of.handle, False, path, None, base)
    p = _path(path, "scandir", kinds=_KINDS)
    try:
        full = rt.resolve(p)
        handle = rt.ocall.open(full, _os.O_RDONLY | _os.O_DIRECTORY, 0)
    except OSError as exc:
        raise with_filename(exc, path) from None
    prefix = _like(path, p)
    base = full if full.endswith(b"/") else full + b"/"
    return ScandirIterator(handle, True, path, prefix, base)


@interposed("open", "getdents", "close", "stat", "lstat")
def listdir(path: Any = None) -> list[str] | list[bytes]:
    if path is not None and not isinstance(path, int):
        converted = _path(path, "listdir", kinds=_KINDS)  # its own name in a TypeError or warning, as natively
        if not isinstance(path, str | bytes) and not hasattr(type(path), "__fspath__"):
            path = converted  # a bytes-like path: warned about once, here
    with scandir(path) as it:
        # Every name has the type of the path given (ScandirIterator decodes all of them or none): one list type.
        return cast("list[str] | list[bytes]", [entry.name for entry in it])


PATCHES: dict[Any, Any] = patches_of(sys.modules[__name__])
