"""Landlock: the second, independent wall (filesystem, TCP, signals, abstract unix sockets).

The ruleset handles every filesystem access right the running kernel knows and adds **no rule**, so after
:func:`restrict_self` the process cannot open, create, remove, rename, link, execute or truncate anything by
path, nor ``ioctl`` devices opened later.  Descriptors it already holds keep working: Landlock checks at open
time.  With ABI >= 4 it also handles ``BIND_TCP | CONNECT_TCP`` with no rule (no TCP bind or connect at all),
and with ABI >= 6 it is *scoped*: no signal to, and no connection to an abstract unix socket of, a process
outside the domain (the host, the user's shell, ...).

Landlock does not cover: ``stat``-like metadata reads, pathname unix socket ``connect`` (before ABI 8? not in
this kernel), UDP, sockets of other families, or anything on already-open descriptors.  Those are the seccomp
filter's job; the two walls overlap on purpose.

**Threads.** ``landlock_restrict_self`` confines the calling thread and the threads it creates *afterwards*
only (there is no TSYNC before ABI 8).  Call :func:`restrict_self` while the process has a single thread;
:func:`posix_shim.confine.confine_process` refuses to run otherwise.
"""

from __future__ import annotations

from . import _native

# Filesystem rights by the ABI that introduced them (linux/landlock.h).
ACCESS_FS_EXECUTE = 1 << 0
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_READ_FILE = 1 << 2
ACCESS_FS_READ_DIR = 1 << 3
ACCESS_FS_REMOVE_DIR = 1 << 4
ACCESS_FS_REMOVE_FILE = 1 << 5
ACCESS_FS_MAKE_CHAR = 1 << 6
ACCESS_FS_MAKE_DIR = 1 << 7
ACCESS_FS_MAKE_REG = 1 << 8
ACCESS_FS_MAKE_SOCK = 1 << 9
ACCESS_FS_MAKE_FIFO = 1 << 10
ACCESS_FS_MAKE_BLOCK = 1 << 11
ACCESS_FS_MAKE_SYM = 1 << 12
ACCESS_FS_REFER = 1 << 13  # ABI 2
ACCESS_FS_TRUNCATE = 1 << 14  # ABI 3
ACCESS_FS_IOCTL_DEV = 1 << 15  # ABI 5

ACCESS_NET_BIND_TCP = 1 << 0  # ABI 4
ACCESS_NET_CONNECT_TCP = 1 << 1  # ABI 4

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

CREATE_RULESET_VERSION = 1 << 0

#: The newest ABI whose rights this module knows.  A newer kernel may know rights we cannot name; they stay
#: unhandled (allowed), which :func:`posix_shim.confine.probe` does not treat as missing, but say so here.
KNOWN_ABI = 7

_FS_BY_ABI = {
    1: (1 << 13) - 1,
    2: ACCESS_FS_REFER,
    3: ACCESS_FS_TRUNCATE,
    5: ACCESS_FS_IOCTL_DEV,
}


def abi_version() -> int:
    """The running kernel's Landlock ABI, or 0 when Landlock is absent or disabled at boot."""
    result = _native.syscall_errno("landlock_create_ruleset", _native.NULL, 0, CREATE_RULESET_VERSION)
    return max(result, 0)


def fs_rights(abi: int) -> int:
    """Every filesystem access right that ABI *abi* knows."""
    rights = 0
    for since, bits in _FS_BY_ABI.items():
        if abi >= since:
            rights |= bits
    return rights


def net_rights(abi: int) -> int:
    return ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP if abi >= 4 else 0


def scopes(abi: int) -> int:
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


def restrict_self(abi: int | None = None) -> int:
    """Create a ruleset with no rules that handles everything *abi* (default: the running one) knows, and
    enforce it on the calling thread (and threads it creates later).  Returns the ABI used.

    Requires ``PR_SET_NO_NEW_PRIVS`` (or CAP_SYS_ADMIN).  Raises :class:`posix_shim.confine._native.KernelError`
    if the kernel refuses, and ``RuntimeError`` if Landlock is unavailable: never returns unconfined.
    """
    if abi is None:
        abi = abi_version()
    if abi < 1:
        raise RuntimeError("Landlock is not available in this kernel (or disabled at boot)")
    attr = _native.new("struct landlock_ruleset_attr *")
    attr.handled_access_fs = fs_rights(abi)
    attr.handled_access_net = net_rights(abi)
    attr.scoped = scopes(abi)
    # The struct grew with the ABI: older kernels reject a size that includes fields they do not know.
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    fd = _native.syscall("landlock_create_ruleset", attr, size, 0)
    try:
        _native.syscall("landlock_restrict_self", fd, 0)
    finally:
        _native.syscall("close", fd)
    return abi
