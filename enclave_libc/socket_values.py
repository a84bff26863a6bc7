"""The values a program hands the enclave's sockets, and the ones the host answers, converted and checked.

A Python address becomes the numeric SOCKADDR record of the wire (`sockaddr`, as CPython's `getsockaddrarg`,
with the same errors), resolving a host name through the getaddrinfo ocall, so the address that leaves the
enclave, and that the policy checks on both sides, is always numeric; a SOCKADDR the host answers becomes a
Python address only once it is plausible (`py_address`).  Integers and buffers are taken as the C module takes
them.  Both the socket object (enclave_libc/socket_object.py) and the module-level calls (enclave_libc/sockets.py)
build on these, which is why they live below both.
"""

from __future__ import annotations

import _socket
import errno
import os as _os
from typing import Any

from ocall_bridge import originals

from . import runtime
from .errors import HostViolation

_inet_pton, _inet_ntop = originals.get("_socket", "inet_pton"), originals.get("_socket", "inet_ntop")
_fsencode, _fsdecode = _os.fsencode, _os.fsdecode
gaierror = _socket.gaierror

AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC = _socket.AF_INET, _socket.AF_INET6, _socket.AF_UNIX, _socket.AF_UNSPEC
SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = _socket.SOCK_STREAM, _socket.SOCK_DGRAM, _socket.SOCK_SEQPACKET
SOCK_NONBLOCK, SOCK_CLOEXEC = _socket.SOCK_NONBLOCK, _socket.SOCK_CLOEXEC
SOL_SOCKET = _socket.SOL_SOCKET

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


def _flat(data: Any) -> memoryview:
    """A bytes-like argument as one flat run of bytes (what the C module's `y*` conversion accepts)."""
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None
    if view.format != "B" or view.ndim != 1 or not view.c_contiguous:
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    return view


def _writable(buffer: Any, call: str) -> memoryview:
    """A buffer the call fills in (`w*`), refused with CPython's words when it is read-only."""
    try:
        view = memoryview(buffer)
    except TypeError:
        view = None
    if view is None or view.readonly:
        raise TypeError(f"{call}() argument 1 must be read-write bytes-like object, not {type(buffer).__name__}")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _receiving(buffer: Any, nbytes: int, call: str, too_small: str) -> tuple[memoryview, int]:
    """The buffer a recv*_into call fills and how many bytes it may ask for (0: the whole buffer), refused with
    the call's own words (CPython words recv_into's and recvfrom_into's "too small" differently)."""
    view = _writable(buffer, call)
    if nbytes < 0:
        raise ValueError(f"negative buffersize in {call}")
    if nbytes == 0:
        return view, len(view)
    if nbytes > len(view):
        raise ValueError(too_small)
    return view, nbytes


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
