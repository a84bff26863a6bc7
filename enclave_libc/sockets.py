"""Sockets and name resolution inside the enclave, on the `sockets` ocalls: the module-level calls of `socket`
and `_socket`, and the interposition table of the family.

The socket object is enclave_libc/socket_object.py, the conversion and checking of addresses (and of the other
values crossing in either direction) enclave_libc/socket_values.py, and sendmsg/recvmsg's control messages
enclave_libc/ancillary.py.  Names are resolved here too (through the getaddrinfo ocall), so the SOCKADDR that
leaves the enclave, and that the policy checks on both sides, is always numeric; every address and list the
host answers is checked before use.
"""

from __future__ import annotations

import _socket
import socket as _pysocket
from typing import Any

from ocall_bridge.calls import uses

from . import files, runtime
from .errors import Unsupported
from .socket_object import (
    OUTSIDE_SUBSET,
    _adopt,
    _BaseSocket,
    _check_supported,
    getdefaulttimeout,
    setdefaulttimeout,
    socket,
)
from .socket_values import (
    _GAI_MESSAGES,
    AF_INET,
    AF_INET6,
    AF_UNIX,
    AF_UNSPEC,
    SOCK_DGRAM,
    SOCK_STREAM,
    _gai,
    _getaddrinfo_records,
    _idna,
    _index,
    _numeric,
    _setipaddr,
    gaierror,
    py_address,
)

herror = _socket.herror


@uses("getaddrinfo")
def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                flags: int = 0) -> list[tuple]:
    """_socket.getaddrinfo: plain ints; socket.getaddrinfo (CPython's wrapper) turns them into enums."""
    if host is not None and not isinstance(host, str | bytes | bytearray):
        raise TypeError("getaddrinfo() argument 1 must be string or None")
    h = None if host is None else _idna(host)
    if port is None:
        p = None
    elif isinstance(port, int):
        p = str(port)
    elif isinstance(port, str):
        p = port
    elif isinstance(port, bytes):
        p = port.decode("ascii", "surrogateescape")
    else:
        raise OSError("Int or String expected")
    records = _getaddrinfo_records(h, p, _index(family), _index(type), _index(proto),
                                   _index(flags))
    return [(af, socktype, proto_, canon, py_address(rec, af, "getaddrinfo"))
            for af, socktype, proto_, canon, rec in records]


@uses("getnameinfo")
def getnameinfo(sockaddr: Any, flags: int) -> tuple[str, str]:
    if not isinstance(sockaddr, tuple):
        raise TypeError("getnameinfo() argument 1 must be a tuple")
    if not 2 <= len(sockaddr) <= 4 or not isinstance(sockaddr[0], str) or not isinstance(sockaddr[1], int):
        raise TypeError("getnameinfo(): illegal sockaddr argument")
    host, port = sockaddr[0], sockaddr[1]
    flowinfo = sockaddr[2] if len(sockaddr) > 2 else 0
    scope_id = sockaddr[3] if len(sockaddr) > 3 else 0
    if not 0 <= flowinfo <= 0xFFFFF:
        raise OverflowError("getnameinfo(): flowinfo must be 0-1048575.")
    base = host.partition("%")[0]
    if _numeric(AF_INET, host) is not None:
        rec = (AF_INET, host, port & 0xFFFF, 0, 0, b"")
        if len(sockaddr) != 2:
            raise OSError("IPv4 sockaddr must be 2 tuple")
    elif _numeric(AF_INET6, base) is not None:
        rec = (AF_INET6, base, port & 0xFFFF, flowinfo, scope_id, b"")
    else:
        # CPython resolves the sockaddr with AI_NUMERICHOST: a name is refused the same way.
        raise gaierror(_socket.EAI_NONAME, _GAI_MESSAGES[_socket.EAI_NONAME])
    try:
        return runtime.RT.ocall.getnameinfo(rec, flags)
    except OSError as exc:
        raise _gai(exc) from None


@uses("gethostname")
def gethostname() -> str:
    return runtime.RT.ocall.gethostname()


@uses("getaddrinfo")
def gethostbyname(hostname: Any) -> str:
    return _setipaddr(_idna(hostname), AF_INET)[1]


@uses("getaddrinfo")
def gethostbyname_ex(hostname: Any) -> tuple[str, list[str], list[str]]:
    name = _idna(hostname)
    if _numeric(AF_INET, name) is not None:
        return name, [], [_numeric(AF_INET, name)]  # type: ignore[list-item]
    records = _getaddrinfo_records(name, None, AF_INET, SOCK_STREAM, 0, _socket.AI_CANONNAME)
    canonical = records[0][3] or name
    addresses = list(dict.fromkeys(rec[1] for *_, rec in records))
    return canonical, [], addresses


@uses("getaddrinfo", "getnameinfo")
def gethostbyaddr(ip_address: Any) -> tuple[str, list[str], list[str]]:
    """A reverse lookup (getnameinfo with NI_NAMEREQD); a name is resolved first, as natively."""
    af, ip, scope = _setipaddr(_idna(ip_address), AF_UNSPEC)
    rec = (af, ip, 0, 0, scope, b"")
    try:
        name, _ = runtime.RT.ocall.getnameinfo(rec, _socket.NI_NAMEREQD)
    except OSError as exc:
        if isinstance(exc.errno, int) and exc.errno < 0:
            raise herror(1, "Unknown host") from None
        raise
    return name, [], [ip]


@uses("getaddrinfo")
def getservbyname(servicename: str, protocolname: str | None = None) -> int:
    if not isinstance(servicename, str) or (protocolname is not None and not isinstance(protocolname, str)):
        raise TypeError("getservbyname() argument must be str")
    socktype = {None: 0, "tcp": SOCK_STREAM, "udp": SOCK_DGRAM}.get(protocolname, -1)
    if socktype < 0 or servicename.isdigit() or not servicename:
        raise OSError("service/proto not found")
    try:
        records = _getaddrinfo_records(None, servicename, AF_INET, socktype, 0, _socket.AI_PASSIVE)
    except gaierror:
        raise OSError("service/proto not found") from None
    return records[0][4][2]


@uses("getnameinfo")
def getservbyport(port: int, protocolname: str | None = None) -> str:
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("getservbyport: port must be 0-65535.")
    flags = _socket.NI_NUMERICHOST | (_socket.NI_DGRAM if protocolname == "udp" else 0)
    if protocolname not in (None, "tcp", "udp"):
        raise OSError("port/proto not found")
    _, service = getnameinfo(("127.0.0.1", port), flags)
    if service == str(port):
        raise OSError("port/proto not found")
    return service


_PROTOCOLS = {"ip": 0, "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6": 41, "ipv6-icmp": 58, "icmpv6": 58,
              "sctp": 132, "udplite": 136, "raw": 255}


@uses()
def getprotobyname(protocolname: str) -> int:
    """/etc/protocols is the same table on every Linux: served inside, without touching host files."""
    try:
        return _PROTOCOLS[protocolname.lower()]
    except KeyError:
        raise OSError("protocol not found") from None


def _unsupported(name: str) -> Any:
    """A replacement that refuses `name` outright (ENOSYS): what it would answer is the host's, not the enclave's."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Unsupported(name, "host network interfaces and names are not visible inside the enclave")

    refuse.__name__ = name
    return uses(refused="ENOSYS")(refuse)


@uses("socketpair", partial=OUTSIDE_SUBSET)
def socketpair(family: int | None = None, type: int = SOCK_STREAM, proto: int = 0) -> tuple[socket, socket]:
    if family is None:
        family = AF_UNIX
    _check_supported("socketpair", family, type)
    rt = runtime.RT
    h1, h2 = rt.ocall.socketpair(family, type, proto)
    fd1, fd2 = _adopt(h1), _adopt(h2)
    return socket(family, type, proto, fd1), socket(family, type, proto, fd2)


@uses("socketpair", partial=OUTSIDE_SUBSET)
def _raw_socketpair(family: int = AF_UNIX, type: int = SOCK_STREAM, proto: int = 0) -> tuple[socket, socket]:
    """_socket.socketpair (for code that calls the C function directly)."""
    return socketpair(family, type, proto)


@uses("close")
def close(fd: int) -> None:
    files.close(_index(fd))


@uses()
def dup(fd: int) -> int:
    return files.dup(_index(fd))


PATCHES: dict[Any, Any] = {
    _BaseSocket: socket,
    _socket.socket: socket,  # also socket.SocketType
    _pysocket.socketpair: socketpair,
    _socket.socketpair: _raw_socketpair,
    _socket.getaddrinfo: getaddrinfo,
    _socket.getnameinfo: getnameinfo,
    _socket.gethostname: gethostname,
    _socket.gethostbyname: gethostbyname,
    _socket.gethostbyname_ex: gethostbyname_ex,
    _socket.gethostbyaddr: gethostbyaddr,
    _socket.getservbyname: getservbyname,
    _socket.getservbyport: getservbyport,
    _socket.getprotobyname: getprotobyname,
    _socket.getdefaulttimeout: getdefaulttimeout,
    _socket.setdefaulttimeout: setdefaulttimeout,
    _socket.close: close,
    _socket.dup: dup,
}
for _n in ("sethostname", "if_nameindex", "if_nametoindex", "if_indextoname"):
    if hasattr(_socket, _n):
        PATCHES[getattr(_socket, _n)] = _unsupported(_n)
