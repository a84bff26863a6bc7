"""`socket.socket` inside the enclave: the socket object over an enclave fd.

`socket.socket` becomes `socket` below: a subclass of Python's own class (so `isinstance` against any reference
a program or library captured keeps working, and `makefile`, `accept`, `dup`, `sendfile`, `__repr__` and the
context manager are CPython's code), whose every C-level method is replaced by one over an enclave fd.  The C
part of the object is never initialised: it holds no descriptor, so nothing can reach the host's sockets by
going around the enclave.

Blocking, non-blocking and timeout modes follow CPython's `sock_call`: the host descriptor is O_NONBLOCK
whenever the socket has a timeout (0 or more), a call that would block answers EAGAIN, and the enclave waits
for readiness with the `poll` ocall on that one handle until the deadline, then raises `TimeoutError("timed
out")`.  A blocking socket makes one blocking ocall, which on the process backend blocks only its own thread.

Addresses are converted in enclave_libc/socket_values.py and control messages in enclave_libc/ancillary.py; the
module-level calls (getaddrinfo, socketpair, ...) and the interposition table are enclave_libc/sockets.py.
"""

from __future__ import annotations

import _socket
import errno
import math
import os as _os
import socket as _pysocket
import sys
import time as _time
import weakref
from collections.abc import Iterable
from typing import Any, overload

from ocall_bridge.calls import uses
from ocall_bridge.records import MAX_ANCILLARY, SOCKET_FAMILIES, SOCKOPTS
from ocall_bridge.types import MAX_DATA

from . import runtime
from .ancillary import _NO_ADDRESS, _control_in, _control_out
from .errors import HostGone, HostViolation, PolicyDenied, Unsupported, oserror
from .fdtable import OpenFile
from .socket_values import (
    AF_INET,
    AF_UNIX,
    SOCK_CLOEXEC,
    SOCK_NONBLOCK,
    SOCK_SEQPACKET,
    SOCK_STREAM,
    SOL_SOCKET,
    _flat,
    _index,
    _lie,
    _receiving,
    _writable,
    py_address,
    sockaddr,
)

# Captured before interposition: the originals this module replaces or builds on.
_BaseSocket = _pysocket.socket
_monotonic = _time.monotonic  # a local clock read for deadlines (the vDSO, no ocall)
_fsencode, _fsdecode = _os.fsencode, _os.fsdecode
_intenum = _pysocket._intenum_converter  # type: ignore[attr-defined]  # socket.py's private helper, no stub
AddressFamily = _pysocket.AddressFamily
SocketKind = _pysocket.SocketKind

POLLIN, POLLOUT, POLLNVAL = 0x001, 0x004, 0x020
_STREAMS = (SOCK_STREAM, SOCK_SEQPACKET)

_KIND = "socket"  # the fd table's kind (fdtable.OpenFile.kind) of every socket

# AF_UNIX names as the program gave them: the host binds the absolute path (the enclave has its own cwd, and the
# policy judges absolute paths), but getsockname() answers what was bound, as natively.
_UNIX_NAMES: weakref.WeakKeyDictionary[OpenFile, tuple[bytes, bytes]] = weakref.WeakKeyDictionary()


def _name(table: str, value: int) -> str:
    for n in dir(_socket):
        if n.startswith(table) and getattr(_socket, n) == value:
            return n
    return str(value)


# What socket() and socketpair() refuse (the support table's words; `uses(partial=...)`).
OUTSIDE_SUBSET = "address families other than AF_INET, AF_INET6 and AF_UNIX; SOCK_RAW and SOCK_RDM"


def _check_supported(call: str, family: int, type: int) -> None:
    if family not in SOCKET_FAMILIES and _name("AF_", family) != str(family):
        raise Unsupported(call, f"address family {_name('AF_', family)} is outside the subset "
                                    "(AF_INET, AF_INET6, AF_UNIX)")
    base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
    if base in (_socket.SOCK_RAW, _socket.SOCK_RDM):
        raise Unsupported(call, f"socket type {_name('SOCK_', base)} is outside the subset")


def _check_option(call: str, level: int, optname: int) -> None:
    if (level, optname) not in SOCKOPTS:
        raise Unsupported(call, f"socket option level {level} option {optname} is not served")


@uses()
def getdefaulttimeout() -> float | None:
    return runtime.RT.extra.get("sockets.default_timeout")


@uses()
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


def _adopt(handle: int) -> int:
    """A new enclave fd for a socket handle the host just made.  Sockets are never inheritable (PEP 446), and
    nothing is ever exec'ed inside anyway."""
    return runtime.RT.fds.add(OpenFile(handle, _KIND), cloexec=True)


# -- the socket class --------------------------------------------------------------------------------------


@uses("socket", "bind", "listen", "accept", "connect", "shutdown", "getsockname", "getpeername", "getsockopt",
      "setsockopt", "send", "sendto", "sendmsg", "recv", "recvfrom", "recvmsg", "setfl", "poll", "close", "fstat",
      "getaddrinfo",
      partial=f"{OUTSIDE_SUBSET}; socket options and control messages outside the table; setsockopt's (None, "
              "optlen) form and sendmsg_afalg (AF_ALG)")
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
            _check_supported("socket", family, type)
            self._fd = _adopt(rt.ocall.socket(family, type, proto))
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
        of = OpenFile(handle, _KIND)
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
        view, nbytes = _receiving(buffer, nbytes, "recv_into", "buffer too small for requested bytes")
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
        view, nbytes = _receiving(buffer, nbytes, "recvfrom_into",
                                  "nbytes is greater than the length of the buffer")
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
