"""TLS that terminates inside the enclave: `ssl` driven through memory BIOs over the enclave's own sockets.

Natively `SSLContext.wrap_socket` hands OpenSSL the socket's descriptor and OpenSSL reads and writes it by
itself.  Inside the enclave that descriptor is an enclave fd, which means nothing to OpenSSL (the handshake read
fd -1 and failed with EBADF), and even if it were a host descriptor the traffic would bypass the boundary.  So
here OpenSSL never sees a descriptor at all:

* `ssl.SSLContext.sslsocket_class` becomes `SSLSocket` below, a subclass of both `ssl.SSLSocket` (every method a
  program calls - recv, send, sendall, makefile, sendfile's send fallback, unwrap, getpeercert, cipher, version,
  selected_alpn_protocol... - is CPython's own code) and the enclave's `socket` (so the plain socket underneath
  is an enclave fd, and every byte goes through the `sockets` ocalls, visible to --trace and --inject).
* `SSLContext._wrap_socket`, the one place where `ssl.py` hands a socket to OpenSSL, answers for an enclave
  socket with `Channel`: an object with the interface of the C `_ssl._SSLSocket` (read, write, do_handshake,
  shutdown, pending, getpeercert, ...) built on `SSLContext._wrap_bio` and two `ssl.MemoryBIO`s.  When OpenSSL
  wants to read, Channel receives ciphertext with the enclave's recv and feeds it in; whatever OpenSSL wrote to
  the outgoing BIO is sent with the enclave's send.  Only ciphertext leaves the enclave.
* Certificate, key, CA and DH-parameter files are read with the enclave's own file calls, under the policy (a
  denied file is PolicyDenied naming the flag that would allow it; a missing one is the FileNotFoundError OpenSSL
  raises natively), and the bytes are given to OpenSSL through an anonymous memory file (see `_MemoryFile`).

asyncio's TLS (`loop.create_connection(ssl=...)`, `start_server(ssl=...)`) already drives `SSLObject` over its
transports, which are enclave sockets, so it needs nothing here.

Modes follow the C module: a blocking socket blocks; under a timeout each socket wait gets the timeout and a
wait that expires raises TimeoutError("The read/write/handshake operation timed out"); a non-blocking socket
raises SSLWantReadError / SSLWantWriteError.  Ciphertext is received one TLS record at a time (the 5-byte header
first, then exactly the record), so nothing the kernel holds is pulled into the enclave ahead of need and a
`select`/`poll` on the fd means what it means natively (OpenSSL's own socket BIO reads without read-ahead too).
"""

from __future__ import annotations

import errno
import os as _os
import re
import ssl as _ssl
from _ssl import _SSLContext
from typing import Any

from ocall_bridge.calls import uses

from . import io as eio
from . import runtime
from . import sockets as esock
from .errors import PolicyDenied, Unsupported

# Captured before interposition: the real memory-file calls and OpenSSL's own loaders.
_memfd_create, _os_write, _os_close = getattr(_os, "memfd_create", None), _os.write, _os.close
# The C class ssl.SSLContext derives from (ssl._ssl._SSLContext); Any: the private methods captured below
# (_wrap_socket, _wrap_bio, the keylog descriptor) are not in typeshed's _ssl.
_C: Any = _SSLContext
_orig_wrap_socket = _C._wrap_socket
_orig_wrap_bio = _C._wrap_bio
_orig_load_cert_chain = _C.load_cert_chain
_orig_load_verify_locations = _C.load_verify_locations
_orig_load_dh_params = _C.load_dh_params
_orig_keylog = _C.keylog_filename
MemoryBIO = _ssl.MemoryBIO
SSLWantReadError, SSLWantWriteError = _ssl.SSLWantReadError, _ssl.SSLWantWriteError
_HEADER = 5  # TLS record header: type, version (2), length (2)
_MAX_RECORD = 16384 + 2048  # the largest record TLS 1.2 allows (plaintext + expansion)
# The enclave socket's own send/recv, called on an SSLSocket's plain side (SSLSocket overrides them with TLS).
_plain_send, _plain_sendall, _plain_recv = esock.socket.send, esock.socket.sendall, esock.socket.recv
# The operations named in TimeoutError and SSLWant*Error messages, as the C module names them.
# What the certificate loaders refuse (only where memfd_create is missing: the bytes never go through a host file).
_NO_MEMFD = "on a system without memfd_create"
_READ, _WRITE, _HANDSHAKE = "read", "write", "handshake"
_HASHED = re.compile(r"^[0-9a-f]{8}\.r?[0-9]+$")  # c_rehash names in a capath folder


def _inside() -> bool:
    return runtime.active()


# -- reading files through the enclave ----------------------------------------------------------------------


def _read(path: Any) -> bytes:
    """The bytes of `path`, read through the enclave's open/read (policy-checked, traced).

    Errors read as OpenSSL's do natively: a missing file is `FileNotFoundError(2, 'No such file or directory')`
    without a filename; a denial stays PolicyDenied, whose message names the flag that would allow it.
    """
    try:
        with eio.open(path, "rb") as f:
            return f.read()
    except (PolicyDenied, Unsupported):
        raise
    except OSError as exc:
        if exc.errno is None:
            raise
        raise OSError(exc.errno, _os.strerror(exc.errno)) from None


class _MemoryFile:
    """An anonymous in-memory file holding bytes the enclave read, named `/proc/self/fd/N` for OpenSSL.

    Why this route: `load_cert_chain` and `load_dh_params` accept only a path, and `load_verify_locations`'
    `cadata` parses less than a CA file may hold (CRLs, "TRUSTED CERTIFICATE" blocks).  Giving OpenSSL the very
    bytes the enclave read, through a file it opens by name, keeps every native behaviour - password callbacks
    for encrypted keys, error codes, what `cert_store_stats` counts - while the only file access that reaches
    the host is the enclave's policy-checked read.  A memfd (memfd_create(2)) lives in this process's memory:
    nothing is written to the host's disk and no name appears in any host folder; it is closed as soon as
    OpenSSL has parsed it.  (On the sim backend the host shares the process, and on the process backend the
    simulated host runs as the same user, so either could read enclave memory anyway; in a hardware enclave
    this would be a trusted in-enclave buffer.)  Without memfd_create the call is refused (ENOSYS) rather than
    falling back to a host file.
    """

    def __init__(self, data: bytes, call: str) -> None:
        if _memfd_create is None:
            raise Unsupported(call, "this system has no memfd_create to hand OpenSSL the file's bytes")
        self.fd = _memfd_create("posix_shim-tls", getattr(_os, "MFD_CLOEXEC", 1))
        try:
            view = memoryview(data)
            while view:
                view = view[_os_write(self.fd, view):]
        except BaseException:
            _os_close(self.fd)
            raise
        self.path = f"/proc/self/fd/{self.fd}"

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: object) -> None:
        _os_close(self.fd)


def load_cert_chain_from_memory(ctx: Any, chain_pem: bytes) -> None:
    """A certificate chain and key the caller holds in memory (RA-TLS makes its own), handed to OpenSSL through
    a memory file: never through the host's disk, and never named to the enclave's file calls (inside an
    enclave those would ask the policy about a /proc path the program never chose)."""
    with _MemoryFile(chain_pem, "load_cert_chain") as path:
        _orig_load_cert_chain(ctx, path, None, None)


@uses("open", "fstat", "isatty", "lseek", "read", "pread", "write", "pwrite", "ftruncate", "close", partial=_NO_MEMFD)
def load_cert_chain(self: Any, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
    if not _inside():
        return _orig_load_cert_chain(self, certfile, keyfile, password)
    cert = _read(certfile)
    key = _read(keyfile) if keyfile is not None else None
    with _MemoryFile(cert, "load_cert_chain") as cert_path:
        if key is None:
            return _orig_load_cert_chain(self, cert_path, None, password)
        with _MemoryFile(key, "load_cert_chain") as key_path:
            return _orig_load_cert_chain(self, cert_path, key_path, password)


@uses("open", "fstat", "isatty", "lseek", "read", "pread", "write", "pwrite", "ftruncate", "close", partial=_NO_MEMFD)
def load_verify_locations(self: Any, cafile: Any = None, capath: Any = None, cadata: Any = None) -> None:
    if not _inside():
        return _orig_load_verify_locations(self, cafile, capath, cadata)
    if cafile is None and capath is None and cadata is None:
        raise TypeError("cafile, capath and cadata cannot be all omitted")
    if cafile is not None:
        with _MemoryFile(_read(cafile), "load_verify_locations") as path:
            _orig_load_verify_locations(self, path, None, None)
    if capath is not None:
        _load_capath(self, capath)
    if cadata is not None:
        _orig_load_verify_locations(self, None, None, cadata)


def _load_capath(self: Any, capath: Any) -> None:
    """A c_rehash folder, read through the enclave: every hash-named file is loaded now.

    Natively OpenSSL looks certificates up in the folder lazily, at verification time, so `get_ca_certs()`
    lists them only once used; here they are all loaded at once (the folder cannot be reached later without
    the enclave).  A file OpenSSL cannot parse is skipped, as the lazy lookup skips it.
    """
    from . import dirs

    try:
        names = dirs.listdir(capath)
        names.sort()
    except FileNotFoundError:
        # What OpenSSL answers natively for a missing capath with nothing else to load.
        raise _ssl.SSLError(136, "[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found") from None
    base = _os.fsencode(capath) if not isinstance(capath, bytes) else capath
    for name in names:
        text = name if isinstance(name, str) else _os.fsdecode(name)
        if not _HASHED.match(text):
            continue
        try:
            data = _read(base + b"/" + _os.fsencode(text))
            with _MemoryFile(data, "load_verify_locations") as path:
                _orig_load_verify_locations(self, path, None, None)
        except (_ssl.SSLError, IsADirectoryError, FileNotFoundError):
            continue


@uses("open", "fstat", "isatty", "lseek", "read", "pread", "write", "pwrite", "ftruncate", "close", partial=_NO_MEMFD)
def load_dh_params(self: Any, path: Any) -> None:
    if not _inside():
        return _orig_load_dh_params(self, path)
    try:
        data = _read(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, _os.strerror(errno.ENOENT), path) from None  # as natively
    with _MemoryFile(data, "load_dh_params") as mem:
        return _orig_load_dh_params(self, mem)


@uses("open", "fstat", "isatty", "lseek", "read", "pread", "write", "pwrite", "ftruncate", "close", partial=_NO_MEMFD)
def set_default_verify_paths(self: Any) -> None:
    """The system CA bundle and folder, read through the enclave.

    Only what the policy lets the enclave read is loaded (a denied or missing default path is skipped, as
    OpenSSL skips a missing one natively): the CAs a program trusts by default are then a choice of the policy,
    not of whatever the host puts in /etc/ssl.  SSL_CERT_FILE / SSL_CERT_DIR are read from the enclave's own
    environment.
    """
    if not _inside():
        return _C.set_default_verify_paths(self)
    paths = _ssl.get_default_verify_paths()
    env = _os.environ
    cafile = env.get(paths.openssl_cafile_env) or paths.openssl_cafile
    capath = env.get(paths.openssl_capath_env) or paths.openssl_capath
    if cafile:
        try:
            load_verify_locations(self, cafile=cafile)
        except PolicyDenied as exc:
            _warn_once(f"posix_shim: the system CA bundle is not loaded inside the enclave: {exc.reason}; "
                       "certificates signed by public CAs will not verify")
        except (OSError, _ssl.SSLError):
            pass
    if capath:
        for folder in capath.split(":"):
            try:
                _load_capath(self, folder)
            except (PolicyDenied, OSError, _ssl.SSLError):
                pass


def _warn_once(message: str) -> None:
    """One line on the program's stderr per enclave: a silent empty trust store is a puzzling failure later."""
    rt = runtime.RT
    if not rt or rt.extra.get("tls.warned"):
        return
    rt.extra["tls.warned"] = True
    import sys

    try:
        print(message, file=sys.stderr)
    except (OSError, ValueError):
        pass


@uses()
def _keylog_get(self: Any) -> Any:
    return _orig_keylog.__get__(self)


@uses(partial="a key log file inside the enclave: OpenSSL would write TLS secrets to a host file")
def _keylog_set(self: Any, value: Any) -> None:
    """OpenSSL would append session secrets to a host file by itself, around the policy: refused inside."""
    if value is not None and _inside():
        raise Unsupported("SSLContext.keylog_filename", "OpenSSL would write TLS secrets to a host file by itself")
    _orig_keylog.__set__(self, value)


# -- the TLS channel -----------------------------------------------------------------------------------------


def _through(name: str) -> property:
    """An attribute of the wrapped `_ssl` object, read and set through the Channel that stands for it."""

    def get(self: Channel) -> Any:
        return getattr(self._obj, name)

    def set_(self: Channel, value: Any) -> None:
        setattr(self._obj, name, value)

    return property(get, set_)


class Channel:
    """Stands where `_ssl._SSLSocket` would, as an `ssl.SSLSocket`'s `_sslobj`, over memory BIOs.

    `owner` is the SSLSocket (callbacks such as the SNI callback receive it, as natively); its plain-socket
    methods (the enclave's) carry the ciphertext.
    """

    def __init__(self, context: Any, sock: Any, server_side: bool, server_hostname: Any, owner: Any,
                 session: Any) -> None:
        self._sock = sock
        self._in = MemoryBIO()
        self._out = MemoryBIO()
        self._obj = _orig_wrap_bio(context, self._in, self._out, server_side, server_hostname,
                                   owner=owner if owner is not None else sock, session=session)
        self._pending = b""  # ciphertext OpenSSL produced that a non-blocking socket could not take yet
        self._header = b""  # the part of the next record's header received so far
        self._body = 0  # bytes of the current record still to receive

    # -- attributes of _ssl._SSLSocket --------------------------------------------------------------------
    # Settable, so not left to __getattr__: ssl.py assigns them (a new context for SNI, a session to resume,
    # the owner once the SSLSocket exists) and they must land on the SSLObject that OpenSSL drives.
    context = _through("context")
    session = _through("session")
    owner = _through("owner")

    def __getattr__(self, name: str) -> Any:  # getpeercert, cipher, version, selected_alpn_protocol, ...
        if name == "_obj":  # not set yet: __init__ failed before wrapping
            raise AttributeError(name)
        return getattr(self._obj, name)

    # -- moving ciphertext --------------------------------------------------------------------------------
    def _flush(self, what: str, nonblocking: bool) -> bool:
        """Send what OpenSSL wrote; True once nothing is left.  A non-blocking socket keeps the rest."""
        data = self._pending + self._out.read()
        self._pending = b""
        if not data:
            return True
        sock = self._sock
        if not nonblocking:
            try:
                _plain_sendall(sock, data)
            except TimeoutError:
                raise TimeoutError(f"The {what} operation timed out") from None
            return True
        view = memoryview(data)
        while view:
            try:
                n = _plain_send(sock, view)
            except BlockingIOError:
                self._pending = bytes(view)
                return False
            view = view[n:]
        return True

    def _fill(self, what: str) -> None:
        """Receive the next piece of the current TLS record into the incoming BIO (EOF is passed on too)."""
        if self._body:
            want = min(self._body, _MAX_RECORD)
        else:
            want = _HEADER - len(self._header)
        try:
            data = _plain_recv(self._sock, want)
        except TimeoutError:
            raise TimeoutError(f"The {what} operation timed out") from None
        if not data:
            self._in.write_eof()
            return
        if self._body:
            self._body -= len(data)
        else:
            self._header += data
            if len(self._header) == _HEADER:
                self._body = int.from_bytes(self._header[3:5], "big")
                self._header = b""
        self._in.write(data)

    def _run(self, what: str, op: Any, *args: Any) -> Any:
        nonblocking = self._sock.gettimeout() == 0.0
        if self._pending and not self._flush(what, nonblocking) and what == _WRITE:
            raise SSLWantWriteError(3, "The operation did not complete (write)")
        while True:
            try:
                result = op(*args)
            except SSLWantReadError:
                if not self._flush(what, nonblocking) and nonblocking:
                    raise SSLWantWriteError(3, "The operation did not complete (write)") from None
                if self._in.eof:
                    raise
                try:
                    self._fill(what)
                except BlockingIOError:
                    raise SSLWantReadError(2, "The operation did not complete (read)") from None
                continue
            except SSLWantWriteError:
                if not self._flush(what, nonblocking) and nonblocking:
                    raise
                continue
            except _ssl.SSLError:
                try:  # an alert OpenSSL queued for the peer still goes out, as natively
                    self._flush(what, nonblocking)
                except OSError:
                    pass
                raise
            self._flush(what, nonblocking)
            return result

    # -- the operations ssl.SSLSocket calls ---------------------------------------------------------------
    def do_handshake(self) -> None:
        self._run(_HANDSHAKE, self._obj.do_handshake)

    def read(self, length: int = 1024, buffer: Any = None) -> Any:
        if buffer is None:
            return self._run(_READ, self._obj.read, length)
        return self._run(_READ, self._obj.read, length, buffer)

    def write(self, data: Any) -> int:
        if self._sock.gettimeout() == 0.0:
            # Non-blocking: one record at a time, so at most one record's ciphertext waits in `_pending`, and the
            # count returned is what was really committed to the socket (a partial send, as send(2) allows).
            view = memoryview(data).cast("B")
            done = 0
            while done < len(view):
                chunk = view[done:done + 16384]
                try:
                    n = self._run(_WRITE, self._obj.write, chunk)
                except SSLWantWriteError:
                    if done:
                        return done
                    raise
                done += n
                if self._pending:
                    return done
            return done
        return self._run(_WRITE, self._obj.write, data)

    def shutdown(self) -> Any:
        """unwrap(): close_notify both ways; returns the socket, as the C shutdown does for a socket."""
        self._run(_READ, self._obj.shutdown)
        return self._sock

    def verify_client_post_handshake(self) -> None:
        self._run(_WRITE, self._obj.verify_client_post_handshake)


# Deliberate: CPython's SSLSocket code over the enclave's socket; typeshed's two bases disagree on the signatures
# of recvmsg/recvmsg_into/sendmsg, which SSLSocket refuses at run time anyway.
@uses()  # its own code: none (the rows of the plain socket beneath are declared on enclave_libc.socket_object.socket)
class SSLSocket(_ssl.SSLSocket, esock.socket):  # type: ignore[misc]
    """ssl.SSLSocket over an enclave socket: CPython's SSL socket code, the enclave's plain socket beneath."""


SSLSocket.__module__ = "ssl"
SSLSocket.__qualname__ = SSLSocket.__name__ = "SSLSocket"


@uses("send", "recv")
def _wrap_socket(self: Any, sock: Any, server_side: bool, server_hostname: Any = None, *, owner: Any = None,
                 session: Any = None) -> Any:
    if isinstance(sock, esock.socket):
        return Channel(self, sock, server_side, server_hostname, owner, session)
    return _orig_wrap_socket(self, sock, server_side, server_hostname, owner=owner, session=session)


_CLASS_SWAPS: dict[str, Any] = {
    "sslsocket_class": SSLSocket,
    "_wrap_socket": _wrap_socket,
    "load_cert_chain": load_cert_chain,
    "load_verify_locations": load_verify_locations,
    "load_dh_params": load_dh_params,
    "set_default_verify_paths": set_default_verify_paths,
    "keylog_filename": property(_keylog_get, _keylog_set),
}


def swap() -> Any:
    """Install the class attributes above on ssl.SSLContext; returns the undo.

    They are class attributes (the interposer's identity replacement only reaches module globals), set on the
    Python subclass so that the C `_SSLContext` itself is untouched and the undo is exact.
    """
    cls = _ssl.SSLContext
    _missing = object()
    saved = {name: cls.__dict__.get(name, _missing) for name in _CLASS_SWAPS}
    for name, value in _CLASS_SWAPS.items():
        setattr(cls, name, value)

    def undo() -> None:
        for name, value in saved.items():
            if value is _missing:
                try:
                    delattr(cls, name)
                except AttributeError:
                    pass
            else:
                setattr(cls, name, value)

    return undo


PATCHES: dict[Any, Any] = {}

__all__ = ["Channel", "SSLSocket", "swap", "PATCHES"]
