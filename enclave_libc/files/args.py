"""Arguments as the native `posix` functions take them: paths, fds, ids and times, with CPython's own errors.

The enclave's file functions accept exactly what the functions they replace accept and raise the same TypeError,
ValueError or OverflowError word for word, so a program (or a test suite) sees no difference before anything is
asked of the host.  Also the results built from the table's records (stat_result).
"""

from __future__ import annotations

import math
import os as _os
import sys
import warnings as _warnings
from typing import Any, Literal, overload

from ..errors import with_filename

_fsencode, _fsdecode, _fspath = _os.fsencode, _os.fsdecode, _os.fspath
# What os.fsencode does with a str (its _fscodec: the encoding and error handler read once, at os import).
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
_stat_result, _statvfs_result = _os.stat_result, _os.statvfs_result


@overload
def _path(path: Any, func: str, allow_fd: Literal[False] = False, arg: str = "path", kinds: str = "") -> bytes: ...


@overload
def _path(path: Any, func: str, allow_fd: bool, arg: str = "path", kinds: str = "") -> bytes | int: ...


def _path(path: Any, func: str, allow_fd: bool = False, arg: str = "path", kinds: str = "") -> bytes | int:
    """Bytes for any path argument, raising the TypeError/ValueError the native call raises, word for word."""
    # The common cases first (a plain str or bytes without NUL): what the general code below answers for them.
    # type(), not __class__: a subclass can answer `str` for __class__ and bring its own encode().
    if type(path) is str:
        if "\0" not in path:
            return path.encode(_FS_ENCODING, _FS_ERRORS)
    elif type(path) is bytes and b"\0" not in path:
        return path
    if allow_fd and isinstance(path, int):
        return path
    kinds = kinds or ("string, bytes, os.PathLike or integer" if allow_fd else "string, bytes or os.PathLike")
    if not isinstance(path, str | bytes) and not hasattr(type(path), "__fspath__"):
        try:
            if sys.version_info >= (3, 12):
                raise TypeError  # the deprecation below ended in 3.12: bytes-like paths are refused
            view = memoryview(path)
        except TypeError:
            raise TypeError(f"{func}: {arg} should be {kinds}, not {type(path).__name__}") from None
        # 3.11: a bytes-like path (bytearray, memoryview) is accepted with CPython's DeprecationWarning.
        _warnings.warn(f"{func}: {arg} should be {kinds}, not {type(path).__name__}", DeprecationWarning,
                       stacklevel=3)
        p = view.tobytes()
    else:
        p = _fspath(path)  # a bad __fspath__ result raises os.fspath's own TypeError, as the native converter
    if isinstance(p, str):
        if "\0" in p:
            if sys.version_info < (3, 13):  # PyUnicode_FSConverter's words, for str paths before 3.13
                raise ValueError("embedded null byte")
            raise ValueError(f"{func}: embedded null character in {arg}")
        return _fsencode(p)
    if b"\0" in p:
        raise ValueError(f"{func}: embedded null character in {arg}")
    return p


def _like(arg: Any, value: bytes) -> str | bytes:
    """Return `value` in the type the caller used (bytes in, bytes out)."""
    if isinstance(arg, bytes) or (not isinstance(arg, str | int) and arg is not None
                                  and (not hasattr(type(arg), "__fspath__") or isinstance(_fspath(arg), bytes))):
        return value  # bytes, a PathLike giving bytes, or a bytes-like object (_path accepted it)
    return _fsdecode(value)


def _fd_of(fd: Any) -> int:
    """An fd from an int or an object with fileno(), as CPython's fildes converter (same messages)."""
    if not isinstance(fd, int):
        if not hasattr(fd, "fileno"):
            raise TypeError("argument must be an int, or have a fileno() method.")
        fd = fd.fileno()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def stat_result(st: tuple) -> _os.stat_result:
    mode, ino, dev, nlink, uid, gid, size, at, mt, ct, blksize, blocks, rdev = st
    a_s, a_n = divmod(at, 1_000_000_000)
    m_s, m_n = divmod(mt, 1_000_000_000)
    c_s, c_n = divmod(ct, 1_000_000_000)
    # The float times are computed exactly as CPython does (sec + nsec * 1e-9), so values compare equal.
    return _stat_result((mode, ino, dev, nlink, uid, gid, size, a_s, m_s, c_s, a_s + a_n * 1e-9,
                         m_s + m_n * 1e-9, c_s + c_n * 1e-9, at, mt, ct, blksize, blocks, rdev))


def _id(value: Any, what: str) -> int:
    """CPython's _Py_Uid_Converter/_Py_Gid_Converter: an index, -1 meaning "unchanged", else 0..2**32-2."""
    if isinstance(value, float) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{what} should be integer, not {type(value).__name__}")
    v = value.__index__()
    if v < -1:
        raise OverflowError(f"{what} is less than minimum")
    if v >= 2**32:
        raise OverflowError(f"{what} is {'less than minimum' if v < 2**63 else 'greater than maximum'}")
    return v


def _times_ns(times: Any, ns: Any) -> tuple[int, int, bool]:
    if times is not None and ns is not None:
        raise ValueError("utime: you may specify either 'times' or 'ns' but not both")
    if ns is not None:
        if not (isinstance(ns, tuple) and len(ns) == 2):
            raise TypeError("utime: 'ns' must be a tuple of two ints")
        return int(ns[0]), int(ns[1]), False
    if times is not None:
        if not (isinstance(times, tuple) and len(times) == 2):
            raise TypeError("utime: 'times' must be either a tuple of two ints or None")
        return _to_ns(times[0]), _to_ns(times[1]), False
    return 0, 0, True


def _to_ns(t: float | int) -> int:
    if isinstance(t, int):
        return t * 1_000_000_000
    # The split CPython's utime() makes (_PyTime_ObjectToTimespec, ROUND_FLOOR), so the stored ns are equal.
    frac, whole = math.modf(t)
    frac = math.floor(frac * 1e9)
    if frac >= 1e9:
        frac, whole = frac - 1e9, whole + 1.0
    elif frac < 0:
        frac, whole = frac + 1e9, whole - 1.0
    return int(whole) * 1_000_000_000 + int(frac)


def _statvfs(st: tuple) -> _os.statvfs_result:
    return _statvfs_result(st[:10], {"f_fsid": st[10]})


def _by_fd(fn: Any, fd: int, *args: Any) -> Any:
    """A path function given an fd: the native error names the fd as its filename."""
    try:
        return fn(fd, *args)
    except OSError as exc:
        raise with_filename(exc, fd) from None
