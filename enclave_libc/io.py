"""open() and FileIO inside the enclave.

`FileIO` is a raw file (io.RawIOBase) over an enclave fd; above it `open()` stacks CPython's own C
BufferedReader / BufferedWriter / BufferedRandom / TextIOWrapper, so buffering, decoding and newline handling are
the real ones and only the raw reads and writes become ocalls.  The semantics follow `_pyio.FileIO` and
`_pyio.open`: same modes, same errors (IsADirectoryError on a directory, FileExistsError for "x"), append mode
seeks to the end, closefd and opener work.
"""

from __future__ import annotations

import errno
import io as _io
import os as _os
import stat as _stat
import sys
from typing import TYPE_CHECKING, Any

from ocall_bridge.types import MAX_DATA

from . import encfs, files, runtime
from .errors import oserror
from .patches import interposed, patches_of
from .rawfile import RawFile

if TYPE_CHECKING:
    # typeshed's spelling (as for _io.FileIO) of "bytes, or None from a non-blocking fd": callers are not made
    # to check for a None that blocking files never give.
    from _typeshed import MaybeNone

_BufferedReader, _BufferedWriter, _BufferedRandom = _io.BufferedReader, _io.BufferedWriter, _io.BufferedRandom
_TextIOWrapper, _text_encoding = _io.TextIOWrapper, _io.text_encoding
DEFAULT_BUFFER_SIZE = _io.DEFAULT_BUFFER_SIZE
_O_CLOEXEC = getattr(_os, "O_CLOEXEC", 0)


@interposed("open", "close", "read", "write", "lseek", "fstat", "ftruncate", "isatty", original="_io.FileIO",
            partial="FileIO of a path in an encrypted folder (descriptor access would see its ciphertext)")
class FileIO(RawFile):
    """A raw binary file over an enclave fd (compare _pyio.FileIO)."""

    _fd = -1
    _closefd = True
    _regular = False

    def __init__(self, file: Any, mode: str = "r", closefd: bool = True, opener: Any = None) -> None:
        if self._fd >= 0:
            try:
                if self._closefd:
                    files.close(self._fd)
            finally:
                self._fd = -1
        if isinstance(file, float):
            raise TypeError("integer argument expected, got float")
        if isinstance(file, int) and not -0x80000000 <= file <= 0x7FFFFFFF:
            # Not a C int: the C FileIO then reads it as a path, and an int is no path.
            raise TypeError(f"expected str, bytes or os.PathLike object, not {type(file).__name__}")
        if isinstance(file, int):
            if file < 0:
                raise ValueError("negative file descriptor")
            fd = file
        else:
            fd = -1
            if isinstance(file, str) and "\0" in file or isinstance(file, bytes) and b"\0" in file:
                raise ValueError("embedded null byte")  # the C FileIO's words (PyUnicode_FSConverter)
        if not isinstance(mode, str):
            raise TypeError(f"invalid mode: {mode}")
        if not set(mode) <= set("xrwab+"):
            raise ValueError(f"invalid mode: {mode}")
        if sum(c in "rwax" for c in mode) != 1 or mode.count("+") > 1:
            raise ValueError("Must have exactly one of create/read/write/append mode and at most one plus")

        self._created = self._readable = self._writable = self._appending = False
        if "x" in mode:
            self._created = self._writable = True
            flags = _os.O_EXCL | _os.O_CREAT
        elif "r" in mode:
            self._readable = True
            flags = 0
        elif "w" in mode:
            self._writable = True
            flags = _os.O_CREAT | _os.O_TRUNC
        else:
            self._writable = self._appending = True
            flags = _os.O_APPEND | _os.O_CREAT
        if "+" in mode:
            self._readable = self._writable = True
        flags |= _os.O_RDWR if self._readable and self._writable else _os.O_RDONLY if self._readable else _os.O_WRONLY
        flags |= _O_CLOEXEC

        owned_fd = None
        try:
            if fd < 0:
                if not closefd:
                    raise ValueError("Cannot use closefd=False with file name")
                if opener is None:
                    encfs.refuse_descriptor(file, "FileIO")
                    fd = files.open(file, flags, 0o666)
                else:
                    fd = opener(file, flags)
                    if not isinstance(fd, int):
                        raise TypeError("expected integer from opener")
                    if fd < 0:
                        raise ValueError(f"opener returned {fd}")  # the C FileIO's words
                owned_fd = fd
            self._closefd = closefd
            try:
                st = files.fstat(fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
                raise
            if _stat.S_ISDIR(st.st_mode):
                raise oserror(errno.EISDIR, file)
            self._blksize = st.st_blksize if st.st_blksize > 1 else DEFAULT_BUFFER_SIZE
            self._chardev = _stat.S_ISCHR(st.st_mode)
            self._regular = _stat.S_ISREG(st.st_mode)
            self._fd = fd
            self.name = file
            if self._appending:
                try:
                    files.lseek(fd, 0, _os.SEEK_END)
                except OSError as exc:
                    if exc.errno != errno.ESPIPE:
                        raise
        except BaseException:
            if owned_fd is not None:
                files.close(owned_fd)
            else:
                self._fd = -1  # the caller's descriptor stays the caller's: finalizing this object must not close it
            raise

    # -- the raw interface ---------------------------------------------------------------------------------
    def _checkClosed(self, msg: str | None = None) -> None:  # io's own spelling
        if self._fd < 0:
            raise ValueError("I/O operation on closed file" if msg is None else msg)

    def readinto(self, b: Any) -> int | None:
        self._checkClosed()
        if not self._readable:
            raise _io.UnsupportedOperation("File not open for reading")
        view = memoryview(b).cast("B")
        try:
            n = files.read_into(self._fd, view)
        except BlockingIOError:
            return None
        if n < MAX_DATA or not self._regular:
            return n
        # read(2) of a regular file fills the whole buffer; the enclave asks in MAX_DATA chunks, so it goes on
        # while the chunks come back full (a short one is the end of the file).
        total = n
        while n == MAX_DATA and total < len(view):
            n = files.read_into(self._fd, view[total:])
            total += n
        return total

    def read(self, size: int | None = -1) -> bytes | MaybeNone:
        self._checkClosed()
        if not self._readable:
            raise _io.UnsupportedOperation("File not open for reading")
        if size is None or size < 0:
            return self.readall()
        try:
            data = files.read(self._fd, size)
        except BlockingIOError:
            return None
        if len(data) < MAX_DATA or size <= MAX_DATA or not self._regular:
            return data
        parts, got = [data], len(data)  # a regular file: the whole size, as one read(2) gives it (see readinto)
        while got < size:
            data = files.read(self._fd, size - got)
            parts.append(data)
            got += len(data)
            if len(data) < MAX_DATA:
                break
        return b"".join(parts)

    def readall(self) -> bytes | MaybeNone:
        self._checkClosed()
        if not self._readable:
            raise _io.UnsupportedOperation("File not open for reading")
        chunk = DEFAULT_BUFFER_SIZE
        try:
            pos = files.lseek(self._fd, 0, _os.SEEK_CUR)
            end = files.fstat(self._fd).st_size
            if end >= pos >= 0:
                chunk = max(chunk, end - pos + 1)  # +1: one read past the end sees EOF without another ocall
        except OSError:
            pass
        parts: list[bytes] = []
        while True:
            try:
                data = files.read(self._fd, min(chunk, MAX_DATA))
            except BlockingIOError:
                if parts:
                    break
                return None
            if not data:
                break
            parts.append(data)
        return b"".join(parts)

    def write(self, b: Any) -> int | None:
        self._checkClosed()
        if not self._writable:
            raise _io.UnsupportedOperation("File not open for writing")
        try:
            n = files.write(self._fd, b)
        except BlockingIOError:
            return None
        if n < MAX_DATA:
            return n
        # One write(2) to a blocking file or pipe takes every byte; the enclave sends MAX_DATA chunks, so it
        # goes on while the host takes whole chunks.  A chunk taken short is a real short write: reported as one.
        # (An unbuffered sys.stdout writes through here, and TextIOWrapper never retries a short write.)
        view = memoryview(b)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        total = n
        while total < len(view):
            chunk = view[total:total + MAX_DATA]
            try:
                n = files.write(self._fd, chunk)
            except BlockingIOError:
                break
            total += n
            if n < len(chunk):
                break
        return total

    def seek(self, pos: int, whence: int = _os.SEEK_SET) -> int:
        if isinstance(pos, float):
            raise TypeError("an integer is required")
        self._checkClosed()
        return files.lseek(self._fd, pos, whence)

    def tell(self) -> int:
        self._checkClosed()
        return files.lseek(self._fd, 0, _os.SEEK_CUR)

    def truncate(self, size: int | None = None) -> int:
        self._checkClosed()
        if not self._writable:
            raise _io.UnsupportedOperation("File not open for writing")
        if size is None:
            size = self.tell()
        files.ftruncate(self._fd, size)
        return size

    def _release(self) -> None:
        fd, self._fd = self._fd, -1
        if self._closefd and fd >= 0:
            files.close(fd)

    def seekable(self) -> bool:
        self._checkClosed()
        if not hasattr(self, "_seekable"):
            try:
                self.tell()
            except OSError:
                self._seekable = False
            else:
                self._seekable = True
        return self._seekable

    def fileno(self) -> int:
        self._checkClosed()
        return runtime.RT.fds.fileno(self._fd)

    def isatty(self) -> bool:
        self._checkClosed()
        return self._chardev and files.isatty(self._fd)  # only a character device can be a terminal

    @property
    def closed(self) -> bool:
        return self._fd < 0

    @property
    def closefd(self) -> bool:
        return self._closefd

    def __repr__(self) -> str:
        # Word for word the C FileIO's repr: programs and doctests print it.
        if self.closed:
            return "<_io.FileIO [closed]>"
        try:
            name = self.name
        except AttributeError:
            return f"<_io.FileIO fd={self._fd} mode={self.mode!r} closefd={self._closefd!r}>"
        return f"<_io.FileIO name={name!r} mode={self.mode!r} closefd={self._closefd!r}>"

    def __getstate__(self) -> None:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def _dealloc_warn(self, source: Any, stacklevel: int = 1) -> None:
        """The C layers above call this when they are collected unclosed: the native ResourceWarning."""
        if self._fd >= 0 and self._closefd:
            import warnings

            warnings.warn(f"unclosed file {source!r}", ResourceWarning, stacklevel=stacklevel + 1, source=source)

    def __del__(self) -> None:
        if self._fd >= 0 and self._closefd and runtime.active():
            self._dealloc_warn(self, stacklevel=2)
            try:
                self.close()
            except Exception:
                pass


_OPEN_ROWS = ("open", "close", "read", "write", "pread", "pwrite", "lseek", "fstat", "ftruncate", "isatty")
_ENCRYPTED = ("FileIO of a path in an encrypted folder, which open() itself serves through encfs (the opener= "
              "path is FileIO's)")


@interposed(*_OPEN_ROWS, original="_io.open", partial=_ENCRYPTED)
def open(file: Any, mode: str = "r", buffering: int = -1, encoding: str | None = None,
         errors: str | None = None, newline: str | None = None, closefd: bool = True, opener: Any = None) -> Any:
    """Python's open(), with the raw layer in the enclave (the argument checks follow _pyio.open)."""
    if not isinstance(file, int):
        file = _os.fspath(file)
    if not isinstance(file, str | bytes | int):
        raise TypeError(f"invalid file: {file!r}")
    if not isinstance(mode, str):
        raise TypeError(f"invalid mode: {mode!r}")
    if not isinstance(buffering, int):
        raise TypeError(f"invalid buffering: {buffering!r}")
    if encoding is not None and not isinstance(encoding, str):
        raise TypeError(f"invalid encoding: {encoding!r}")
    if errors is not None and not isinstance(errors, str):
        raise TypeError(f"invalid errors: {errors!r}")
    modes = set(mode)
    if modes - set("axrwb+tU") or len(mode) > len(modes):
        raise ValueError(f"invalid mode: {mode!r}")
    creating, reading, writing, appending = "x" in modes, "r" in modes, "w" in modes, "a" in modes
    updating, text, binary = "+" in modes, "t" in modes, "b" in modes
    if "U" in modes:
        raise ValueError(f"invalid mode: {mode!r}")
    if text and binary:
        raise ValueError("can't have text and binary mode at once")
    if creating + reading + writing + appending > 1:
        # The C io.open's words (_pyio's differ); with none of them, FileIO below refuses the mode, as natively.
        raise ValueError("must have exactly one of create/read/write/append mode")
    if binary and encoding is not None:
        raise ValueError("binary mode doesn't take an encoding argument")
    if binary and errors is not None:
        raise ValueError("binary mode doesn't take an errors argument")
    if binary and newline is not None:
        raise ValueError("binary mode doesn't take a newline argument")
    if binary and buffering == 1:
        import warnings

        warnings.warn("line buffering (buffering=1) isn't supported in binary mode, the default buffer size "
                      "will be used", RuntimeWarning, 2)
    raw_mode = ((creating and "x" or "") + (reading and "r" or "") + (writing and "w" or "")
                + (appending and "a" or "") + (updating and "+" or ""))
    # A file in an encrypted folder gets the encrypting raw layer (enclave_libc/encfs.py) under the same buffers.
    raw: encfs.EncryptedFile | FileIO | None = encfs.open_raw(file, raw_mode) if opener is None else None
    if raw is None:
        raw = FileIO(file, raw_mode, closefd, opener=opener)
    result: Any = raw
    try:
        line_buffering = False
        if buffering == 1 or buffering < 0 and raw.isatty():
            buffering = -1
            line_buffering = True
        if buffering < 0:
            buffering = raw._blksize
        if buffering == 0:
            if binary:
                return result
            raise ValueError("can't have unbuffered text I/O")
        buffer: _io.BufferedIOBase
        if updating:
            buffer = _BufferedRandom(raw, buffering)
        elif creating or writing or appending:
            buffer = _BufferedWriter(raw, buffering)
        else:
            buffer = _BufferedReader(raw, buffering)
        result = buffer
        if binary:
            return result
        encoding = _text_encoding(encoding)
        result = _TextIOWrapper(buffer, encoding, errors, newline, line_buffering)
        result.mode = mode
        return result
    except BaseException:
        result.close()
        raise


@interposed(*_OPEN_ROWS, original="_io.open_code", partial=_ENCRYPTED)
def open_code(path: str) -> Any:
    if not isinstance(path, str):
        raise TypeError(f"open_code() argument 'path' must be str, not {type(path).__name__}")
    return open(path, "rb")


def stdio_streams() -> tuple[Any, Any, Any]:
    """sys.stdin, sys.stdout and sys.stderr over enclave fds 0, 1 and 2.

    Encoding, error handler, line buffering and write-through are copied from the streams Python made, so
    `python -u`, PYTHONIOENCODING and a terminal behave the same inside.  They are built once per runtime and
    handed out again on the next entry (the sim backend enters for every ecall: building them costs five ocalls)
    while fds 0-2 still hold the same open files and none of the three was closed - as a process keeps its
    sys.stdout, and with it what stdin had read ahead.
    """
    rt = runtime.RT
    key = tuple(rt.fds.get(fd) if fd in rt.fds else None for fd in (0, 1, 2))
    cached = rt.extra.get("stdio_streams")
    if cached is not None and all(a is b for a, b in zip(cached[0], key, strict=True)) and not any(
            stream is not None and stream.closed for stream in cached[1]):
        return cached[1]
    streams: list[_io.TextIOWrapper | None] = []
    for fd, name, mode, model in ((0, "<stdin>", "rb", sys.__stdin__), (1, "<stdout>", "wb", sys.__stdout__),
                                  (2, "<stderr>", "wb", sys.__stderr__)):
        if fd not in runtime.RT.fds:
            streams.append(None)
            continue
        raw = FileIO(fd, mode, closefd=False)
        raw.name = name
        buffer: FileIO | _io.BufferedReader | _io.BufferedWriter
        if fd and isinstance(getattr(model, "buffer", None), _io.FileIO):
            buffer = raw  # python -u / PYTHONUNBUFFERED: stdout and stderr have no binary buffer at all
        else:
            buffer = (_BufferedReader if fd == 0 else _BufferedWriter)(raw, DEFAULT_BUFFER_SIZE)
        encoding = getattr(model, "encoding", None) or "utf-8"
        err = getattr(model, "errors", None) or ("backslashreplace" if fd == 2 else "strict")
        line = getattr(model, "line_buffering", fd == 2) or raw.isatty()
        write_through = getattr(model, "write_through", False)
        text = _TextIOWrapper(buffer, encoding, err, "\n", line, write_through)
        text.mode = "r" if fd == 0 else "w"  # type: ignore[misc]  # settable at run time; typeshed's IO.mode is read-only
        streams.append(text)
    built = streams[0], streams[1], streams[2]
    rt.extra["stdio_streams"] = (key, built)
    return built


PATCHES: dict[Any, Any] = patches_of(sys.modules[__name__])
