"""RA-TLS: TLS whose certificates carry attestation, so a peer knows *which enclave* it talks to.

As in Gramine's RA-TLS: each side makes a fresh key pair, asks for a quote whose user data is SHA-256 of the
certificate's public key (SubjectPublicKeyInfo, DER), and puts the quote into its certificate as a non-critical
X.509 extension (OID `QUOTE_OID`).  The peer verifies the quote (platform key, expected measurement/signer) and
the binding (the quote names *this* certificate's key, so a quote copied into another certificate fails).

The contexts are ordinary `ssl.SSLContext`s (subclasses), usable with plain sockets, `http.client`/`urllib`
and asyncio.  The attestation check runs inside `do_handshake` of the socket and SSL-object classes these
contexts create, so no caller can forget it: a handshake with the wrong enclave raises `RATLSError` (an
`ssl.SSLCertVerificationError`) naming the expected and the actual measurement.

OpenSSL's own chain check needs an issuer it trusts, and Python's ssl has no verify callback, so every RA-TLS
certificate is issued by one fixed *public* root (`ROOT`: its private key is derived from a published string).
Anyone can make a certificate under it: it carries no trust at all.  All trust comes from the quote.

The quote comes from a `QuoteGenerator`: inside an enclave the platform's (`attestation.report`); in an
ordinary process one must be given (for tests, `attestation.PlatformQuoteGenerator`).  Verification needs only
the platform's public key, so a verifier can be any Python process.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from enclave_libc.tls import load_cert_chain_from_memory

from . import attestation

# A private-enterprise-style arc for the posix_shim quote extension (Gramine uses 1.2.840.113741.1.13.1 for SGX).
QUOTE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.59999.7.1")
_ROOT_SEED = hashlib.sha256(b"posix_shim RA-TLS public root: carries no trust, the quote does").digest()
_ROOT_KEY = Ed25519PrivateKey.from_private_bytes(_ROOT_SEED)
_ROOT_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "posix_shim RA-TLS public root")])
_PEM = serialization.Encoding.PEM
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _root_cert() -> x509.Certificate:
    """The same certificate in every process: fixed key, fields and dates; Ed25519 signs deterministically."""
    return (x509.CertificateBuilder().subject_name(_ROOT_NAME).issuer_name(_ROOT_NAME)
            .public_key(_ROOT_KEY.public_key()).serial_number(1)
            .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
            .not_valid_after(datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(_ROOT_KEY, None))


ROOT = _root_cert()
ROOT_PEM = ROOT.public_bytes(_PEM).decode()


class RATLSError(ssl.SSLCertVerificationError):
    """The peer's certificate does not prove the expected enclave (the message says what differs)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.verify_message = message

    def __str__(self) -> str:
        return self.verify_message


def key_binding(public_key: Any) -> bytes:
    """The user data a certificate's quote must carry: SHA-256 of its SubjectPublicKeyInfo (DER)."""
    return hashlib.sha256(public_key.public_bytes(*_SPKI)).digest()


def make_certificate(generator: attestation.QuoteGenerator | None = None, *,
                     common_name: str = "posix_shim enclave") -> tuple[bytes, bytes, bytes]:
    """(certificate PEM, private key PEM, quote): a fresh P-256 key and a certificate carrying its quote."""
    generator = generator or attestation.default_generator()
    key = ec.generate_private_key(ec.SECP256R1())
    quote = generator.generate(key_binding(key.public_key()))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(_ROOT_NAME).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.UnrecognizedExtension(QUOTE_OID, quote), critical=False)
            .sign(_ROOT_KEY, None))
    key_pem = key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(_PEM), key_pem, quote


def verify_certificate(der: bytes, *, platform_keys: Any, measurement: bytes | str | None = None,
                       signer: bytes | str | None = None, allow_debug: bool = True) -> attestation.QuoteFields:
    """Check a peer certificate (DER): its quote, the quote's binding to the certificate's key, the identity."""
    try:
        cert = x509.load_der_x509_certificate(der)
        ext = cert.extensions.get_extension_for_oid(QUOTE_OID).value
    except x509.ExtensionNotFound:
        raise RATLSError("the peer's certificate carries no quote: not an RA-TLS peer") from None
    except ValueError as exc:
        raise RATLSError(f"the peer's certificate cannot be read: {exc}") from None
    # A private OID: cryptography never parses it, so it is always handed over as raw bytes.
    assert isinstance(ext, x509.UnrecognizedExtension)
    quote = ext.value
    try:
        return attestation.verify(quote, platform_keys=platform_keys, measurement=measurement, signer=signer,
                                  user_data=key_binding(cert.public_key()), allow_debug=allow_debug)
    except attestation.QuoteError as exc:
        if exc.reason == "user_data":
            raise RATLSError("the peer's quote is not bound to its certificate's key (a quote copied from another "
                             "certificate)") from None
        raise RATLSError(f"peer enclave refused: {exc}") from None


# -- contexts --------------------------------------------------------------------------------------------

def _check_peer(conn: Any) -> None:
    context = conn.context
    expect = getattr(context, "ratls_expect", None)
    if expect is None:  # a server that does not ask its clients for attestation
        return
    der = conn.getpeercert(binary_form=True)
    if der is None:
        raise RATLSError("the peer presented no certificate")
    conn.ratls_peer = verify_certificate(der, **expect)


class _Socket(ssl.SSLSocket):
    ratls_peer: attestation.QuoteFields | None = None

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        _check_peer(self)


class _Object(ssl.SSLObject):
    ratls_peer: attestation.QuoteFields | None = None

    def do_handshake(self) -> None:
        super().do_handshake()
        _check_peer(self)


class RATLSContext(ssl.SSLContext):
    """An SSLContext whose connections check the peer's attestation inside the handshake."""

    sslsocket_class = _Socket
    sslobject_class = _Object
    ratls_expect: dict[str, Any] | None = None
    ratls_quote: bytes = b""


def _load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """load_cert_chain from memory (enclave_libc.tls: an anonymous memory file of this process)."""
    load_cert_chain_from_memory(ctx, cert_pem + key_pem)


def _expect(platform_keys: Any, measurement: bytes | str | None, signer: bytes | str | None, expect_any: bool,
            allow_debug: bool) -> dict[str, Any]:
    if measurement is None and signer is None and not expect_any:
        raise ValueError("say which enclave to accept: expected_measurement and/or expected_signer (or "
                         "expect_any=True to accept every attested enclave)")
    if platform_keys is None:
        platform_keys = attestation.platform_public_key()
    return {"platform_keys": attestation.load_public_keys(platform_keys), "measurement": measurement,
            "signer": signer, "allow_debug": allow_debug}


def _context(protocol: int, generator: attestation.QuoteGenerator | None, with_cert: bool) -> RATLSContext:
    ctx = RATLSContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if with_cert:
        cert, key, quote = make_certificate(generator)
        _load_chain(ctx, cert, key)
        ctx.ratls_quote = quote
    return ctx


def server_context(generator: attestation.QuoteGenerator | None = None, *, mutual: bool = False,
                   expected_measurement: bytes | str | None = None, expected_signer: bytes | str | None = None,
                   platform_keys: Any = None, expect_any: bool = False, allow_debug: bool = True) -> RATLSContext:
    """A server context presenting this enclave's attested certificate.  mutual=True also requires an RA-TLS
    client certificate and checks it against the expected identity."""
    ctx = _context(ssl.PROTOCOL_TLS_SERVER, generator, True)
    if mutual:
        ctx.ratls_expect = _expect(platform_keys, expected_measurement, expected_signer, expect_any, allow_debug)
        ctx.load_verify_locations(cadata=ROOT_PEM)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(expected_measurement: bytes | str | None = None, expected_signer: bytes | str | None = None,
                   platform_keys: Any = None, *, generator: attestation.QuoteGenerator | None = None,
                   mutual: bool = False, expect_any: bool = False, allow_debug: bool = True) -> RATLSContext:
    """A client context that accepts only a server proving the expected enclave.  With mutual=True (or a
    generator), it presents this enclave's own attested certificate too."""
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, generator, mutual or generator is not None)
    ctx.ratls_expect = _expect(platform_keys, expected_measurement, expected_signer, expect_any, allow_debug)
    ctx.check_hostname = False  # the identity is the measurement, not a name
    ctx.load_verify_locations(cadata=ROOT_PEM)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def connect(address: tuple[str, int], timeout: float | None = 30, **expect: Any) -> ssl.SSLSocket:
    """A connected, attested TLS client socket (client_context(**expect)); RATLSError if it is the wrong peer."""
    ctx = client_context(**expect)
    sock = socket.create_connection(address, timeout=timeout)
    try:
        return ctx.wrap_socket(sock)
    except BaseException:
        sock.close()
        raise


class BIOStream:
    """TLS over any blocking socket-like object (send/recv), through `ssl.MemoryBIO`: the handshake, and so the
    attestation check, run in Python around the socket's own send and recv.

    Inside an enclave this is the way to speak RA-TLS over an enclave socket whatever the ssl module can reach
    (the socket's fileno is an enclave fd, which OpenSSL's own socket I/O cannot use); outside, it is ordinary
    TLS.  `context` must be an RA-TLS context (server_context / client_context).
    """

    def __init__(self, sock: Any, context: ssl.SSLContext, *, server_side: bool = False) -> None:
        self.sock = sock
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self._in, self._out, server_side=server_side)
        self._run(self.obj.do_handshake)

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.sock.sendall(data)

    def _run(self, fn: Any, *args: Any) -> Any:
        while True:
            try:
                result = fn(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if data:
                    self._in.write(data)
                else:
                    self._in.write_eof()
                continue
            except BaseException:
                try:
                    self._flush()  # the alert, if OpenSSL made one
                except OSError:
                    pass
                raise
            self._flush()
            return result

    @property
    def ratls_peer(self) -> attestation.QuoteFields | None:
        return getattr(self.obj, "ratls_peer", None)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._run(self.obj.write, view):]

    def recv(self, size: int = 65536) -> bytes:
        try:
            return self._run(self.obj.read, size)
        except ssl.SSLZeroReturnError:
            return b""

    def close(self) -> None:
        """Send close_notify (without waiting for the peer's) and close the socket."""
        try:
            try:
                self.obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            self._flush()
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.sock.close()

    def __enter__(self) -> BIOStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def peer(conn: Any) -> attestation.QuoteFields | None:
    """What the peer's verified quote says (None for an unverified client of a non-mutual server)."""
    return getattr(conn, "ratls_peer", None)


__all__ = ["BIOStream", "QUOTE_OID", "ROOT_PEM", "RATLSContext", "RATLSError", "client_context", "connect",
           "key_binding", "make_certificate", "peer", "server_context", "verify_certificate"]
