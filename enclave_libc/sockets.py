"""Sockets and name resolution inside the enclave, on the `sockets` ocalls.

`socket.socket` becomes `socket` below: a subclass of Python's own class (so `isinstance` against any reference
a program or library captured keeps working, and `makefile`, `accept`, `dup`, `sendfile`, `__repr__` and the
context manager are CPython's code), whose every C-level method is replaced by one over an enclave fd.  The C
part of the object is never initialised: it holds no descriptor, so nothing can reach the host's sockets by
going around the enclave.

Blocking, non-blocking and timeout modes follow CPython's `sock_call`: the host descriptor is O_NONBLOCK
whenever the socket has a timeout (0 or more), a call that would block answers EAGAIN, and the enclave waits
for readiness with the `poll` ocall on that one handle until the deadline, then raises `TimeoutError("timed
out")`.  A blocking socket makes one blocking ocall, which on the process backend blocks only its own thread.

Addresses are converted here, as CPython's `getsockaddrarg` does, with the same errors; names are resolved
here too (through the getaddrinfo ocall), so the SOCKADDR that leaves the enclave, and that the policy checks on
both sides, is always numeric.  Every address, list and option value the host answers is checked before use.
"""

from __future__ import annotations

import _socket
import array as _array
import errno
import math
import os as _os
import socket as _pysocket
import stat as _stat
import sys
import time as _time
import weakref
from collections.abc import Iterable
from typing import Any, overload

from ocall_bridge.calls import ANCILLARY_SEND, MAX_ANCILLARY, SOCKET_FAMILIES, SOCKOPTS
from ocall_bridge.types import MAX_DATA

from . import files, runtime
from .errors import HostGone, HostViolation, PolicyDenied, Unsupported, oserror
from .fdtable import OpenFile

# Captured before interposition: the originals this module replaces or builds on.
_BaseSocket = _pysocket.socket
_monotonic = _time.monotonic  # a local clock read for deadlines (the vDSO, no ocall)
_inet_pton, _inet_ntop = _socket.inet_pton, _socket.inet_ntop
_fsencode, _fsdecode = _os.fsencode, _os.fsdecode
_intenum = _pysocket._intenum_converter  # type: ignore[attr-defined]  # socket.py's private helper, no stub
AddressFamily = _pysocket.AddressFamily
SocketKind = _pysocket.SocketKind
gaierror, herror = _socket.gaierror, _socket.herror

AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC = _socket.AF_INET, _socket.AF_INET6, _socket.AF_UNIX, _socket.AF_UNSPEC
SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = _socket.SOCK_STREAM, _socket.SOCK_DGRAM, _socket.SOCK_SEQPACKET
SOCK_NONBLOCK, SOCK_CLOEXEC = _socket.SOCK_NONBLOCK, _socket.SOCK_CLOEXEC
SOL_SOCKET = _socket.SOL_SOCKET
POLLIN, POLLOUT, POLLNVAL = 0x001, 0x004, 0x020
_STREAMS = (SOCK_STREAM, SOCK_SEQPACKET)

# glibc's gai_strerror texts, so a socket.gaierror reads exactly as natively.
_GAI_MESSAGES = {
    -1: "Bad value for ai_flags", -2: "Name or service not known", -3: "Temporary failure in name resolution",
    -4: "Non-recoverable failure in name resolution", -5: "No address associated with hostname",
    -6: "ai_family not supported", -7: "ai_socktype not supported", -8: "Servname not supported for ai_socktype",
    -9: "Address family for hostname not supported", -10: "Memory allocation failure", -11: "System error",
    -12: "Argument buffer overflow", -100: "Processing request in progress", -101: "Request canceled",
    -102: "Request not canceled", -103: "All requests done", -104: "Interrupted by a signal",
    -105: "Parameter string not correctly encoded",
}

# AF_UNIX names as the program gave them: the host binds the absolute path (the enclave has its own cwd, and the
# policy judges absolute paths), but getsockname() answers what was bound, as natively.
_UNIX_NAMES: weakref.WeakKeyDictionary[OpenFile, tuple[bytes, bytes]] = weakref.WeakKeyDictionary()


def _lie(call: str, problem: str) -> HostViolation:
    """Record and return the violation for a host answer that cannot be true (the client's own bookkeeping)."""
    return runtime.RT.client._refuse(call, problem)


def _gai(exc: OSError) -> OSError:
    """A negative errno from a resolver ocall is an EAI_* code: socket.gaierror, worded as natively."""
    if isinstance(exc.errno, int) and exc.errno < 0:
        return gaierror(exc.errno, _GAI_MESSAGES.get(exc.errno, f"Unknown error {exc.errno}"))
    return exc


def _index(value: Any) -> int:
    """operator.index with CPython's wording for the argument errors."""
    try:
        return value.__index__()
    except AttributeError:
        raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an integer") from None


def _name(table: str, value: int) -> str:
    for n in dir(_socket):
        if n.startswith(table) and getattr(_socket, n) == value:
            return n
    return str(value)


# -- addresses -------------------------------------------------------------------------------------------


def _idna(host: Any) -> str:
    """CPython's idna_converter: a host name as ASCII text."""
    if isinstance(host, str):
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
    elif isinstance(host, bytes | bytearray):
        host = bytes(host).decode("ascii", "surrogateescape")
    else:
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if "\0" in host:
        raise TypeError("host name must not contain null character")
    return host


def _numeric(family: int, host: str) -> str | None:
    """The canonical text of a numeric address of `family`, or None if `host` is not one."""
    try:
        return _inet_ntop(family, _inet_pton(family, host))
    except (OSError, ValueError, UnicodeError):
        return None


def _setipaddr(name: str, family: int) -> tuple[int, str, int]:
    """CPython's setipaddr: (family, numeric host, scope_id) for a host name, resolving it if needed."""
    if name == "":
        return (AF_INET6, "::", 0) if family == AF_INET6 else (AF_INET, "0.0.0.0", 0)
    if name in ("<broadcast>", "255.255.255.255"):
        if family not in (AF_INET, AF_UNSPEC):
            raise OSError("address family mismatched")
        return AF_INET, "255.255.255.255", 0
    for af in (AF_INET, AF_INET6):
        if family in (af, AF_UNSPEC):
            text = _numeric(af, name)
            if text is not None:
                return af, text, 0
    results = _getaddrinfo_records(name, None, family, 0, 0, 0)
    af, _, _, _, rec = results[0]
    return af, rec[1], rec[4]


def _port(port: Any, call: str) -> int:
    value = _index(port)
    if not 0 <= value <= 0xFFFF:
        raise OverflowError(f"{call}(): port must be 0-65535.")
    return value


def sockaddr(family: int, address: Any, call: str) -> tuple:
    """The SOCKADDR record for a Python address given to a socket of `family` (getsockaddrarg)."""
    if family == AF_UNIX:
        if isinstance(address, str):
            path = _fsencode(address)
        else:
            try:
                path = bytes(memoryview(address))
            except TypeError:
                raise TypeError(f"a bytes-like object is required, not '{type(address).__name__}'") from None
        if len(path) > 108:
            raise OSError("AF_UNIX path too long")
        if path and not path.startswith(b"\0"):
            # Relative names are the enclave's: resolved against its cwd, never the host's.
            path = runtime.RT.resolve(path)
            if len(path) > 108:
                raise OSError("AF_UNIX path too long")
        return (AF_UNIX, "", 0, 0, 0, path)
    if family == AF_INET:
        if not isinstance(address, tuple):
            raise TypeError(f"{call}(): AF_INET address must be tuple, not {type(address).__name__}")
        if len(address) != 2:
            raise TypeError("AF_INET address must be a pair (host, port)")
        host = _idna(address[0])
        port = _port(address[1], call)
        _, ip, _ = _setipaddr(host, AF_INET)
        return (AF_INET, ip, port, 0, 0, b"")
    if family == AF_INET6:
        if not isinstance(address, tuple):
            raise TypeError(f"{call}(): AF_INET6 address must be tuple, not {type(address).__name__}")
        if not 2 <= len(address) <= 4:
            raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
        host = _idna(address[0])
        port = _port(address[1], call)
        flowinfo = _index(address[2]) if len(address) > 2 else 0
        scope_id = _index(address[3]) if len(address) > 3 else 0
        if not 0 <= flowinfo <= 0xFFFFF:
            raise OverflowError(f"{call}(): flowinfo must be 0-1048575.")
        if not 0 <= scope_id <= 0xFFFFFFFF:
            raise OverflowError("Python int too large to convert to C unsigned long")
        _, ip, _ = _setipaddr(host, AF_INET6)
        return (AF_INET6, ip, port, flowinfo, scope_id, b"")
    raise OSError(errno.EAFNOSUPPORT, f"{call}(): bad family")


def py_address(rec: tuple, family: int, call: str) -> Any:
    """The Python address of a SOCKADDR the host answered for a socket of `family`, checked (makesockaddr)."""
    af, host, port, flowinfo, scope_id, path = rec
    if af == AF_UNSPEC:
        return None
    if af != family:
        raise _lie(call, f"address of family {af} for a socket of family {family}")
    if af == AF_UNIX:
        if path.startswith(b"\0"):
            return path
        return _fsdecode(path.partition(b"\0")[0])
    text = host.partition("%")[0] if af == AF_INET6 else host
    if _numeric(af, text) is None:
        raise _lie(call, f"{host!r} is not a numeric address of family {af}")
    if af == AF_INET:
        if flowinfo or scope_id or path:
            raise _lie(call, "AF_INET address with IPv6 or AF_UNIX fields")
        return host, port
    if flowinfo > 0xFFFFF:
        raise _lie(call, f"flowinfo {flowinfo} out of range")
    return host, port, flowinfo, scope_id


# -- name resolution ---------------------------------------------------------------------------------------


def _getaddrinfo_records(host: str | None, port: str | None, family: int, type: int, proto: int,
                         flags: int) -> list[tuple]:
    try:
        results = runtime.RT.ocall.getaddrinfo(host or "", port or "", family, type, proto, flags, host is None,
                                               port is None)
    except OSError as exc:
        raise _gai(exc) from None
    wanted = {AF_INET, AF_INET6} if family == AF_UNSPEC else {family}
    numeric = {af: _numeric(af, host) for af in (AF_INET, AF_INET6)} if host else {}
    for af, socktype, proto_, _canon, rec in results:
        if af not in wanted or rec[0] != af:
            raise _lie("getaddrinfo", f"an address of family {af} for a request of family {family}")
        if (type and socktype != type) or (proto and proto_ != proto):
            raise _lie("getaddrinfo", f"socket type {socktype}/{proto_} for a request of {type}/{proto}")
        py_address(rec, af, "getaddrinfo")
        if numeric.get(af) is not None and rec[1] != numeric[af]:
            raise _lie("getaddrinfo", f"{rec[1]!r} for the numeric host {host!r}")
        if port is not None and port.isdigit() and rec[2] != int(port):
            raise _lie("getaddrinfo", f"port {rec[2]} for the numeric port {port}")
    if not results:
        raise gaierror(_socket.EAI_NONAME, _GAI_MESSAGES[_socket.EAI_NONAME])
    return results


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


def gethostname() -> str:
    return runtime.RT.ocall.gethostname()


def gethostbyname(hostname: Any) -> str:
    return _setipaddr(_idna(hostname), AF_INET)[1]


def gethostbyname_ex(hostname: Any) -> tuple[str, list[str], list[str]]:
    name = _idna(hostname)
    if _numeric(AF_INET, name) is not None:
        return name, [], [_numeric(AF_INET, name)]  # type: ignore[list-item]
    records = _getaddrinfo_records(name, None, AF_INET, SOCK_STREAM, 0, _socket.AI_CANONNAME)
    canonical = records[0][3] or name
    addresses = list(dict.fromkeys(rec[1] for *_, rec in records))
    return canonical, [], addresses


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


def getprotobyname(protocolname: str) -> int:
    """/etc/protocols is the same table on every Linux: served inside, without touching host files."""
    try:
        return _PROTOCOLS[protocolname.lower()]
    except KeyError:
        raise OSError("protocol not found") from None


def _unsupported(name: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Unsupported(name, "host network interfaces and names are not visible inside the enclave")

    refuse.__name__ = name
    return refuse


def getdefaulttimeout() -> float | None:
    return runtime.RT.extra.get("sockets.default_timeout")


def setdefaulttimeout(timeout: float | None) -> None:
    # Kept per enclave: the C module's own default is process-wide, and on the sim backend the host shares it.
    runtime.RT.extra["sockets.default_timeout"] = _timeout_value(timeout)


# The C type CPython names in the error (3.13 made it public: PyTime_t).
_PYTIME_TOO_LARGE = f"timestamp too large to convert to C {'_' if sys.version_info < (3, 13) else ''}PyTime_t"


def _timeout_value(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        raise ValueError("Invalid value NaN (not a number)")
    if not isinstance(value, float):
        value = float(_index(value))
    if value < 0:
        raise ValueError("Timeout value out of range")
    if value > 9.2e9:
        raise OverflowError(_PYTIME_TOO_LARGE)
    return value


# -- the socket class --------------------------------------------------------------------------------------


def _flat(data: Any) -> memoryview:
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None
    if view.format != "B" or view.ndim != 1 or not view.c_contiguous:
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    return view


def _writable(buffer: Any, call: str) -> memoryview:
    try:
        view = memoryview(buffer)
    except TypeError:
        view = None
    if view is None or view.readonly:
        raise TypeError(f"{call}() argument 1 must be read-write bytes-like object, not {type(buffer).__name__}")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class socket(_BaseSocket):
    """socket.socket over an enclave fd."""

    __slots__ = ("_fd", "_family", "_type", "_proto", "_timeout")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: Any = None) -> None:
        self._fd = -1
        self._io_refs = 0
        self._closed = False
        rt = runtime.RT
        if fileno is None:
            family = AF_INET if family == -1 else _index(family)
            type = SOCK_STREAM if type == -1 else _index(type)
            proto = 0 if proto == -1 else _index(proto)
            _check_supported(family, type)
            handle = rt.ocall.socket(family, type, proto)
            # Sockets are never inheritable (PEP 446), and nothing is ever exec'ed inside anyway.
            self._fd = rt.fds.add(OpenFile(handle, "socket"), cloexec=True)
        else:
            if isinstance(fileno, float):
                raise TypeError("'float' object cannot be interpreted as an integer")
            fd = _index(fileno)
            if fd < 0:
                raise ValueError("negative file descriptor")
            if family == -1 or type == -1 or proto == -1:
                handle = rt.fds.get(fd).handle
                if family == -1:
                    family = rt.ocall.getsockopt(handle, SOL_SOCKET, _socket.SO_DOMAIN, 0)[0]
                if type == -1:
                    type = rt.ocall.getsockopt(handle, SOL_SOCKET, _socket.SO_TYPE, 0)[0]
                if proto == -1:
                    proto = rt.ocall.getsockopt(handle, SOL_SOCKET, _socket.SO_PROTOCOL, 0)[0]
            self._fd = fd
        self._family = family
        self._type = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
        self._proto = proto
        if type & SOCK_NONBLOCK:
            self._timeout: float | None = 0.0
        else:
            self._timeout = None
            default = getdefaulttimeout()
            if default is not None:
                self.settimeout(default)

    # -- identity ------------------------------------------------------------------------------------------
    @property
    def family(self) -> AddressFamily:
        return _intenum(self._family, AddressFamily)

    @property
    def type(self) -> SocketKind:
        return _intenum(self._type, SocketKind)

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def timeout(self) -> float | None:
        return self._timeout

    def fileno(self) -> int:
        fd = self._fd
        return fd if fd < 0 else runtime.RT.fds.fileno(fd)

    def _handle(self) -> int:
        return runtime.RT.fds.get(self._fd).handle  # EBADF once closed (fd -1), as natively

    def _of(self) -> OpenFile:
        return runtime.RT.fds.get(self._fd)

    # -- lifetime ------------------------------------------------------------------------------------------
    def _real_close(self, _ss: Any = None) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            runtime.RT.fds.close(fd)

    def detach(self) -> int:
        self._closed = True
        fd, self._fd = self._fd, -1
        return fd

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0 and runtime.active():
            import warnings

            try:
                warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1, source=self)
            except Exception:
                pass
            try:
                self._real_close()
            except Exception:
                pass

    # -- modes ---------------------------------------------------------------------------------------------
    def settimeout(self, value: float | None) -> None:
        timeout = _timeout_value(value)
        rt = runtime.RT
        # CPython makes the descriptor itself non-blocking whenever there is a timeout; the wait is ours.
        rt.ocall.setfl(self._handle(), 0 if timeout is None else _os.O_NONBLOCK)
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    # -- the call loop (CPython's sock_call) ---------------------------------------------------------------
    def _wait(self, handle: int, events: int, timeout: float) -> bool:
        ready = runtime.RT.ocall.poll([(handle, events)], max(0, math.ceil(timeout * 1000)))
        for index, revents in ready:
            if index != 0:
                raise _lie("poll", f"index {index} for a one-entry request")
            if revents & POLLNVAL:
                raise oserror(errno.EBADF)
            return True
        return False

    def _io(self, fn: Any, args: tuple, events: int, wait_first: bool) -> Any:
        handle = self._handle()
        timeout = self._timeout
        if not timeout:  # blocking (None) or non-blocking (0.0): the host call answers as the system call
            while True:
                try:
                    return fn(handle, *args)
                except InterruptedError:
                    continue
        deadline = _monotonic() + timeout
        if wait_first and not self._wait(handle, events, timeout):
            raise TimeoutError("timed out")
        while True:
            try:
                return fn(handle, *args)
            except InterruptedError:
                continue
            except BlockingIOError:
                pass
            remaining = deadline - _monotonic()
            if remaining <= 0 or not self._wait(handle, events, remaining):
                raise TimeoutError("timed out")

    # -- connection set-up ---------------------------------------------------------------------------------
    def _sockaddr(self, address: Any, call: str) -> tuple:
        return sockaddr(self._family, address, call)

    def bind(self, address: Any) -> None:
        rec = self._sockaddr(address, "bind")
        of = self._of()
        runtime.RT.ocall.bind(of.handle, rec)
        if self._family == AF_UNIX and rec[5] and not rec[5].startswith(b"\0"):
            given = _fsencode(address) if isinstance(address, str) else bytes(memoryview(address))
            _UNIX_NAMES[of] = (rec[5], given)

    def listen(self, backlog: int = min(_socket.SOMAXCONN, 128)) -> None:
        runtime.RT.ocall.listen(self._handle(), max(_index(backlog), 0))

    def _accept(self) -> tuple[int, Any]:
        rt = runtime.RT
        listening = self._of()
        handle, rec = self._io(rt.ocall.accept, (0,), POLLIN, True)
        of = OpenFile(handle, "socket")
        try:
            addr = py_address(rec, self._family, "accept")
        except BaseException:
            rt.ocall.close(handle)
            raise
        if listening in _UNIX_NAMES:
            _UNIX_NAMES[of] = _UNIX_NAMES[listening]
        return rt.fds.add(of, cloexec=True), addr

    def _connect(self, address: Any, raise_: bool) -> int:
        rt = runtime.RT
        rec = self._sockaddr(address, "connect")
        handle = self._handle()
        try:
            rt.ocall.connect(handle, rec)
            return 0
        except (PolicyDenied, Unsupported, HostViolation, HostGone):
            raise
        except OSError as exc:
            err = exc.errno
            if err is None:
                raise  # not a connect outcome (a signal handler's own OSError): it propagates, as natively
            wait = (err == errno.EINTR and self._timeout != 0.0) or (err == errno.EINPROGRESS and self._timeout)
            if not wait:
                if raise_:
                    raise
                return err
        # In progress (non-blocking descriptor under a timeout, or an interrupted blocking connect): wait for
        # writability, then the outcome is SO_ERROR, as CPython's internal_connect does.
        timeout = self._timeout
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            step = 86400.0 if deadline is None else deadline - _monotonic()
            if step > 0 and self._wait(handle, POLLOUT, step):
                break
            if deadline is not None:
                if raise_:
                    raise TimeoutError("timed out")
                return errno.EWOULDBLOCK
        err = rt.ocall.getsockopt(handle, SOL_SOCKET, _socket.SO_ERROR, 0)[0]
        if not 0 <= err < 4096:
            raise _lie("getsockopt", f"SO_ERROR {err} is not an errno")
        if err and err != errno.EISCONN:
            if raise_:
                raise oserror(err)
            return err
        return 0

    def connect(self, address: Any) -> None:
        self._connect(address, True)

    def connect_ex(self, address: Any) -> int:
        return self._connect(address, False)

    def shutdown(self, how: int) -> None:
        how = _index(how)
        if not -0x80000000 <= how <= 0x7FFFFFFF:
            raise OverflowError("signed integer is greater than maximum" if how > 0
                                else "signed integer is less than minimum")
        handle = self._handle()
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise oserror(errno.EINVAL)  # what shutdown(2) answers, without troubling the host
        runtime.RT.ocall.shutdown(handle, how)

    def getsockname(self) -> Any:
        of = self._of()
        addr = py_address(runtime.RT.ocall.getsockname(of.handle), self._family, "getsockname")
        names = _UNIX_NAMES.get(of)
        if names is not None and isinstance(addr, str) and _fsencode(addr) == names[0]:
            return _fsdecode(names[1])
        return addr

    def getpeername(self) -> Any:
        return py_address(runtime.RT.ocall.getpeername(self._handle()), self._family, "getpeername")

    # -- options -------------------------------------------------------------------------------------------
    @overload
    def getsockopt(self, level: int, optname: int, /) -> int: ...

    @overload
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        level, optname = _index(level), _index(optname)
        _check_option("getsockopt", level, optname)
        if buflen is None:
            value = runtime.RT.ocall.getsockopt(self._handle(), level, optname, 0)[0]
            if not -2**31 <= value < 2**31:
                raise _lie("getsockopt", f"int option value {value} does not fit a C int")
            return value
        if not 0 < buflen <= 1024:
            raise OSError("getsockopt buflen out of range")
        return runtime.RT.ocall.getsockopt(self._handle(), level, optname, buflen)[1]

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        level, optname = _index(level), _index(optname)
        if optlen is not None:
            if value is not None:
                raise TypeError("setsockopt() takes 3 arguments when the value is not None")
            raise Unsupported("setsockopt", "the (None, optlen) form (AF_ALG) is not served")
        _check_option("setsockopt", level, optname)
        handle = self._handle()
        if isinstance(value, int):
            if not -2**31 <= value < 2**31:
                raise OverflowError("signed integer is greater than maximum" if value > 0
                                    else "signed integer is less than minimum")
            runtime.RT.ocall.setsockopt(handle, level, optname, int(value), b"", False)
            return
        raw = bytes(_flat(value))
        if len(raw) > 1024:
            raise OSError(errno.EINVAL, _os.strerror(errno.EINVAL))
        runtime.RT.ocall.setsockopt(handle, level, optname, 0, raw, True)

    # -- data ----------------------------------------------------------------------------------------------
    def _chunk(self, data: Any) -> memoryview | bytes:
        if isinstance(data, bytes) and len(data) <= MAX_DATA:
            return data
        view = _flat(data)
        if len(view) > MAX_DATA:
            if self._type not in _STREAMS or self._type == SOCK_SEQPACKET:
                # A datagram cannot be cut without changing what the peer receives.
                raise oserror(errno.EMSGSIZE)
            return view[:MAX_DATA]
        return view

    def send(self, data: Any, flags: int = 0) -> int:
        return self._io(runtime.RT.ocall.send, (self._chunk(data), flags), POLLOUT, False)

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = _flat(data)
        send = runtime.RT.ocall.send
        handle = self._handle()
        total = len(view)
        timeout = self._timeout
        deadline = None if not timeout else _monotonic() + timeout
        sent = 0
        while sent < total or total == 0:
            chunk = view[sent:sent + MAX_DATA]
            try:
                n = send(handle, chunk, flags)
            except InterruptedError:
                continue
            except BlockingIOError:
                if deadline is None:
                    raise
                remaining = deadline - _monotonic()
                if remaining <= 0 or not self._wait(handle, POLLOUT, remaining):
                    raise TimeoutError("timed out") from None
                continue
            sent += n
            if total == 0:
                break

    def sendto(self, data: Any, *args: Any) -> int:
        if len(args) == 1:
            flags, address = 0, args[0]
        elif len(args) == 2:
            flags, address = _index(args[0]), args[1]
        else:
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        chunk = self._chunk(data)
        rec = self._sockaddr(address, "sendto")
        return self._io(runtime.RT.ocall.sendto, (chunk, flags, rec), POLLOUT, False)

    def sendmsg(self, buffers: Iterable[Any], ancdata: Iterable[Any] = (), flags: int = 0,
                address: Any = None) -> int:
        data = b"".join(bytes(_flat(b)) for b in buffers)
        items = _control_out(ancdata)
        flags = _index(flags)
        if not items:
            if address is None:
                return self.send(data, flags)
            return self.sendto(data, flags, address)
        rec = _NO_ADDRESS if address is None else self._sockaddr(address, "sendmsg")
        return self._io(runtime.RT.ocall.sendmsg, (self._chunk(data), items, flags, rec), POLLOUT, False)

    def sendmsg_afalg(self, *args: Any, **kwargs: Any) -> int:
        raise Unsupported("sendmsg_afalg", "AF_ALG sockets are not served")

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        bufsize = _index(bufsize)
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        return self._io(runtime.RT.ocall.recv, (min(bufsize, MAX_DATA), flags), POLLIN, True)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = _writable(buffer, "recv_into")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes == 0:
            nbytes = len(view)
        elif nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        data = self.recv(nbytes, flags)
        view[:len(data)] = data
        return len(data)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        bufsize = _index(bufsize)
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        data, rec = self._io(runtime.RT.ocall.recvfrom, (min(bufsize, MAX_DATA), flags), POLLIN, True)
        return data, py_address(rec, self._family, "recvfrom")

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        view = _writable(buffer, "recvfrom_into")
        if nbytes < 0:
            raise ValueError("negative buffersize in recvfrom_into")
        if nbytes == 0:
            nbytes = len(view)
        elif nbytes > len(view):
            raise ValueError("nbytes is greater than the length of the buffer")
        data, addr = self.recvfrom(nbytes, flags)
        view[:len(data)] = data
        return len(data), addr

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> tuple[bytes, list, int, Any]:
        bufsize = _index(bufsize)
        if bufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        if ancbufsize < 0:
            raise ValueError("invalid ancillary data buffer length")
        ancbufsize = _index(ancbufsize)
        data, anc, msg_flags, rec = self._io(runtime.RT.ocall.recvmsg, (
            min(bufsize, MAX_DATA), min(ancbufsize, MAX_ANCILLARY), _index(flags)), POLLIN, True)
        if len(anc) and not ancbufsize:
            raise _lie("recvmsg", "control messages for a call that asked for none")
        return data, _control_in(anc, flags), msg_flags, py_address(rec, self._family, "recvmsg")

    def recvmsg_into(self, buffers: Iterable[Any], ancbufsize: int = 0, flags: int = 0) -> tuple[int, list, int,
                                                                                                    Any]:
        views = [_writable(b, "recvmsg_into") for b in buffers]
        data, anc, msg_flags, addr = self.recvmsg(sum(len(v) for v in views), ancbufsize, flags)
        pos = 0
        for v in views:
            part = data[pos:pos + len(v)]
            v[:len(part)] = part
            pos += len(part)
        return len(data), anc, msg_flags, addr


socket.__module__ = "socket"  # repr() and error messages read as natively: <socket.socket fd=3, ...>

# -- ancillary data ------------------------------------------------------------------------------------------
# SCM_RIGHTS carries enclave fds in the program and host handles on the wire (calls.CMSG): a descriptor never
# crosses the boundary, only the name of an open file the host already holds for this enclave.

_NO_ADDRESS = (AF_UNSPEC, "", 0, 0, 0, b"")
_SCM_RIGHTS = (SOL_SOCKET, _socket.SCM_RIGHTS)
_INT = _array.array("i").itemsize


def _control_out(ancdata: Iterable[Any]) -> list[tuple[int, int, bytes]]:
    """sendmsg's (level, type, data) items for the wire: checked as CPython does, fds turned into handles."""
    rt = runtime.RT
    parsed = []
    for item in ancdata:  # every item's form first, as CPython checks them all before sending
        try:
            level, ctype, cdata = item
        except (TypeError, ValueError):
            raise TypeError("[sendmsg() ancillary data items]() argument must be sequence of length 3, not "
                            f"{type(item).__name__}") from None
        parsed.append((_index(level), _index(ctype), bytes(_flat(cdata))))
    items = []
    for level, ctype, cdata in parsed:
        if (level, ctype) not in ANCILLARY_SEND:
            raise Unsupported("sendmsg", f"control message level {level} type {ctype} is not served (descriptors, "
                                         "credentials, IP TTL/TOS and IPv6 hop limit/traffic class/packet info are)")
        if (level, ctype) == _SCM_RIGHTS:
            if len(cdata) % _INT:
                raise oserror(errno.EINVAL)
            cdata = _array.array("i", [rt.fds.get(fd).handle for fd in _array.array("i", cdata)]).tobytes()
        items.append((level, ctype, cdata))
    return items


def _kind(mode: int) -> str:
    return ("socket" if _stat.S_ISSOCK(mode) else "pipe" if _stat.S_ISFIFO(mode)
            else "dir" if _stat.S_ISDIR(mode) else "file")


def _control_in(anc: list[tuple[int, int, bytes]], flags: int) -> list[tuple[int, int, bytes]]:
    """recvmsg's control messages for the program: the handles of SCM_RIGHTS become new enclave fds."""
    rt = runtime.RT
    out = []
    for level, type, cdata in anc:
        if (level, type) == _SCM_RIGHTS:
            whole = len(cdata) - len(cdata) % _INT
            handles = list(_array.array("i", cdata[:whole]))
            problem = rt.client.plausible.fresh_handles(handles)
            if problem:
                raise _lie("recvmsg", problem)
            fds = []
            for h in handles:
                kind = _kind(rt.ocall.fstat(h)[0])
                fds.append(rt.fds.add(OpenFile(h, kind), cloexec=bool(flags & _socket.MSG_CMSG_CLOEXEC)))
            cdata = _array.array("i", fds).tobytes() + cdata[whole:]
        out.append((level, type, cdata))
    return out


def _check_supported(family: int, type: int) -> None:
    if family not in SOCKET_FAMILIES and _name("AF_", family) != str(family):
        raise Unsupported("socket", f"address family {_name('AF_', family)} is outside the subset "
                                    "(AF_INET, AF_INET6, AF_UNIX)")
    base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
    if base in (_socket.SOCK_RAW, _socket.SOCK_RDM):
        raise Unsupported("socket", f"socket type {_name('SOCK_', base)} is outside the subset")


def _check_option(call: str, level: int, optname: int) -> None:
    if (level, optname) not in SOCKOPTS:
        raise Unsupported(call, f"socket option level {level} option {optname} is not served")


def socketpair(family: int | None = None, type: int = SOCK_STREAM, proto: int = 0) -> tuple[socket, socket]:
    if family is None:
        family = AF_UNIX
    _check_supported(family, type)
    rt = runtime.RT
    h1, h2 = rt.ocall.socketpair(family, type, proto)
    fd1 = rt.fds.add(OpenFile(h1, "socket"), cloexec=True)
    fd2 = rt.fds.add(OpenFile(h2, "socket"), cloexec=True)
    return socket(family, type, proto, fd1), socket(family, type, proto, fd2)


def _raw_socketpair(family: int = AF_UNIX, type: int = SOCK_STREAM, proto: int = 0) -> tuple[socket, socket]:
    """_socket.socketpair (for code that calls the C function directly)."""
    return socketpair(family, type, proto)


def close(fd: int) -> None:
    files.close(_index(fd))


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
