"""RA-TLS between ordinary processes and threads: plain sockets, mutual mode, http.client/urllib, asyncio, and
every refusal (wrong measurement or signer, unknown platform, a quote moved to another certificate, no quote),
each next to the control showing that without the check the connection would have gone through."""

from __future__ import annotations

import asyncio
import http.server
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cryptography")
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from posix_shim import attestation as A
from posix_shim import ratls

M_SERVER, M_CLIENT, M_OTHER = b"\x11" * 32, b"\x22" * 32, b"\x33" * 32
SIGNER = b"\x44" * 32


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "platform.pem")
    monkeypatch.setenv("POSIX_SHIM_PLATFORM_KEY", path)
    return path


def gen(measurement: bytes, key: str) -> A.PlatformQuoteGenerator:
    return A.PlatformQuoteGenerator(measurement=measurement, signer=SIGNER, key_path=key)


class Server:
    """A TLS server thread answering each connection with b"secret:" + what the client sent."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.errors: list[BaseException] = []
        self.peers: list[Any] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    self.peers.append(ratls.peer(tls))
                    tls.sendall(b"secret:" + tls.recv(100))
            except (OSError, ssl.SSLError) as exc:
                self.errors.append(exc)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not, on Linux)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def server(key: str) -> Iterator[Server]:
    s = Server(ratls.server_context(gen(M_SERVER, key), mutual=True, expected_measurement=M_CLIENT))
    yield s
    s.close()


def talk(sock: ssl.SSLSocket) -> bytes:
    with sock:
        sock.sendall(b"hi")
        return sock.recv(100)


def test_mutual_handshake_between_the_right_enclaves(server: Server, key: str) -> None:
    sock = ratls.connect(server.address, expected_measurement=M_SERVER, expected_signer=SIGNER,
                         generator=gen(M_CLIENT, key))
    assert ratls.peer(sock).measurement == M_SERVER
    assert talk(sock) == b"secret:hi"
    assert server.peers[-1].measurement == M_CLIENT and server.peers[-1].signer == SIGNER


def test_client_refuses_a_server_with_another_measurement(server: Server, key: str) -> None:
    with pytest.raises(ratls.RATLSError) as err:
        ratls.connect(server.address, expected_measurement=M_OTHER, generator=gen(M_CLIENT, key))
    assert f"expected {M_OTHER.hex()}, the quote has {M_SERVER.hex()}" in str(err.value)
    assert isinstance(err.value, ssl.SSLCertVerificationError)
    # Control: a plain TLS client that checks nothing gets the secret from the same server's port...
    plain = ssl.create_default_context()
    plain.check_hostname, plain.verify_mode = False, ssl.CERT_NONE
    # ... once it presents an attested client certificate the server wants (mutual mode).
    cert, pem, _ = ratls.make_certificate(gen(M_CLIENT, key))
    ratls._load_chain(plain, cert, pem)
    assert talk(plain.wrap_socket(socket.create_connection(server.address))) == b"secret:hi"


def test_client_refuses_wrong_signer(server: Server, key: str) -> None:
    with pytest.raises(ratls.RATLSError, match="wrong signer"):
        ratls.connect(server.address, expected_signer=b"\x55" * 32, generator=gen(M_CLIENT, key))


def test_server_refuses_a_client_with_another_measurement(server: Server, key: str) -> None:
    sock = ratls.connect(server.address, expected_measurement=M_SERVER, generator=gen(M_OTHER, key))
    with sock, pytest.raises((OSError, ssl.SSLError)):
        sock.sendall(b"hi")
        if not sock.recv(100):
            raise ConnectionResetError("closed by the server")
    server.thread.join(0.5)
    assert any(f"expected {M_CLIENT.hex()}, the quote has {M_OTHER.hex()}" in str(e) for e in server.errors)


def test_server_refuses_a_client_without_attestation(server: Server, key: str) -> None:
    bare = ratls.client_context(expected_measurement=M_SERVER)  # no client certificate at all
    with pytest.raises((OSError, ssl.SSLError)):
        talk(bare.wrap_socket(socket.create_connection(server.address)))


def test_unknown_platform_key(server: Server, key: str) -> None:
    stranger = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(ratls.RATLSError, match="unknown platform key"):
        ratls.connect(server.address, expected_measurement=M_SERVER, platform_keys=[stranger],
                      generator=gen(M_CLIENT, key))


def _cert(key: Any, quote: bytes | None) -> bytes:
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(ratls._ROOT_NAME).issuer_name(ratls._ROOT_NAME)
         .public_key(key.public_key()).serial_number(7).not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(hours=1)))
    if quote is not None:
        b = b.add_extension(x509.UnrecognizedExtension(ratls.QUOTE_OID, quote), critical=False)
    return b.sign(ratls._ROOT_KEY, None).public_bytes(serialization.Encoding.DER)


def test_a_quote_moved_to_another_certificate_is_refused(key: str) -> None:
    """An attacker copies a genuine enclave's quote into a certificate for a key of their own."""
    real_key = ec.generate_private_key(ec.SECP256R1())
    quote = gen(M_SERVER, key).generate(ratls.key_binding(real_key.public_key()))
    pub = A.platform_public_key(key)
    fields = ratls.verify_certificate(_cert(real_key, quote), platform_keys=pub, measurement=M_SERVER)
    assert fields.measurement == M_SERVER  # control: in its own certificate the quote verifies
    attacker = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ratls.RATLSError, match="not bound to its certificate's key"):
        ratls.verify_certificate(_cert(attacker, quote), platform_keys=pub, measurement=M_SERVER)
    with pytest.raises(ratls.RATLSError, match="carries no quote"):
        ratls.verify_certificate(_cert(attacker, None), platform_keys=pub)


def test_a_client_context_must_say_what_it_expects() -> None:
    with pytest.raises(ValueError, match="expected_measurement"):
        ratls.client_context()


def test_urllib_and_http_client(key: str) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"attested hello")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = ratls.server_context(gen(M_SERVER, key)).wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}/"
    try:
        ok = ratls.client_context(expected_measurement=M_SERVER)
        with urllib.request.urlopen(url, context=ok, timeout=10) as resp:
            assert resp.read() == b"attested hello"
        with pytest.raises(urllib.error.URLError) as err:
            urllib.request.urlopen(url, context=ratls.client_context(expected_measurement=M_OTHER), timeout=10)
        assert isinstance(err.value.reason, ratls.RATLSError)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_asyncio(key: str) -> None:
    async def main() -> tuple[bytes, str]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"secret:" + await reader.read(10))
            await writer.drain()
            writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0,
                                         ssl=ratls.server_context(gen(M_SERVER, key), mutual=True,
                                                                  expected_measurement=M_CLIENT))
        port = srv.sockets[0].getsockname()[1]
        ctx = ratls.client_context(expected_measurement=M_SERVER, generator=gen(M_CLIENT, key))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        writer.write(b"hi")
        got = await reader.read(100)
        writer.close()
        refused = ""
        try:
            await asyncio.open_connection("127.0.0.1", port, ssl=ratls.client_context(
                expected_measurement=M_OTHER, generator=gen(M_CLIENT, key)))
        except ratls.RATLSError as exc:
            refused = str(exc)
        srv.close()
        await srv.wait_closed()
        return got, refused

    got, refused = asyncio.run(main())
    assert got == b"secret:hi"
    assert f"expected {M_OTHER.hex()}" in refused


def test_example_ratls_pair(key: str) -> None:
    """examples/ratls_pair.py: a sim and a process enclave share a secret; a rogue one is refused by both."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    r = subprocess.run([sys.executable, str(REPO / "examples" / "ratls_pair.py")], capture_output=True, text=True,
                       env={**os.environ, "POSIX_SHIM_PLATFORM_KEY": key}, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "client: got the secret" in out and out.endswith("all as expected\n")
    assert out.count("wrong measurement: expected") >= 3  # rogue client refuses/is refused; genuine client refuses
