"""Terminals, and the rest of posix's file calls the enclave refuses - never passed through.

An enclave fd number means nothing to the host kernel (in the sim backend it names one of the *host's* files),
and a path would bypass the policy: a file call that reached the real posix would be an escape.  So each call
below is served (isatty, the terminal size) or refused with its reason (Unsupported: ENOSYS, and the support
table lists it), a bad descriptor failing with EBADF first and a non-terminal with ENOTTY, as natively.
"""

from __future__ import annotations

import errno
import mmap as _mmap
import os as _os
from typing import Any

from .. import runtime
from ..errors import Unsupported, oserror
from ..patches import interposed

_terminal_size = _os.terminal_size


@interposed("isatty")
def isatty(fd: int) -> bool:
    of = runtime.RT.fds._fds.get(fd)
    if of is None:
        return False  # native isatty answers False for a bad fd rather than raising
    try:
        return runtime.RT.ocall.isatty(of.handle)  # the entry just found: a bad fd is False, never EBADF
    except OSError:
        return False


@interposed("device_encoding", "isatty")
def device_encoding(fd: int) -> str | None:
    if not isatty(fd):
        return None
    import locale

    return locale.getencoding()


@interposed("terminal_size")
def get_terminal_size(fd: int = 1) -> _os.terminal_size:
    columns, lines = runtime.RT.fds.stubs.terminal_size(fd)
    return _terminal_size((columns, lines))


@interposed("isatty", partial="all: the host's terminal has no name inside the enclave")
def ttyname(fd: int) -> str:
    if not isatty(fd):
        runtime.RT.fds.get(fd)
        raise oserror(errno.ENOTTY)
    raise Unsupported("ttyname", "the host's terminal has no name inside the enclave")


def _refused(name: str, detail: str) -> Any:
    @interposed(partial=f"all: {detail}", original=f"posix.{name}")
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise Unsupported(name, detail)

    return _named(refused, name)


def _fd_first(args: tuple) -> int | None:
    """The descriptor a call's first argument names, EBADF for a bad one first, as natively (None: no fd)."""
    if args and isinstance(args[0], int):
        runtime.RT.fds.get(args[0])
        return args[0]
    return None


def _refused_fd(name: str, detail: str) -> Any:
    """A refused call whose first argument is a descriptor."""
    @interposed(partial=f"all: {detail}", original=f"posix.{name}")
    def refused(*args: Any, **kwargs: Any) -> Any:
        _fd_first(args)
        raise Unsupported(name, detail)

    return _named(refused, name)


def _refused_terminal(name: str, detail: str) -> Any:
    """A refused terminal call: ENOTTY for a descriptor that is no terminal, as natively (only a real terminal
    meets the refusal)."""
    @interposed("isatty", partial=f"all: {detail}", original=f"posix.{name}")
    def refused(*args: Any, **kwargs: Any) -> Any:
        fd = _fd_first(args)
        if fd is not None and not isatty(fd):
            raise oserror(errno.ENOTTY)
        raise Unsupported(name, detail)

    return _named(refused, name)


def _named(refused: Any, name: str) -> Any:
    refused.__name__ = refused.__qualname__ = name
    refused.__posix_shim_refused__ = True  # the support table: a refusal
    return refused


_NO_TERMINALS = "no terminals inside"
fpathconf = _refused_fd("fpathconf", "no pathconf ocall")
tcgetpgrp = _refused_terminal("tcgetpgrp", _NO_TERMINALS)
tcsetpgrp = _refused_terminal("tcsetpgrp", _NO_TERMINALS)
# The calls refused whatever their arguments, each with the reason the program is told.
_REFUSED = {
    "copy_file_range": "copy with read and write (shutil does)",
    "splice": "copy with read and write",
    "mknod": "device nodes cannot be made from inside",
    "chroot": "the enclave's view of the file system is the policy's",
    "pathconf": "no pathconf ocall",
    "memfd_create": "a memory file would be a host descriptor the enclave cannot name",
    "eventfd": "an eventfd would be a host descriptor the enclave cannot name",
    "eventfd_read": "no eventfds inside",
    "eventfd_write": "no eventfds inside",
    "openpty": _NO_TERMINALS,
    "login_tty": _NO_TERMINALS,
    # New in Python 3.12 (present only there and later: refused where they exist, never passed through).
    "setns": "an enclave cannot move the process it runs in to other namespaces",
    "unshare": "an enclave cannot move the process it runs in to other namespaces",
    # New in Python 3.13.
    "posix_openpt": _NO_TERMINALS,
    "grantpt": _NO_TERMINALS,
    "unlockpt": _NO_TERMINALS,
    "ptsname": _NO_TERMINALS,
    "timerfd_create": "a timerfd would be a host descriptor the enclave cannot name; use time.sleep or selectors "
                      "with a timeout",
    "timerfd_settime": "no timerfds inside",
    "timerfd_settime_ns": "no timerfds inside",
    "timerfd_gettime": "no timerfds inside",
    "timerfd_gettime_ns": "no timerfds inside",
}
globals().update({name: _refused(name, detail) for name, detail in _REFUSED.items()})


@interposed(partial="mapping a file", original="mmap.mmap")
class mmap(_mmap.mmap):  # the name programs know
    """mmap.mmap inside the enclave: anonymous maps are memory and work; a map of a file is refused, because
    the kernel would map whatever *host* descriptor has the enclave fd's number."""

    def __new__(cls, fileno: int, length: int, *args: Any, **kwargs: Any) -> Any:
        if fileno != -1:
            runtime.RT.fds.get(fileno)  # a bad fd is EBADF first, as natively
            raise Unsupported("mmap", "mapping a file is outside the subset; read it with os.pread, or map "
                                      "anonymous memory (fileno -1)")
        return super().__new__(cls, fileno, length, *args, **kwargs)


mmap.__module__ = "mmap"
