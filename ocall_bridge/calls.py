"""THE ocall table: every call that crosses the boundary, and every call the enclave serves itself.

This is the single source of truth.  From each row come the wire codecs (`wire.py`), the enclave-side stubs
(`client.py`), the host dispatch (`host/runtime.py`), the checks of every answer and request (`validate.py`),
the trace format, and the support table in the docs.  Adding an ocall is one row here, one host function with
the same name in `host/<family>.py`, and the enclave-side function in `enclave_libc/<family>.py`.

Reading a row:
    call("pread", 4, "files", [handle(), count(), i64("offset", 0)], [data(bound=arg("count"))], FILE_IO)
means: number 4 on the wire; parameters fd (a host handle the enclave owns), count (0..MAX_DATA) and a
non-negative offset; the answer is bytes whose length may not exceed `count`; the host may legitimately fail
with the errnos in FILE_IO and no others.

`resources` names the parameters that touch host resources and how ("read", "write", "open" where the flags
decide, "connect", "bind", "resolve" for a name looked up): the policy is checked on exactly those, on both
sides of the boundary.  `paths` says how the host reaches each such path (a `Resolve`): the dispatcher resolves
it beneath the policy's root once (host/confine.py), so a host function only ever sees a confined `Target`.

Other per-call facts live on the row as well, never in a list beside it: `retry_eintr` (PEP 475's retry, done by
the stub), the handle-role parameters (enclave fds on the enclave side, translated by the fd table's stubs,
enclave_libc/fdtable.py), and the rules of RULES below (the names a listing may hold among them).
"""

from __future__ import annotations

import errno as E
import functools
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import require
from .frozen import Frozen
from .quote import SIZE as QUOTE_SIZE
from .records import (
    ADDRINFO,
    CMSG,
    DIRENT,
    ENV_PAGE,
    ENVVAR,
    GROUP,
    MAX_ANCILLARY,
    MAX_CMSGS,
    MAX_PASSED,
    MAX_XATTRS,
    PASSED,
    POLLED,
    POLLFD,
    SOCKADDR,
    STAT,
    STATVFS,
    UNAME,
    XATTR_NAME,
    XATTR_SIZE_MAX,
)
from .types import (
    HANDLE,
    MAX_DATA,
    MAX_NAME,
    MAX_PATH,
    Bool,
    Bytes,
    Field,
    Int,
    List,
    Path,
    Record,
    arg,
    count,
    data,
    flag,
    handle,
    i32,
    i64,
    length,
    listof,
    path,
    record,
    text,
)


class Resolve(Frozen):
    """How the host reaches the file a path parameter names, beneath the policy root that grants it.

    `at` is the form the host function receives (host/confine.py `Target`):
      "object"   a descriptor of what the path names, its final symlink followed (O_PATH; `flags` adds to it);
      "link"     a descriptor of the path itself, a final symlink not followed (O_PATH | O_NOFOLLOW);
      "entry"    the parent directory (a descriptor) and the last name: the call creates, removes or changes the
                 entry itself; a path ending in "." or ".." names no entry and fails with `dot`;
      "self"     the host function resolves it itself (open: its flags decide kinds, creation and mode).
    `follow` names a flag parameter: when the request says False, `unfollowed` is the form instead.
    The kinds it is resolved for are the parameter's `resources` kind: one grant decides both the check and the
    root the kernel resolves beneath.
    """

    at: str
    flags: int = 0
    dot: int = E.EINVAL
    follow: str = ""
    unfollowed: str = ""


RESOLVE_FORMS = frozenset({"object", "link", "entry", "self"})


@dataclass(frozen=True)
class Call:
    name: str
    number: int | None  # None: served inside the enclave, never on the wire
    family: str
    params: tuple[Field, ...]
    results: tuple[Field, ...]
    errnos: frozenset[int]
    blocking: bool = False  # may wait on the outside world: the host runs it off its reader thread
    resources: tuple[tuple[str, str], ...] = ()
    doc: str = ""
    # Handles that travel inside a bytes result, where no field's type says so (recvmsg's SCM_RIGHTS data).
    handles_in_data: bool = False
    # PEP 475: an EINTR answer is retried by the stub (signal handlers ran between the bytecodes that got there),
    # except where a retry is wrong: close (the descriptor may already be gone), connect (it goes on in the
    # kernel), and calls whose timeout must be recomputed first (poll, sleep): their enclave functions decide.
    retry_eintr: bool = True
    # How the host reaches each path parameter with a resource (see Resolve): (parameter, Resolve) pairs.
    paths: tuple[tuple[str, Resolve], ...] = ()

    @property
    def inside(self) -> bool:
        return self.number is None

    @property
    def issues_handles(self) -> bool:
        """Whether an answer may issue host handles: on the process backend their descriptors travel with the
        answer over the socketpair (SCM_RIGHTS), so such a call must never be answered through the ring."""
        return self.handles_in_data or any(_holds_handle(f.type) for f in self.results)

    @property
    def fd_params(self) -> tuple[int, ...]:
        """The parameters that are enclave fds in the program's API and host handles on the wire."""
        return tuple(i for i, f in enumerate(self.params) if f.is_handle)


@functools.singledispatch
def _holds_handle(t: object) -> bool:
    """Whether a value of this wire type carries a host handle anywhere inside it."""
    return False


@_holds_handle.register
def _(t: Int) -> bool:
    return t.role == HANDLE


@_holds_handle.register
def _(t: Record) -> bool:
    return any(_holds_handle(f.type) for f in t.fields)


@_holds_handle.register
def _(t: List) -> bool:
    return _holds_handle(t.item)


# ---------------------------------------------------------------------------------------------------------
# Plausibility: what a well-formed answer must still *mean*.  Ranges live on the fields themselves (Int lo/hi);
# the relations below tie a field to the request, to another field, or to what the run has seen before.  Each
# rule names its kind, the calls and the field it holds for; `validate.py` implements every kind in one place
# (stateless kinds in CallChecks, the ones that remember the run in Plausibility), the enclave runs them on every
# answer, and docs/threat-model.md lists each with its lie, its test and its negative control.
# ---------------------------------------------------------------------------------------------------------

MAX_TERMINAL = 10_000  # columns or lines of a terminal; real ones are a few hundred
PID_MAX = 1 << 22  # PID_MAX_LIMIT on 64-bit Linux: /proc/sys/kernel/pid_max can never be set higher
ID_MAX = 2**32 - 2  # uid/gid: (uid_t)-1 means "no id" and is never anyone's
BLKSIZE_MIN, BLKSIZE_MAX = 512, 16 << 20  # st_blksize: ext4/xfs/tmpfs 4096, NFS up to 1 MiB, Lustre 4 MiB
MAX_LISTING = 1 << 20  # names in one directory listing (one open of the directory, up to a restart)
MAX_RESOLVED = 64  # getaddrinfo answers for one name (the host cuts its own list there)
# Clocks: the enclave's own counter (RDTSC's stand-in, never the host's) bounds how far the host's clocks may
# move between two answers.  CLOCK_SLACK_NS covers a coarse clock's tick and the scheduling of the exchange
# itself; CLOCK_DRIFT is a rate (NTP slews a clock by at most 500 ppm).
CLOCK_SLACK_NS = 50_000_000
CLOCK_DRIFT = 1e-3
REALTIME_MIN_NS, REALTIME_MAX_NS = 946_684_800 * 10**9, 7_258_118_400 * 10**9  # 2000-01-01 .. 2200-01-01 UTC
UPTIME_MAX_NS = 100 * 365 * 86_400 * 10**9  # a monotonic clock counts from boot: not a century


class Rule(Frozen):
    kind: str
    calls: tuple[str, ...]
    field: str  # the result (or "result.field" inside a record) the rule holds for
    doc: str


# One line a rule: its kind, the calls, the field, and what an answer must mean (validate.py says how, in full).
RULES: tuple[Rule, ...] = (
    Rule("filetype", ("stat", "lstat", "fstat"), "st.mode", "one of the 7 file types; stat never answers a symlink"),
    Rule("nlink", ("stat", "lstat"), "st.nlink", "at least 1: a name was just found (fstat may say 0: unlinked)"),
    Rule("blksize", ("stat", "lstat", "fstat"), "st.blksize", "a power of two in BLKSIZE_MIN..BLKSIZE_MAX"),
    Rule("statvfs", ("statvfs", "fstatvfs"), "st", "free and available blocks and inodes within their totals"),
    Rule("seek", ("lseek",), "position", "SEEK_SET answers the offset asked; other whences at least the offset"),
    Rule("dirent", ("getdents",), "entries", "each name one path component: not empty, '.', '..', no '/', no NUL"),
    Rule("listing", ("getdents",), "entries", "no name twice between a restart and the end; <= MAX_LISTING names"),
    Rule("fresh", ("attach", "open", "pipe", "socket", "socketpair", "accept"), "handles", "never 0-2 or reused"),
    Rule("clock", ("clock_gettime",), "ns", "within CLOCK_DRIFT (+ slack) of the enclave's own counter, both ways"),
    Rule("slept", ("sleep",), "slept_ns", "at least the request, no more than the enclave's counter saw (+ slack)"),
    Rule("stable", ("getids",), "*", "the same identity every time in one run; pid differs from ppid"),
    Rule("resolver", ("getaddrinfo",), "results", "<= MAX_RESOLVED answers, each of the family asked, its address"),
)


# ---------------------------------------------------------------------------------------------------------
# Errno sets: what the host may legitimately answer.  Anything else is a host violation (Iago attack).
# ---------------------------------------------------------------------------------------------------------


def errnos(*codes: int) -> frozenset[int]:
    return frozenset(codes)


ANY_CALL = errnos(E.EIO, E.ENOMEM, E.EINTR, E.EACCES, E.ENOSYS, E.EPERM)  # transport, policy, resources
BAD_FD = errnos(E.EBADF)
PATH_LOOKUP = errnos(E.ENOENT, E.ENOTDIR, E.ELOOP, E.ENAMETOOLONG, E.EXDEV)  # EXDEV: confinement refusals
FS_WRITE = errnos(E.EROFS, E.ENOSPC, E.EDQUOT, E.EEXIST, E.EBUSY, E.ETXTBSY, E.EFBIG)
FILE_IO = ANY_CALL | BAD_FD | errnos(E.EAGAIN, E.EINVAL, E.EISDIR, E.ESPIPE, E.ENXIO, E.EOVERFLOW)
FILE_WRITE = FILE_IO | FS_WRITE | errnos(E.EPIPE, E.EDESTADDRREQ)
PATH_CALL = ANY_CALL | PATH_LOOKUP | errnos(E.EINVAL, E.EOVERFLOW)
PATH_WRITE = PATH_CALL | FS_WRITE | errnos(E.EISDIR, E.ENOTEMPTY, E.EMLINK, E.ENOTDIR)
OPEN = PATH_WRITE | errnos(E.EMFILE, E.ENFILE, E.ENXIO, E.EOPNOTSUPP, E.EWOULDBLOCK, E.ENODEV)
SOCK = ANY_CALL | BAD_FD | errnos(
    E.EAGAIN, E.EINPROGRESS, E.EALREADY, E.EISCONN, E.ENOTCONN, E.ECONNREFUSED, E.ECONNRESET, E.ECONNABORTED,
    E.EPIPE, E.ETIMEDOUT, E.EADDRINUSE, E.EADDRNOTAVAIL, E.EAFNOSUPPORT, E.EPROTONOSUPPORT, E.EPROTOTYPE,
    E.EOPNOTSUPP, E.ENOTSOCK, E.EINVAL, E.ENETUNREACH, E.EHOSTUNREACH, E.EMSGSIZE, E.ENOPROTOOPT, E.EMFILE, E.ENFILE,
    E.ENOBUFS, E.ENOENT, E.ENOTDIR, E.ESHUTDOWN, E.EDESTADDRREQ, E.ESOCKTNOSUPPORT,
)
# getaddrinfo/getnameinfo fail with EAI_* codes, which are negative on glibc and travel as such.
GAI = frozenset(getattr(socket, n) for n in dir(socket) if n.startswith("EAI_"))
NONE: frozenset[int] = frozenset()
# xattr(7): ENODATA (no such attribute), ENOTSUP (the file system or namespace has none), ERANGE (a value longer
# than the size asked), E2BIG (a value larger than the file system takes).
XATTR = PATH_CALL | errnos(E.ENODATA, E.ENOTSUP, E.ERANGE, E.E2BIG)


def call(
    name: str,
    number: int,
    family: str,
    params: Iterable[Field],
    results: Iterable[Field],
    errs: frozenset[int],
    *,
    blocking: bool = False,
    resources: Iterable[tuple[str, str]] = (),
    doc: str = "",
    handles_in_data: bool = False,
    retry_eintr: bool = True,
    paths: dict[str, Resolve] | None = None,
) -> Call:
    return Call(name, number, family, tuple(params), tuple(results), errs, blocking, tuple(resources), doc,
                handles_in_data, retry_eintr, tuple((paths or {}).items()))


def inside(name: str, family: str, doc: str) -> Call:
    return Call(name, None, family, (), (), NONE, doc=doc)


FD = handle("fd")
XNAME = data("name", max=MAX_NAME)  # XATTR_NAME_MAX: "user.x" and the like, as bytes

# The resolutions the files rows use (see Resolve).
OBJECT, LINK, ENTRY, SELF = Resolve("object"), Resolve("link"), Resolve("entry"), Resolve("self")
NEW = Resolve("entry", dot=E.EEXIST)  # creates a name: "x/." exists already, as mkdir(2) says
OBJECT_OR_ENTRY = Resolve("object", follow="follow", unfollowed="entry")  # chmod/chown/utime: lchmod acts on the link
OBJECT_OR_LINK = Resolve("object", follow="follow", unfollowed="link")  # access(AT_SYMLINK_NOFOLLOW)
WRITABLE = Resolve("object", flags=os.O_WRONLY | os.O_NONBLOCK)  # truncate(2) needs write access to the file

CALLS: tuple[Call, ...] = (
    # -- control ------------------------------------------------------------------------------------------
    call("attach", 0, "control", [i32("version", 1)], [i64("stdin"), i64("stdout"), i64("stderr")], ANY_CALL,
         doc="handshake: the host hands over the handles of the three standard streams (-1 where closed)"),
    # -- files --------------------------------------------------------------------------------------------
    call("open", 1, "files", [path(), i32("flags"), i32("mode", 0, 0o7777)], [handle("fd")], OPEN,
         blocking=True, resources=[("path", "open")], paths={"path": SELF},
         doc="open(2); blocking because a FIFO open waits"),
    call("close", 2, "files", [FD], [], FILE_IO, blocking=True, retry_eintr=False,
         doc="blocking: closing a socket with SO_LINGER waits for its data to leave (up to the linger time)"),
    call("read", 3, "files", [FD, count()], [data(bound=arg("count"))], FILE_IO, blocking=True),
    call("pread", 4, "files", [FD, count(), i64("offset", 0)], [data(bound=arg("count"))], FILE_IO),
    call("write", 5, "files", [FD, data()], [i64("written", 0, bound=length("data"))], FILE_WRITE,
         blocking=True),
    call("pwrite", 6, "files", [FD, data(), i64("offset", 0)], [i64("written", 0, bound=length("data"))],
         FILE_WRITE),
    call("lseek", 7, "files", [FD, i64("offset"), i32("whence", 0, 4)], [i64("position", 0)], FILE_IO),
    call("fstat", 8, "files", [FD], [record("st", STAT)], FILE_IO),
    call("stat", 9, "files", [path()], [record("st", STAT)], PATH_CALL, resources=[("path", "stat")],
         paths={"path": OBJECT}),
    call("lstat", 10, "files", [path()], [record("st", STAT)], PATH_CALL, resources=[("path", "stat")],
         paths={"path": LINK}),
    call("access", 11, "files", [path(), i32("mode", 0, 7), flag("follow")], [], PATH_CALL | errnos(E.EROFS,
         E.ETXTBSY), resources=[("path", "stat")], paths={"path": OBJECT_OR_LINK},
         doc="answers 0 or the errno, as access(2)"),
    call("unlink", 12, "files", [path()], [], PATH_WRITE, resources=[("path", "write")],
         paths={"path": Resolve("entry", dot=E.EISDIR)}),
    call("rename", 13, "files", [path("src"), path("dst")], [], PATH_WRITE,
         resources=[("src", "write"), ("dst", "write")], paths={"src": ENTRY, "dst": ENTRY}),
    call("replace", 14, "files", [path("src"), path("dst")], [], PATH_WRITE,
         resources=[("src", "write"), ("dst", "write")], paths={"src": ENTRY, "dst": ENTRY},
         doc="rename(2) that replaces; os.replace"),
    call("mkdir", 15, "files", [path(), i32("mode", 0, 0o7777)], [], PATH_WRITE, resources=[("path", "write")],
         paths={"path": NEW}),
    call("rmdir", 16, "files", [path()], [], PATH_WRITE, resources=[("path", "write")], paths={"path": ENTRY}),
    call("getdents", 17, "files", [FD, i32("max", 1, 1024), flag("restart")],
         [listof("entries", DIRENT, 1024, bound=arg("max"))], FILE_IO | errnos(E.ENOTDIR, E.ENOENT),
         doc="the next entries of an open directory, without '.' and '..'; an empty list at the end"),
    call("readlink", 18, "files", [path()], [Field("target", Bytes(MAX_PATH))], PATH_CALL,
         resources=[("path", "stat")], paths={"path": LINK}),
    call("symlink", 19, "files", [path("target"), path("linkpath")], [], PATH_WRITE,
         resources=[("linkpath", "write")], paths={"linkpath": NEW},
         doc="the target is stored text; following it is confined later"),
    call("link", 20, "files", [path("src"), path("dst"), flag("follow")], [], PATH_WRITE,
         resources=[("src", "write"), ("dst", "write")], paths={"src": OBJECT_OR_ENTRY, "dst": ENTRY}),
    call("chmod", 21, "files", [path(), i32("mode", 0, 0o7777), flag("follow")], [],
         PATH_WRITE | errnos(E.EOPNOTSUPP), resources=[("path", "write")], paths={"path": OBJECT_OR_ENTRY}),
    call("fchmod", 22, "files", [FD, i32("mode", 0, 0o7777)], [], FILE_WRITE),
    call("chown", 23, "files", [path(), i64("uid", -1, 2**32 - 1), i64("gid", -1, 2**32 - 1), flag("follow")], [],
         PATH_WRITE, resources=[("path", "write")], paths={"path": OBJECT_OR_ENTRY}),
    call("utime", 24, "files", [path(), i64("atime_ns"), i64("mtime_ns"), flag("now"), flag("follow")], [],
         PATH_WRITE, resources=[("path", "write")], paths={"path": OBJECT_OR_ENTRY},
         doc="now=True sets both times to the current time"),
    call("futime", 25, "files", [FD, i64("atime_ns"), i64("mtime_ns"), flag("now")], [], FILE_WRITE),
    call("truncate", 26, "files", [path(), i64("length", 0)], [], PATH_WRITE, resources=[("path", "write")],
         paths={"path": WRITABLE}),
    call("ftruncate", 27, "files", [FD, i64("length", 0)], [], FILE_WRITE),
    call("fsync", 28, "files", [FD], [], FILE_WRITE),
    call("fdatasync", 29, "files", [FD], [], FILE_WRITE),
    call("statvfs", 30, "files", [path()], [record("st", STATVFS)], PATH_CALL, resources=[("path", "stat")],
         paths={"path": OBJECT}),
    call("fstatvfs", 31, "files", [FD], [record("st", STATVFS)], FILE_IO),
    call("isatty", 32, "files", [FD], [flag("tty")], FILE_IO),
    call("getfl", 33, "files", [FD], [i32("flags")], FILE_IO, doc="fcntl(F_GETFL): access mode and status flags"),
    call("setfl", 34, "files", [FD, i32("flags")], [], FILE_IO,
         doc="fcntl(F_SETFL): only O_APPEND and O_NONBLOCK may change, as on Linux"),
    call("sendfile", 35, "files", [handle("out_fd"), handle("in_fd"), i64("offset", -1), count()],
         [i64("sent", 0, bound=arg("count"))], FILE_WRITE | errnos(E.ENOTSOCK, E.EOVERFLOW), blocking=True,
         doc="offset -1 means the file position of in_fd"),
    call("terminal_size", 36, "files", [FD], [i32("columns", 0, MAX_TERMINAL), i32("lines", 0, MAX_TERMINAL)],
         FILE_IO | errnos(E.ENOTTY)),
    call("pipe", 37, "files", [i32("flags")], [handle("read_fd"), handle("write_fd")],
         ANY_CALL | errnos(E.EMFILE, E.ENFILE, E.EINVAL)),
    call("flock", 38, "files", [FD, i32("operation")], [], FILE_IO | errnos(E.EWOULDBLOCK, E.ENOLCK),
         blocking=True),
    call("fchown", 39, "files", [FD, i64("uid", -1, 2**32 - 1), i64("gid", -1, 2**32 - 1)], [], FILE_WRITE),
    call("mkfifo", 40, "files", [path(), i32("mode", 0, 0o7777)], [], PATH_WRITE, resources=[("path", "write")],
         paths={"path": NEW}),
    # Extended attributes (xattr(7)): a path form (follow says whether a final symlink is followed) and an fd form
    # of each; read grants cover get/list, write grants set/remove (the fd forms check the file's write grant).
    call("getxattr", 41, "files", [path(), XNAME, i32("size", 0, XATTR_SIZE_MAX), flag("follow")],
         [data("value", bound=arg("size"), max=XATTR_SIZE_MAX)], XATTR, resources=[("path", "read")],
         paths={"path": OBJECT_OR_LINK}, doc="ERANGE when the value is longer than size"),
    call("fgetxattr", 42, "files", [FD, XNAME, i32("size", 0, XATTR_SIZE_MAX)],
         [data("value", bound=arg("size"), max=XATTR_SIZE_MAX)], XATTR | BAD_FD),
    call("setxattr", 43, "files", [path(), XNAME, data("value", max=XATTR_SIZE_MAX), i32("flags", 0, 3),
         flag("follow")], [], XATTR | FS_WRITE, resources=[("path", "write")], paths={"path": OBJECT_OR_LINK},
         doc="flags: XATTR_CREATE (EEXIST if it exists), XATTR_REPLACE (ENODATA if it does not)"),
    call("fsetxattr", 44, "files", [FD, XNAME, data("value", max=XATTR_SIZE_MAX), i32("flags", 0, 3)], [],
         XATTR | FS_WRITE | BAD_FD),
    call("listxattr", 45, "files", [path(), flag("follow")], [listof("names", XATTR_NAME, MAX_XATTRS)],
         XATTR, resources=[("path", "read")], paths={"path": OBJECT_OR_LINK}),
    call("flistxattr", 46, "files", [FD], [listof("names", XATTR_NAME, MAX_XATTRS)], XATTR | BAD_FD),
    call("removexattr", 47, "files", [path(), XNAME, flag("follow")], [], XATTR | FS_WRITE,
         resources=[("path", "write")], paths={"path": OBJECT_OR_LINK}),
    call("fremovexattr", 48, "files", [FD, XNAME], [], XATTR | FS_WRITE | BAD_FD),
    inside("dup", "files", "a new enclave fd sharing the same host handle (refcounted)"),
    inside("dup2", "files", "served in the enclave fd table"),
    inside("getcwd", "files", "the enclave keeps its own working directory; the host's is never changed"),
    inside("chdir", "files", "checked with a stat ocall, then kept inside"),
    inside("fchdir", "files", "the enclave remembers the path of each directory fd"),
    inside("umask", "files", "the enclave applies its umask to modes before they leave"),
    inside("get_inheritable", "files", "FD_CLOEXEC lives in the enclave fd table (nothing is ever exec'ed)"),
    inside("set_inheritable", "files", "FD_CLOEXEC lives in the enclave fd table"),
    inside("get_blocking", "files", "derived from getfl"),
    inside("set_blocking", "files", "derived from getfl/setfl"),
    inside("device_encoding", "files", "derived from isatty"),
    # -- sockets ------------------------------------------------------------------------------------------
    call("socket", 100, "sockets", [i32("family"), i32("type"), i32("proto")], [handle("fd")], SOCK),
    call("socketpair", 101, "sockets", [i32("family"), i32("type"), i32("proto")], [handle("fd1"), handle("fd2")],
         SOCK),
    call("bind", 102, "sockets", [FD, record("addr", SOCKADDR)], [], SOCK | PATH_WRITE,
         resources=[("addr", "bind")]),
    call("listen", 103, "sockets", [FD, i32("backlog")], [], SOCK),
    call("accept", 104, "sockets", [FD, i32("flags")], [handle("conn"), record("addr", SOCKADDR)], SOCK,
         blocking=True),
    call("connect", 105, "sockets", [FD, record("addr", SOCKADDR)], [], SOCK | PATH_CALL, blocking=True,
         retry_eintr=False, resources=[("addr", "connect")]),
    call("send", 106, "sockets", [FD, data(), i32("flags")], [i64("sent", 0, bound=length("data"))], SOCK,
         blocking=True),
    call("recv", 107, "sockets", [FD, count(), i32("flags")], [data(bound=arg("count"))], SOCK, blocking=True),
    call("sendto", 108, "sockets", [FD, data(), i32("flags"), record("addr", SOCKADDR)],
         [i64("sent", 0, bound=length("data"))], SOCK, blocking=True, resources=[("addr", "connect")]),
    call("recvfrom", 109, "sockets", [FD, count(), i32("flags")],
         [data(bound=arg("count")), record("addr", SOCKADDR)], SOCK, blocking=True),
    call("shutdown", 110, "sockets", [FD, i32("how", 0, 2)], [], SOCK),
    call("getsockname", 111, "sockets", [FD], [record("addr", SOCKADDR)], SOCK),
    call("getpeername", 112, "sockets", [FD], [record("addr", SOCKADDR)], SOCK),
    call("getsockopt", 113, "sockets", [FD, i32("level"), i32("option"), i32("buflen", 0, 1024)],
         [i64("value"), data("raw", bound=arg("buflen"), max=1024)], SOCK,
         doc="buflen 0 asks for an int option (value); otherwise raw holds up to buflen bytes"),
    call("setsockopt", 114, "sockets", [FD, i32("level"), i32("option"), i64("value"), data("raw", max=1024),
         flag("use_raw")], [], SOCK),
    call("getaddrinfo", 115, "sockets", [text("host"), text("port", 32), i32("family"), i32("type"),
         i32("proto"), i32("flags"), flag("null_host"), flag("null_port")], [listof("results", ADDRINFO, 256)],
         ANY_CALL | GAI, blocking=True, resources=[("host", "resolve")],
         doc="failures come back as the (negative) EAI_* code in the errno field: socket.gaierror; "
             "null_host/null_port pass NULL (Python's None), which differs from an empty string"),
    call("getnameinfo", 116, "sockets", [record("addr", SOCKADDR), i32("flags")], [text("host"), text("port", 32)],
         ANY_CALL | GAI, blocking=True),
    call("gethostname", 117, "sockets", [], [text("name", 255)], ANY_CALL),
    call("recvmsg", 118, "sockets", [FD, count(), i32("ancbufsize", 0, MAX_ANCILLARY), i32("flags")],
         [data(bound=arg("count")), listof("ancillary", CMSG, MAX_CMSGS), i32("msg_flags"),
          record("addr", SOCKADDR)], SOCK, blocking=True, handles_in_data=True,
         doc="recvmsg(2): msg_flags tells a truncated datagram (MSG_TRUNC) or control data (MSG_CTRUNC); "
             "descriptors received (SCM_RIGHTS) arrive as new host handles"),
    call("sendmsg", 119, "sockets", [FD, data(), listof("ancillary", CMSG, MAX_CMSGS), i32("flags"),
         record("addr", SOCKADDR)], [i64("sent", 0, bound=length("data"))], SOCK | errnos(E.ETOOMANYREFS),
         blocking=True, resources=[("addr", "connect")],
         doc="sendmsg(2) with control messages of ANCILLARY_SEND; SCM_RIGHTS carries host handles, which the "
             "host turns into its descriptors; an AF_UNSPEC addr sends to the connected peer"),
    # -- readiness ----------------------------------------------------------------------------------------
    call("poll", 200, "poll", [listof("fds", POLLFD, 4096), i64("timeout_ms", -1)],
         [listof("ready", POLLED, 4096, bound=length("fds"))], ANY_CALL | BAD_FD | errnos(E.EINVAL),
         blocking=True, retry_eintr=False, doc="poll(2) over host handles; answers only the entries with revents"),
    # -- time ---------------------------------------------------------------------------------------------
    call("clock_gettime", 300, "time", [i32("clock", 0, 15)], [i64("ns")], ANY_CALL | errnos(E.EINVAL),
         doc="REALTIME, MONOTONIC, BOOTTIME (and the RAW/COARSE/TAI variants); the enclave refuses a monotonic "
             "clock that runs backwards"),
    call("clock_getres", 301, "time", [i32("clock", 0, 15)], [i64("ns", 1, 1_000_000_000)],
         ANY_CALL | errnos(E.EINVAL)),
    call("sleep", 302, "time", [i64("ns", 0, 10_000_000_000)], [i64("slept_ns", 0)], ANY_CALL, blocking=True,
         retry_eintr=False,
         doc="the enclave sleeps in slices of at most 50 ms and refuses one the host cuts short"),
    inside("process_time", "time", "CPU time of the enclave's own threads: read where they run, never asked"),
    inside("thread_time", "time", "CPU time of the calling thread: read where it runs, never asked"),
    # -- environment --------------------------------------------------------------------------------------
    inside("getenv", "env", "os.environ is the enclave's own: the policy's values and the allowed host ones"),
    inside("putenv", "env", "changes only the enclave's environment, never the host's"),
    inside("unsetenv", "env", "changes only the enclave's environment, never the host's"),
    # -- randomness ---------------------------------------------------------------------------------------
    inside("urandom", "random", "the enclave's own entropy source (RDRAND's stand-in), never the host's"),
    inside("getrandom", "random", "the enclave's own entropy source (RDRAND's stand-in), never the host's"),
    # -- process identity ---------------------------------------------------------------------------------
    call("uname", 400, "process", [], [record("u", UNAME)], ANY_CALL, doc="asked on every call, as natively"),
    call("getids", 401, "process", [], [i64("pid", 1, PID_MAX), i64("ppid", 0, PID_MAX), i64("uid", 0, ID_MAX),
         i64("euid", 0, ID_MAX), i64("gid", 0, ID_MAX), i64("egid", 0, ID_MAX)], ANY_CALL,
         doc="asked once per enclave, then served inside"),
    call("getgroups", 402, "process", [], [listof("groups", GROUP, 65536)], ANY_CALL | errnos(E.EINVAL),
         doc="asked once per enclave, then served inside"),
    call("getlogin", 403, "process", [], [text("name", 256)],
         ANY_CALL | errnos(E.ENXIO, E.ENOTTY, E.ENOENT, E.ERANGE, E.EMFILE, E.ENFILE),
         doc="the login name of the host's controlling terminal"),
    call("environ", 404, "process", [data("after", max=MAX_NAME * 4)], [listof("vars", ENVVAR, ENV_PAGE)],
         ANY_CALL, doc="the next page of host variables the policy lets in, in name order after `after` (the "
                       "host filters them as well); asked once per enclave"),
    inside("getpid", "process", "the host's pid, from getids"),
    inside("getppid", "process", "the host's parent pid, from getids"),
    inside("getuid", "process", "from getids"),
    inside("geteuid", "process", "from getids"),
    inside("getgid", "process", "from getids"),
    inside("getegid", "process", "from getids"),
    inside("kill", "process", "only the enclave itself, through the local signal machinery; another pid: ENOSYS"),
    inside("wait", "process", "an enclave never has children: ECHILD, as natively for a childless process"),
    # -- children: Python programs started as new enclaves --------------------------------------------------
    call("spawn", 600, "children", [path("executable"), data("argv", max=MAX_DATA - MAX_PATH * 2), path("cwd"),
         i64("stdin", -1), i64("stdout", -1), i64("stderr", -1), listof("passed", PASSED, MAX_PASSED)],
         [i64("pid", 1, PID_MAX)],
         ANY_CALL | BAD_FD | PATH_LOOKUP | errnos(E.EAGAIN, E.EMFILE, E.ENFILE, E.EINVAL), blocking=True,
         doc="start `executable argv...` as a new enclave of the same backend and policy (the host's copy): "
             "only the host's own interpreter with a Python command line (ocall_bridge/pyargv.py), its words "
             "joined by NUL; stdin/stdout/stderr are handles the child gets as its standard streams (-1: /dev/null)"),
    call("run_program", 603, "children", [text("name", 255), data("argv", max=MAX_DATA - MAX_PATH * 2),
         path("cwd"), i64("stdin", -1), i64("stdout", -1), i64("stderr", -1)], [i64("pid", 1, PID_MAX)],
         ANY_CALL | BAD_FD | PATH_LOOKUP | errnos(E.EAGAIN, E.EMFILE, E.ENFILE, E.EINVAL, E.ENOEXEC, E.E2BIG),
         blocking=True,
         doc="run the host program the policy names `name` (--allow-run=NAME, resolved at policy load), outside "
             "the enclave, with argv (NUL-joined) and the handles as its standard streams, in a clean environment "
             "from the policy"),
    call("inherited", 604, "children", [], [listof("fds", PASSED, MAX_PASSED)], ANY_CALL,
         doc="the descriptors this enclave's parent passed it (pass_fds), asked once at start: each is placed at "
             "its number"),
    # multiprocessing's semaphores, shared between an enclave and its child enclaves: the hosts hold real named
    # semaphores (a name the host prefixes, so an enclave reaches no other program's), the enclaves their handles.
    call("sem_open", 610, "children", [i32("kind", 0, 1), i64("value", 0, 2**31 - 1), i64("maxvalue", 1, 2**31 - 1),
         text("name", 200), flag("create")], [i64("sem", 1)], ANY_CALL | errnos(E.EEXIST, E.ENOENT, E.EINVAL,
         E.EMFILE, E.ENFILE, E.ENAMETOOLONG), doc="sem_open(3) of a multiprocessing semaphore: a new one, or one "
                                                  "a parent enclave made (by name)"),
    call("sem_acquire", 611, "children", [i64("sem", 1), flag("block"), i64("timeout_ns", -1)], [flag("acquired")],
         ANY_CALL | errnos(E.EINVAL, E.EAGAIN), blocking=True, doc="sem_wait/sem_timedwait; timeout -1: none"),
    call("sem_release", 612, "children", [i64("sem", 1)], [], ANY_CALL | errnos(E.EINVAL, E.EOVERFLOW),
         doc="sem_post; EOVERFLOW: released more times than acquired"),
    call("sem_getvalue", 613, "children", [i64("sem", 1)], [i64("value", 0, 2**31 - 1)], ANY_CALL | errnos(E.EINVAL)),
    call("sem_close", 614, "children", [i64("sem", 1)], [], ANY_CALL | errnos(E.EINVAL)),
    call("sem_unlink", 615, "children", [text("name", 200)], [], ANY_CALL | errnos(E.ENOENT, E.EINVAL)),
    call("waitchild", 601, "children", [i64("pid", 1, PID_MAX), flag("nohang")],
         [i64("pid", 0, PID_MAX), i64("status", 0, 0xFFFF)], ANY_CALL | errnos(E.ECHILD, E.EINVAL), blocking=True,
         doc="waitpid(2) of a child this enclave started (any other pid: ECHILD); pid 0 with nohang: still runs"),
    call("signalchild", 602, "children", [i64("pid", 1, PID_MAX), i32("signal", 0, 64)], [],
         ANY_CALL | errnos(E.ESRCH, E.EINVAL), doc="kill(2) of a child this enclave started and has not reaped"),
    # -- attestation --------------------------------------------------------------------------------------
    call("report", 500, "attest", [data("user_data", max=64)], [data("quote", max=QUOTE_SIZE)],
         ANY_CALL | errnos(E.EINVAL),
         doc="a quote over the enclave's user data, signed by the platform key the host holds; the host fills "
             "in the measurement and signer of the enclave it launched, never what the enclave claims"),
    # -- sealing ------------------------------------------------------------------------------------------
    call("seal_key", 501, "sealing", [i32("kind", 0, 1)], [data("key", max=32)], ANY_CALL,
         doc="the 32-byte sealing key the host derives (HKDF) from its platform secret and the enclave's identity "
             "(kind 0) or its signer (kind 1); the secret itself never crosses"),
)

BY_NAME: dict[str, Call] = {c.name: c for c in CALLS}
BY_NUMBER: dict[int, Call] = {c.number: c for c in CALLS if c.number is not None}
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(c.family for c in CALLS))



def check_table(calls: Sequence[Call]) -> None:
    """The table's own rules, checked at import (TableError names the offending row; survives `python -O`)."""
    names: dict[str, Call] = {}
    numbers: dict[int, Call] = {}
    for c in calls:
        require(c.name not in names, f"two rows named {c.name!r}")
        names[c.name] = c
        if c.number is not None:
            require(c.number not in numbers, f"rows {numbers.get(c.number, c).name!r} and {c.name!r} share number "
                                             f"{c.number}")
            numbers[c.number] = c
        for f in c.params:
            # A path parameter must be resolvable by the kernel: PATH_MAX counts the NUL.
            if isinstance(f.type, Path):
                require(f.type.max < MAX_PATH,
                        f"{c.name}: path parameter {f.name!r} allows {f.type.max} bytes, PATH_MAX is {MAX_PATH}")
        _check_paths(c)


def _check_paths(c: Call) -> None:
    """Every path the host touches for a policy kind says how it is resolved, and only such paths do: a host
    function can then never meet a raw path it would have to confine itself."""
    types = {f.name: f.type for f in c.params}
    touched = {name for name, _ in c.resources if isinstance(types.get(name), Path)}
    resolved = dict(c.paths)
    require(set(resolved) == touched, f"{c.name}: paths {sorted(resolved)} must be exactly the path parameters "
                                      f"with a resource, {sorted(touched)}")
    for name, how in c.paths:
        for form in (how.at, how.unfollowed or how.at):
            require(form in RESOLVE_FORMS,
                    f"{c.name}: {name!r} resolved as {form!r}, not one of {sorted(RESOLVE_FORMS)}")
        require(bool(how.follow) == bool(how.unfollowed), f"{c.name}: {name!r}: follow and unfollowed go together")
        require(not how.follow or isinstance(types.get(how.follow), Bool),
                f"{c.name}: {name!r} follows the flag {how.follow!r}, which is no flag parameter of the call")


check_table(CALLS)


_F = TypeVar("_F", bound=Callable[..., Any])


def uses(*names: str, partial: str = "", refused: str = "") -> Callable[[_F], _F]:
    """Declare, next to an enclave function, the table rows it may use (ocalls, or rows served inside).

    The declaration is a fact of the table kept where a reader of the function sees it: compat's support table
    reads it instead of guessing from bytecode, and a test checks it against what the function's code calls.
    A name that is not a row fails at import (TableError), so a renamed row cannot leave stale declarations.
    `partial` says which arguments the function refuses where it otherwise serves the call ("some flags");
    `refused` says that it refuses every call, and what to use instead (the support table shows it refused).
    """
    for name in names:
        require(name in BY_NAME, f"@uses({name!r}): no row of the table has that name")

    def declare(fn: _F) -> _F:
        fn.__ocalls__ = frozenset(names)  # type: ignore[attr-defined]
        fn.__ocalls_partial__ = partial or refused  # type: ignore[attr-defined]
        if refused:
            fn.__posix_shim_refused__ = refused  # type: ignore[attr-defined]
        return fn

    return declare


def ocalls_of(fn: Any) -> frozenset[str] | None:
    """The rows `fn` declared with `@uses`, or None for a function that declared nothing."""
    declared = getattr(fn, "__ocalls__", None)
    return declared if isinstance(declared, frozenset) else None


def partial_of(fn: Any) -> str:
    """What `fn` declared it refuses among the arguments it otherwise serves ("" for nothing)."""
    return str(getattr(fn, "__ocalls_partial__", ""))
