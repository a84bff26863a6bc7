"""What the enclave's two raw files answer alike: `io.FileIO` over a host file, `encfs_file.EncryptedFile` over an
encrypted one.  Both set the same four flags when they open; readable(), writable() and the mode string follow
from those flags exactly as C's FileIO derives them (programs print `f.mode` and compare it), and both close by
flushing first and releasing what they hold even when the flush fails.

A base below both modules, because io.py imports encfs (an open in an encrypted folder becomes an
EncryptedFile): neither can import the other's class.
"""

from __future__ import annotations

import io as _io


class RawFile(_io.RawIOBase):
    """A raw binary file opened in one of C FileIO's modes (r, w, x, a, each optionally +)."""

    _readable = _writable = _appending = _created = False

    def readable(self) -> bool:
        self._checkClosed()  # IOBase's own check, with the C message
        return self._readable

    def writable(self) -> bool:
        self._checkClosed()
        return self._writable

    def close(self) -> None:
        """Flush (RawIOBase.close), then let go of what the file holds, even when the flush failed."""
        if not self.closed:
            try:
                super().close()
            finally:
                self._release()

    def _release(self) -> None:
        """Give back the descriptor or the shared state: once, after the last flush."""
        raise NotImplementedError

    @property
    def mode(self) -> str:
        if self._created:
            return "xb+" if self._readable else "xb"
        if self._appending:
            return "ab+" if self._readable else "ab"
        if self._readable:
            return "rb+" if self._writable else "rb"
        return "wb"
