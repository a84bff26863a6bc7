"""Native syscalls the process child forwards to the host: which table row each one is, declared once.

The process backend's seccomp filter answers the syscalls named in `FORWARDED` with SECCOMP_RET_USER_NOTIF; the
host's supervisor (`host/supervisor.py`) turns each notification into the row of calls.py it means and hands it
to the same `Host.perform` as a Python-level ocall: same policy re-check, same openat2 confinement, same trace
and fault-injection hooks.  This module is only data: for each syscall, one or more `Form`s (the first whose
condition holds is used), each naming the row, where every parameter of the row comes from in the syscall's
arguments (`Path`, `Int`, `Fd`, ...), and how the row's result goes back (`NewFd`, `StatOut`, ...).  The
supervisor interprets these shapes; there is no function per syscall.

Syscall numbers are x86_64's (the only architecture the filter lets through; any other arch is killed there).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .calls import BY_NAME
from .errors import require
from .frozen import Frozen

AUDIT_ARCH_X86_64 = 0xC000003E
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_EMPTY_PATH = 0x1000


class Arg(Frozen):
    """What every shape below points at: the syscall argument `arg` (its index in seccomp_data.args), a value or
    the address of one in the child's memory."""

    arg: int


class Span(Arg):
    """`length` bytes (the value of argument `length`) at the address in argument `arg`."""

    length: int


# ---------------------------------------------------------------------------------------------------------
# Where a row parameter comes from
# ---------------------------------------------------------------------------------------------------------


class Path(Arg):
    """A NUL-terminated path in the child's memory, read once.  Relative paths are resolved against the dirfd
    argument (index `dirfd`; None or AT_FDCWD: the enclave's cwd).  resolve=False: stored text (a symlink's
    target), passed as read."""

    dirfd: int | None = None
    resolve: bool = True


class Int(Arg):
    """An integer argument.  kind: "i32" (int), "i64" (off_t), "u32", "id" (uid_t/gid_t: -1 stays -1),
    "mode" (permission bits), "cmode" (a creation mode: the enclave's umask applies, as the kernel would),
    "oflags" (open flags; O_PATH becomes a read-only O_NONBLOCK open, since ADDFD cannot install an O_PATH
    descriptor)."""

    kind: str = "i32"


class Const(Frozen):
    value: object


class Bit(Arg):
    """A flag parameter from one bit of an argument; invert=True: the bit set means False (AT_SYMLINK_NOFOLLOW
    -> follow)."""

    bit: int
    invert: bool = False


class Fd(Arg):
    """A descriptor of the child: taken with pidfd_getfd, lent to the host's handle table for this one call."""


class Sockaddr(Span):
    """A struct sockaddr of the span, as a SOCKADDR record."""


class Buffer(Span):
    """Bytes the call sends, at most MAX_DATA of the span (a short send, as the kernel may do)."""


class Times(Arg):
    """utimensat's `const struct timespec times[2]` at `arg` (NULL: now).  Spreads into the three row parameters
    atime_ns, mtime_ns, now; UTIME_NOW and UTIME_OMIT are settled by the host."""


class Msg(Arg):
    """One part of the `struct msghdr` at `arg` (read once per notification): "data" (the iovecs, gathered) or
    "name" (the address).  Ancillary data (fd passing) is refused."""

    part: str


Source = Path | Int | Const | Bit | Fd | Sockaddr | Buffer | Times | Msg


# ---------------------------------------------------------------------------------------------------------
# How the row's result goes back
# ---------------------------------------------------------------------------------------------------------


class Zero(Frozen):
    """The call returns 0."""


class Value(Frozen):
    """The call returns the row's (integer) result: bytes sent."""


class NewFd(Frozen):
    """The row made a host handle: its descriptor is installed in the child with SECCOMP_IOCTL_NOTIF_ADDFD and
    the SEND flag (install and answer in one step); close-on-exec when argument `flags` has `cloexec`."""

    flags: int | None = None
    cloexec: int = os.O_CLOEXEC


class StructOut(Arg):
    """The row's stat record written to the child's buffer at `arg` in the kernel's x86_64 `layout`: "stat"
    (struct stat, 144 bytes) or "statx" (struct statx, 256 bytes, STATX_BASIC_STATS)."""

    layout: Literal["stat", "statx"]


class BytesOut(Arg):
    """The row's bytes written to the buffer at `arg`, cut to the size argument (readlink); returns the count."""

    size: int


class Fail(Frozen):
    """No row: the call fails with this errno (a flag the rows cannot honour)."""

    errno: int


Answer = Zero | Value | NewFd | StructOut | BytesOut | Fail
_ZERO = Zero()


# ---------------------------------------------------------------------------------------------------------
# When a form applies
# ---------------------------------------------------------------------------------------------------------


class IfSet(Arg):
    """Any of `bits` set in argument `arg`."""

    bits: int


class IfNull(Arg):
    """Pointer argument `arg` is NULL (utimensat's path: futimens; sendto's address: a plain send)."""


class IfNoName(Arg):
    """The msghdr at `arg` carries no address (msg_name NULL): a plain send."""


class IfEmpty(Frozen):
    """The path at `path` is "" and AT_EMPTY_PATH is set in `flags`: the call is on the dirfd itself."""

    path: int
    flags: int


Condition = IfSet | IfNull | IfEmpty | IfNoName


@dataclass(frozen=True)
class Form:
    row: str | None
    args: tuple[Source, ...]
    answer: Answer = _ZERO
    when: Condition | None = None


@dataclass(frozen=True)
class Native:
    syscall: str
    nr: int
    forms: tuple[Form, ...]


def native(syscall: str, nr: int, *forms: Form) -> Native:
    return Native(syscall, nr, forms)


def form(row: str | None, *args: Source, answer: Answer = _ZERO, when: Condition | None = None) -> Form:
    return Form(row, args, answer, when)


_CREAT = os.O_CREAT | os.O_WRONLY | os.O_TRUNC
_FOLLOW = Const(True)

# One entry per forwarded syscall.  Read: `native("openat", 257, form("open", Path(1, dirfd=0), Int(2),
# Int(3, "cmode"), answer=NewFd(2)))` = openat(dirfd, path, flags, mode) is the `open` row with the path resolved
# against the dirfd, the flags and the (umasked) mode, and its new handle is installed in the child,
# close-on-exec if argument 2 (flags) has O_CLOEXEC.
NATIVE: tuple[Native, ...] = (
    # -- opening ------------------------------------------------------------------------------------------
    native("open", 2, form("open", Path(0), Int(1, "oflags"), Int(2, "cmode"), answer=NewFd(1))),
    native("openat", 257, form("open", Path(1, 0), Int(2, "oflags"), Int(3, "cmode"), answer=NewFd(2))),
    native("creat", 85, form("open", Path(0), Const(_CREAT), Int(1, "cmode"), answer=NewFd())),
    # -- metadata -----------------------------------------------------------------------------------------
    native("stat", 4, form("stat", Path(0), answer=StructOut(1, "stat"))),
    native("lstat", 6, form("lstat", Path(0), answer=StructOut(1, "stat"))),
    native("newfstatat", 262,
           form("fstat", Fd(0), answer=StructOut(2, "stat"), when=IfEmpty(1, 3)),
           form("lstat", Path(1, 0), answer=StructOut(2, "stat"), when=IfSet(3, AT_SYMLINK_NOFOLLOW)),
           form("stat", Path(1, 0), answer=StructOut(2, "stat"))),
    native("statx", 332,
           form("fstat", Fd(0), answer=StructOut(4, "statx"), when=IfEmpty(1, 2)),
           form("lstat", Path(1, 0), answer=StructOut(4, "statx"), when=IfSet(2, AT_SYMLINK_NOFOLLOW)),
           form("stat", Path(1, 0), answer=StructOut(4, "statx"))),
    native("access", 21, form("access", Path(0), Int(1), _FOLLOW)),
    native("faccessat", 269, form("access", Path(1, 0), Int(2), _FOLLOW)),
    native("faccessat2", 439, form("access", Path(1, 0), Int(2), Bit(3, AT_SYMLINK_NOFOLLOW, invert=True))),
    native("readlink", 89, form("readlink", Path(0), answer=BytesOut(1, 2))),
    native("readlinkat", 267, form("readlink", Path(1, 0), answer=BytesOut(2, 3))),
    # -- changing the tree --------------------------------------------------------------------------------
    native("unlink", 87, form("unlink", Path(0))),
    native("unlinkat", 263,
           form("rmdir", Path(1, 0), when=IfSet(2, AT_REMOVEDIR)),
           form("unlink", Path(1, 0))),
    native("rmdir", 84, form("rmdir", Path(0))),
    native("mkdir", 83, form("mkdir", Path(0), Int(1, "cmode"))),
    native("mkdirat", 258, form("mkdir", Path(1, 0), Int(2, "cmode"))),
    native("rename", 82, form("rename", Path(0), Path(1))),
    native("renameat", 264, form("rename", Path(1, 0), Path(3, 2))),
    # RENAME_NOREPLACE/EXCHANGE/WHITEOUT have no row: EINVAL, what a filesystem without them answers.
    native("renameat2", 316,
           form(None, answer=Fail(errno.EINVAL), when=IfSet(4, 0xFFFFFFFF)),
           form("rename", Path(1, 0), Path(3, 2))),
    native("symlink", 88, form("symlink", Path(0, resolve=False), Path(1))),
    native("symlinkat", 266, form("symlink", Path(0, resolve=False), Path(2, 1))),
    native("link", 86, form("link", Path(0), Path(1), Const(False))),  # link(2) never follows
    native("linkat", 265, form("link", Path(1, 0), Path(3, 2), Bit(4, AT_SYMLINK_FOLLOW))),
    native("chmod", 90, form("chmod", Path(0), Int(1, "mode"), _FOLLOW)),
    native("fchmodat", 268, form("chmod", Path(1, 0), Int(2, "mode"), _FOLLOW)),
    native("fchmodat2", 452, form("chmod", Path(1, 0), Int(2, "mode"), Bit(3, AT_SYMLINK_NOFOLLOW, invert=True))),
    native("chown", 92, form("chown", Path(0), Int(1, "id"), Int(2, "id"), _FOLLOW)),
    native("lchown", 94, form("chown", Path(0), Int(1, "id"), Int(2, "id"), Const(False))),
    native("fchownat", 260,
           form("fchown", Fd(0), Int(2, "id"), Int(3, "id"), when=IfEmpty(1, 4)),
           form("chown", Path(1, 0), Int(2, "id"), Int(3, "id"), Bit(4, AT_SYMLINK_NOFOLLOW, invert=True))),
    native("utimensat", 280,
           form("futime", Fd(0), Times(2), when=IfNull(1)),  # futimens(fd, times) is utimensat(fd, NULL, ...)
           form("utime", Path(1, 0), Times(2), Bit(3, AT_SYMLINK_NOFOLLOW, invert=True))),
    native("truncate", 76, form("truncate", Path(0), Int(1, "i64"))),
    # -- sockets ------------------------------------------------------------------------------------------
    native("socket", 41, form("socket", Int(0), Int(1), Int(2), answer=NewFd(1, socket.SOCK_CLOEXEC))),
    native("connect", 42, form("connect", Fd(0), Sockaddr(1, 2))),
    native("bind", 49, form("bind", Fd(0), Sockaddr(1, 2))),
    native("listen", 50, form("listen", Fd(0), Int(1))),
    native("sendto", 44,
           form("send", Fd(0), Buffer(1, 2), Int(3), answer=Value(), when=IfNull(4)),
           form("sendto", Fd(0), Buffer(1, 2), Int(3), Sockaddr(4, 5), answer=Value())),
    native("sendmsg", 46,
           form("send", Fd(0), Msg(1, "data"), Int(2), answer=Value(), when=IfNoName(1)),
           form("sendto", Fd(0), Msg(1, "data"), Int(2), Msg(1, "name"), answer=Value())),
)

BY_NR: dict[int, Native] = {n.nr: n for n in NATIVE}
FORWARDED: frozenset[str] = frozenset(n.syscall for n in NATIVE)
NUMBERS: dict[str, int] = {n.syscall: n.nr for n in NATIVE}



def _width(f: Form) -> int:
    return sum(3 if isinstance(s, Times) else 1 for s in f.args)


def check_map(natives: Sequence[Native]) -> None:
    """The map's rules, checked at import (TableError, survives `python -O`): each form feeds one real row."""
    seen: dict[int, str] = {}
    for n in natives:
        require(n.nr not in seen, f"syscalls {seen.get(n.nr)!r} and {n.syscall!r} share number {n.nr}")
        seen[n.nr] = n.syscall
        for f in n.forms:
            if f.row is None:
                continue
            require(f.row in BY_NAME, f"{n.syscall}: a form names {f.row!r}, which is no table row")
            require(_width(f) == len(BY_NAME[f.row].params),
                    f"{n.syscall}: its {f.row!r} form gives {_width(f)} arguments, the row has "
                    f"{len(BY_NAME[f.row].params)} parameters")


check_map(NATIVE)
