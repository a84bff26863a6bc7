"""Host side of the `sockets` family: each function performs the call of the same name in calls.py.

Every socket handle carries one real socket object (`_HostSocket`, kept in `Handle.state["sock"]`) so that the
calls can use CPython's own socket methods (recvfrom, getsockopt, accept4 ...), which take no raw fds.  That object
never owns the descriptor: the handle table does, and closes it through the `close` row.  The object runs in
CPython's "blocking" mode (timeout None) whatever the enclave asked: the enclave controls O_NONBLOCK on the
descriptor itself (setfl) and waits with the `poll` row, so a call here either completes, blocks this thread
(blocking rows run on their own thread on the process backend), or fails with EAGAIN/EINPROGRESS, exactly as the
system call does.

The enclave is untrusted: addresses must be numeric (the policy was checked on exactly this address, so the host
resolves nothing), and only the families, types and options of calls.py are served.
"""

from __future__ import annotations

import array
import errno
from typing import TYPE_CHECKING, Any

from ..calls import MAX_RESOLVED
from ..originals import fcntl, os
from ..originals import socket as sk
from ..records import ANCILLARY_SEND, MAX_CMSGS, SOCKET_FAMILIES, SOCKET_TYPE_FLAGS, SOCKET_TYPES, SOCKOPTS
from .files import _kind_of
from .handles import Handle
from .runtime import Host
from .socket_paths import unix_path

if TYPE_CHECKING:  # `sk` is real.py's capture of _socket; its class is _socket.socket
    from _socket import socket as _SocketBase
else:
    _SocketBase = sk.socket

_AF_INET, _AF_INET6, _AF_UNIX = sk.AF_INET, sk.AF_INET6, sk.AF_UNIX
NO_ADDRESS = (0, "", 0, 0, 0, b"")  # AF_UNSPEC: "no address" (recvfrom on a connected stream), Python's None


class _HostSocket(_SocketBase):
    """A socket object over a descriptor it does not own.

    Overriding __del__ replaces the C finalizer that would close the descriptor: once the handle table has
    closed it, the number may already belong to another file.
    """

    __slots__ = ()

    def __del__(self) -> None:
        self.detach()


def _wrap(fd: int, family: int = -1, type: int = -1, proto: int = -1) -> _HostSocket:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    sock = _HostSocket(family, type, proto, fd)
    if sock.gettimeout() is not None:
        # A process-wide socket.setdefaulttimeout() on the host side made CPython switch the descriptor to
        # non-blocking and add its own timeout: undo both, the enclave decides blocking and timeouts.
        sock.settimeout(None)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return sock


def _keep_blocking_mode(fd: int, type: int) -> None:
    """O_NONBLOCK exactly as SOCK_NONBLOCK asked, even if a host-side default timeout made CPython set it."""
    if sk.getdefaulttimeout() is not None:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        want = flags | os.O_NONBLOCK if type & sk.SOCK_NONBLOCK else flags & ~os.O_NONBLOCK
        if want != flags:
            fcntl.fcntl(fd, fcntl.F_SETFL, want)


def _sock(h: Handle) -> _HostSocket:
    sock = h.state.get("sock")
    if sock is None:
        # A handle that was not made here (a standard stream that is a socket, a file): CPython asks the kernel
        # for family and type, and a non-socket fails with ENOTSOCK, as natively.
        sock = h.state["sock"] = _wrap(h.fd)
    return sock


def _new_handle(host: Host, fd: int, family: int, type: int, proto: int) -> int:
    try:
        sock = _wrap(fd, family, type, proto)
        number = host.handles.add(fd, "socket")
    except BaseException:
        os.close(fd)
        raise
    host.handles.get(number).state["sock"] = sock
    return number


def _check_kind(family: int, type: int) -> None:
    if family not in SOCKET_FAMILIES:
        raise OSError(errno.EAFNOSUPPORT, f"address family {family} is not served")
    base = type & ~SOCKET_TYPE_FLAGS
    if base == sk.SOCK_SEQPACKET and family != _AF_UNIX:
        raise OSError(errno.ESOCKTNOSUPPORT, "Socket type not supported")  # what the kernel answers
    if base not in SOCKET_TYPES:
        known = base in (sk.SOCK_RAW, sk.SOCK_RDM)
        raise OSError(errno.EPROTONOSUPPORT if known else errno.EINVAL, f"socket type {type} is not served")


def _numeric(family: int, host: str) -> str:
    try:
        sk.inet_pton(family, host)
    except (OSError, ValueError):
        raise OSError(errno.EINVAL, f"address {host!r} is not a numeric address of family {family}") from None
    return host


def address(sock: _HostSocket, rec: tuple) -> object:
    """The Python address for `sock` from a SOCKADDR record; the family must be the socket's."""
    family, host, port, flowinfo, scope_id, path = rec
    if family != sock.family:
        raise OSError(errno.EAFNOSUPPORT if family not in SOCKET_FAMILIES else errno.EINVAL,
                      "address family does not match the socket")
    if family == _AF_INET:
        return _numeric(family, host), port
    if family == _AF_INET6:
        return _numeric(family, host), port, flowinfo, scope_id
    if family == _AF_UNIX:
        return path
    raise OSError(errno.EAFNOSUPPORT, "address family not served")


def record(family: int, addr: Any) -> tuple:
    """The SOCKADDR record of an address CPython returned for a socket of `family` (its shape depends on the
    family: str or bytes for AF_UNIX, a 2- or 4-tuple for AF_INET/AF_INET6, None when there is none)."""
    if addr is None:
        return NO_ADDRESS
    if family == _AF_UNIX:
        return (_AF_UNIX, "", 0, 0, 0, os.fsencode(addr) if isinstance(addr, str) else bytes(addr))
    if family == _AF_INET:
        return (_AF_INET, addr[0], addr[1], 0, 0, b"")
    if family == _AF_INET6:
        return (_AF_INET6, addr[0], addr[1], addr[2], addr[3], b"")
    raise OSError(errno.EAFNOSUPPORT, "address family not served")


# -- the calls --------------------------------------------------------------------------------------------


def socket(host: Host, family: int, type: int, proto: int) -> int:
    _check_kind(family, type)
    # Always close-on-exec: a host child must never inherit an enclave socket.
    raw = sk.socket(family, type | sk.SOCK_CLOEXEC, proto)
    fd = raw.detach()
    _keep_blocking_mode(fd, type)
    return _new_handle(host, fd, family, type & ~SOCKET_TYPE_FLAGS, raw.proto)


def socketpair(host: Host, family: int, type: int, proto: int) -> tuple[int, int]:
    _check_kind(family, type)
    a, b = sk.socketpair(family, type | sk.SOCK_CLOEXEC, proto)
    base = type & ~SOCKET_TYPE_FLAGS
    fa, fb, pa = a.detach(), b.detach(), a.proto
    _keep_blocking_mode(fa, type)
    _keep_blocking_mode(fb, type)
    try:
        first = _new_handle(host, fa, family, base, pa)
    except BaseException:
        os.close(fb)
        raise
    return first, _new_handle(host, fb, family, base, pa)


def bind(host: Host, h: Handle, addr: tuple) -> None:
    sock = _sock(h)
    with unix_path(host.access, address(sock, addr), "bind") as target:  # AF_UNIX names: confined (confine.py)
        sock.bind(target)


def listen(host: Host, h: Handle, backlog: int) -> None:
    sock = _sock(h)
    if sock.family in (_AF_INET, _AF_INET6):
        # listen(2) on a socket that was never bound binds it first, to a random port on every address: a bind
        # the enclave never asked for, so the policy is asked about it as about an explicit one.
        name = sock.getsockname()
        if name[1] == 0:
            wildcard = record(sock.family, ("0.0.0.0", 0) if sock.family == _AF_INET else ("::", 0, 0, 0))
            denial = host.access.check("listen", "bind", wildcard)
            if denial:
                raise OSError(errno.EACCES, f"listen on an unbound socket would bind a random port: {denial}")
    sock.listen(max(backlog, 0))


def accept(host: Host, h: Handle, flags: int) -> tuple[int, tuple]:
    sock = _sock(h)
    # accept4(SOCK_CLOEXEC); _socket.socket._accept is the C method socket.accept wraps, absent from typeshed
    fd, addr = sock._accept()  # type: ignore[attr-defined]
    if flags & sk.SOCK_NONBLOCK:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    number = _new_handle(host, fd, sock.family, sock.type, sock.proto)
    return number, record(sock.family, addr)


def connect(host: Host, h: Handle, addr: tuple) -> None:
    sock = _sock(h)
    with unix_path(host.access, address(sock, addr), "connect") as target:
        sock.connect(target)


def send(host: Host, h: Handle, data: bytes, flags: int) -> int:
    return _sock(h).send(data, flags)


def recv(host: Host, h: Handle, count: int, flags: int) -> bytes:
    return _sock(h).recv(count, flags)


def sendto(host: Host, h: Handle, data: bytes, flags: int, addr: tuple) -> int:
    sock = _sock(h)
    with unix_path(host.access, address(sock, addr), "connect") as target:
        return sock.sendto(data, flags, target)


def recvfrom(host: Host, h: Handle, count: int, flags: int) -> tuple[bytes, tuple]:
    sock = _sock(h)
    data, addr = sock.recvfrom(count, flags)
    return data, record(sock.family, addr)


_SCM_RIGHTS = (sk.SOL_SOCKET, sk.SCM_RIGHTS)
_INT = array.array("i").itemsize


def recvmsg(host: Host, h: Handle, count: int, ancbufsize: int, flags: int) -> tuple[bytes, list, int, tuple]:
    """recvmsg(2).  Descriptors that arrive (SCM_RIGHTS) become host handles, close-on-exec here whatever the
    enclave asked (it keeps its own FD_CLOEXEC); the enclave is answered their handle numbers in their place."""
    sock = _sock(h)
    data, ancdata, msg_flags, addr = sock.recvmsg(count, ancbufsize, flags | sk.MSG_CMSG_CLOEXEC)
    if not flags & sk.MSG_CMSG_CLOEXEC:
        msg_flags &= ~sk.MSG_CMSG_CLOEXEC  # the kernel reports the flag back; the program did not ask for it
    arrived = [fd for level, type, cdata in ancdata if (level, type) == _SCM_RIGHTS
               for fd in array.array("i", cdata[:len(cdata) - len(cdata) % _INT])]
    made: dict[int, int] = {}  # descriptor -> its new handle
    try:
        if len(ancdata) > MAX_CMSGS:
            raise OSError(errno.EMSGSIZE, "more control messages than one answer carries")
        for fd in arrived:
            made[fd] = host.handles.add(fd, _kind_of(fd))
    except BaseException:
        for number in made.values():
            os.close(host.handles.pop(number).fd)
        for fd in arrived:
            if fd not in made:
                os.close(fd)
        raise
    out = []
    for level, type, cdata in ancdata:
        if (level, type) == _SCM_RIGHTS:
            whole = len(cdata) - len(cdata) % _INT
            numbers = array.array("i", [made[fd] for fd in array.array("i", cdata[:whole])])
            cdata = numbers.tobytes() + bytes(len(cdata) - whole)
        out.append((level, type, bytes(cdata)))
    return data, out, msg_flags, record(sock.family, addr)


def sendmsg(host: Host, h: Handle, data: bytes, ancillary: list, flags: int, addr: tuple) -> int:
    """sendmsg(2) with the control messages ANCILLARY_SEND allows; SCM_RIGHTS names host handles of this
    enclave, each turned into its descriptor here (a number that is no handle of it is EBADF)."""
    sock = _sock(h)
    ancdata = []
    for level, type, cdata in ancillary:
        if (level, type) not in ANCILLARY_SEND:
            raise OSError(errno.EPERM, f"control message level {level} type {type} is not served")
        if (level, type) == _SCM_RIGHTS:
            if len(cdata) % _INT:
                raise OSError(errno.EINVAL, "SCM_RIGHTS data is not whole ints")
            cdata = array.array("i", [host.handles.get(n).fd for n in array.array("i", cdata)]).tobytes()
        ancdata.append((level, type, cdata))
    if addr[0] == 0:
        return sock.sendmsg([data], ancdata, flags)
    with unix_path(host.access, address(sock, addr), "connect") as target:
        return sock.sendmsg([data], ancdata, flags, target)


def shutdown(host: Host, h: Handle, how: int) -> None:
    _sock(h).shutdown(how)


def getsockname(host: Host, h: Handle) -> tuple:
    sock = _sock(h)
    return record(sock.family, sock.getsockname())


def getpeername(host: Host, h: Handle) -> tuple:
    sock = _sock(h)
    return record(sock.family, sock.getpeername())


def _check_option(level: int, option: int) -> None:
    if (level, option) not in SOCKOPTS:
        raise OSError(errno.ENOPROTOOPT, f"socket option ({level}, {option}) is not served")


def getsockopt(host: Host, h: Handle, level: int, option: int, buflen: int) -> tuple[int, bytes]:
    _check_option(level, option)
    sock = _sock(h)
    if buflen == 0:
        return sock.getsockopt(level, option), b""
    return 0, sock.getsockopt(level, option, buflen)


def setsockopt(host: Host, h: Handle, level: int, option: int, value: int, raw: bytes, use_raw: bool) -> None:
    _check_option(level, option)
    _sock(h).setsockopt(level, option, raw if use_raw else value)


def _null(text: str, null: bool) -> str | None:
    return None if null else text


def getaddrinfo(host: Host, name: str, port: str, family: int, type: int, proto: int, flags: int,
                null_host: bool, null_port: bool) -> list[tuple]:
    out = []
    for af, socktype, proto_, canonname, sa in sk.getaddrinfo(_null(name, null_host), _null(port, null_port),
                                                                       family, type, proto, flags):
        if af not in (_AF_INET, _AF_INET6):
            continue  # nothing else can be used through this interface
        rec = record(af, sa)
        if af == _AF_INET6 and "%" in rec[1]:
            rec = (rec[0], rec[1].partition("%")[0], *rec[2:])  # the scope travels as scope_id
        out.append((af, socktype, proto_, canonname, rec))
        if len(out) == MAX_RESOLVED:  # more would be refused as implausible (calls.RULES)
            break
    return out


def getnameinfo(host: Host, addr: tuple, flags: int) -> tuple[str, str]:
    family, name, port, flowinfo, scope_id, _ = addr
    if family == _AF_INET:
        sa: tuple = (_numeric(family, name), port)
    elif family == _AF_INET6:
        sa = (_numeric(family, name), port, flowinfo, scope_id)
    else:
        raise OSError(sk.EAI_FAMILY, "ai_family not supported")
    return sk.getnameinfo(sa, flags)


def gethostname(host: Host) -> str:
    return sk.gethostname()
