"""The records and value sets the ocall table (calls.py) is written with: what a stat buffer, an address, a
directory entry... hold, and which socket families, types, options and control messages the boundary carries.

Kept apart from the rows so that calls.py reads as the table; calls.py re-exports every name.
"""

from __future__ import annotations

import socket

from .types import MAX_NAME, Bytes, Field, Int, Record, Text

STAT = Record(
    "stat",
    (
        Field("mode", Int("I")),
        Field("ino", Int("Q")),
        Field("dev", Int("Q")),
        Field("nlink", Int("Q", 0, 2**32 - 1)),  # the kernel's i_nlink is 32 bits; >= 1 for a path: RULES
        Field("uid", Int("I")),
        Field("gid", Int("I")),
        Field("size", Int("q", 0)),
        Field("atime_ns", Int("q")),
        Field("mtime_ns", Int("q")),
        Field("ctime_ns", Int("q")),
        Field("blksize", Int("q", 0)),  # a power of two in BLKSIZE_MIN..BLKSIZE_MAX: RULES
        Field("blocks", Int("q", 0)),
        Field("rdev", Int("Q")),
    ),
)

STATVFS = Record(
    "statvfs",
    tuple(
        Field(n, Int("Q"))
        for n in (
            "bsize",
            "frsize",
            "blocks",
            "bfree",
            "bavail",
            "files",
            "ffree",
            "favail",
            "flag",
            "namemax",
            "fsid",
        )
    ),
)

# One directory entry, as getdents gives it: the name, the d_type (so scandir can answer is_dir() without a
# stat), and the inode number.
DIRENT = Record(
    "dirent",
    (Field("name", Bytes(MAX_NAME)), Field("type", Int("B", 0, 14)), Field("ino", Int("Q"))),
)

# One socket address shape for every family: AF_INET/AF_INET6 use host (numeric text) and port, AF_UNIX uses
# path (raw bytes, which may start with NUL for the abstract namespace).
SOCKADDR = Record(
    "sockaddr",
    (
        Field("family", Int("H")),
        Field("host", Text(64)),
        Field("port", Int("I", 0, 65535)),
        Field("flowinfo", Int("I")),
        Field("scope_id", Int("I")),
        Field("path", Bytes(108)),
    ),
)

ADDRINFO = Record(
    "addrinfo",
    (
        Field("family", Int("i")),
        Field("type", Int("i")),
        Field("proto", Int("i")),
        Field("canonname", Text()),
        Field("addr", SOCKADDR),
    ),
)

POLLFD = Record("pollfd", (Field("fd", Int("q", 0, role="handle")), Field("events", Int("H"))))
POLLED = Record("polled", (Field("index", Int("I")), Field("revents", Int("H"))))

# What the sockets family may create and which options it may get or set: AF_INET, AF_INET6 and AF_UNIX; stream,
# datagram and (AF_UNIX) seqpacket sockets; the options real programs set (the list, plus what CPython,
# asyncio, socketserver and http.server use).  Both sides enforce the same sets: the enclave to name what it
# leaves out (ENOSYS), the host because the enclave is untrusted (SO_BINDTODEVICE, raw sockets, netlink...).
SOCKET_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6, socket.AF_UNIX})
SOCKET_TYPES = frozenset({socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET})
SOCKET_TYPE_FLAGS = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
SOCKOPTS: frozenset[tuple[int, int]] = frozenset(
    [(socket.SOL_SOCKET, getattr(socket, n)) for n in (
        "SO_REUSEADDR", "SO_REUSEPORT", "SO_KEEPALIVE", "SO_RCVBUF", "SO_SNDBUF", "SO_LINGER", "SO_ERROR",
        "SO_TYPE", "SO_DOMAIN", "SO_PROTOCOL", "SO_ACCEPTCONN", "SO_BROADCAST", "SO_OOBINLINE", "SO_RCVLOWAT",
        "SO_SNDLOWAT", "SO_RCVTIMEO", "SO_SNDTIMEO", "SO_PEERCRED", "SO_PASSCRED", "SO_PRIORITY", "SO_DONTROUTE")]
    + [(socket.IPPROTO_TCP, getattr(socket, n)) for n in (
        "TCP_NODELAY", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_MAXSEG", "TCP_CORK", "TCP_QUICKACK",
        "TCP_USER_TIMEOUT", "TCP_FASTOPEN", "TCP_DEFER_ACCEPT", "TCP_NOTSENT_LOWAT")]
    + [(socket.IPPROTO_IP, getattr(socket, n)) for n in ("IP_TTL", "IP_TOS", "IP_MULTICAST_TTL", "IP_MULTICAST_LOOP")]
    + [(socket.IPPROTO_IPV6, getattr(socket, n)) for n in (
        "IPV6_V6ONLY", "IPV6_UNICAST_HOPS", "IPV6_MULTICAST_HOPS", "IPV6_MULTICAST_LOOP", "IPV6_TCLASS",
        "IPV6_RECVHOPLIMIT", "IPV6_RECVTCLASS", "IPV6_RECVPKTINFO")]
)

# Ancillary data (sendmsg/recvmsg control messages).  One control message: its level, type and data.  In
# SCM_RIGHTS the data is an array of C ints that are enclave fds in the program, *host handles* on the wire and
# host descriptors only inside the host: the descriptors themselves never cross, in either direction.  What may
# be sent is this set (both sides check it); anything may be received, SCM_RIGHTS translated by the host.
CMSG = Record("cmsg", (Field("level", Int("i")), Field("type", Int("i")), Field("data", Bytes(1024))))
MAX_CMSGS = 16  # control messages in one sendmsg/recvmsg (SCM_RIGHTS holds at most 253 fds: 1012 bytes)
MAX_ANCILLARY = 1 << 16  # ancbufsize: the kernel's own limit (net.core.optmem_max) is in this range
ANCILLARY_SEND: frozenset[tuple[int, int]] = frozenset(
    [(socket.SOL_SOCKET, socket.SCM_RIGHTS), (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)]
    + [(socket.IPPROTO_IP, getattr(socket, n)) for n in ("IP_TTL", "IP_TOS")]
    + [(socket.IPPROTO_IPV6, getattr(socket, n)) for n in ("IPV6_HOPLIMIT", "IPV6_TCLASS", "IPV6_PKTINFO")]
)

UNAME = Record("uname", tuple(Field(n, Text(65)) for n in ("sysname", "nodename", "release", "version", "machine")))
# One supplementary group id (getgroups), and one environment variable as raw bytes (environ).  The environment
# travels in pages of ENV_PAGE variables so that a page always fits one frame; a value longer than 32 KiB is
# left out by the host (real ones are far shorter; the kernel's own limit is 128 KiB).
GROUP = Record("group", (Field("gid", Int("I")),))
ENVVAR = Record("envvar", (Field("name", Bytes(MAX_NAME * 4)), Field("value", Bytes(32 << 10))))
ENV_PAGE = 30
# A descriptor a child enclave gets at a given number besides its standard streams (subprocess's pass_fds,
# multiprocessing's pipes): the enclave fd number and the handle behind it.
PASSED = Record("passed", (Field("fd", Int("i", 3, 1 << 20)), Field("handle", Int("q", 0, None, role="handle"))))
MAX_PASSED = 64

# One name of a listxattr answer.  XATTR_SIZE_MAX (64 KiB) bounds a value and a whole list of names (Linux's own
# limits), so an answer never outgrows what the kernel itself could give.
XATTR_SIZE_MAX = 65536
XATTR_NAME = Record("xattr", (Field("name", Bytes(MAX_NAME)),))
MAX_XATTRS = 4096  # names in one listxattr answer: a frame's worth of the longest names; real files carry a few
