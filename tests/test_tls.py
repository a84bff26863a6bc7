"""TLS terminates inside the enclave (issue 15), on every backend.

A test CA and a server certificate for 127.0.0.1/localhost are made with `cryptography`; native TLS servers and
clients run in this process, programs inside run through the command line (or `Enclave` when the test taps the
host side).  The tap test proves only ciphertext crosses: every byte the host's send/recv carried is recorded,
and a plaintext marker is in it only when the same program talks plain TCP (the negative control).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import program, run_native, run_shim

MARKER = b"PLAINTEXT-MARKER-7f3a"


# -- a test PKI ---------------------------------------------------------------------------------------------


def _make_pki(folder: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "posix_shim test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    out = {}
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{role}.test")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        out[f"{role}_cert"] = folder / f"{role}-cert.pem"
        out[f"{role}_key"] = folder / f"{role}-key.pem"
        out[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{role}_key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    out["ca"] = folder / "ca.pem"
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _make_pki(tmp_path_factory.mktemp("pki"))


SERVER = program("tls_server.py")


def _serve(args: list[str]) -> Iterator[int]:
    """A native HTTP(S) server in its own process (on the sim backend the enclave's interposition is process-wide
    while a run lasts, so a server thread in this process would find its sockets swapped under it)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", SERVER, *args], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def https_port(pki: dict[str, Path]) -> Iterator[int]:
    yield from _serve([str(pki["server_cert"]), str(pki["server_key"])])


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    yield from _serve([])


def _run_inside(tmp_path: Path, backend: str, source: str, *args: str, options: list[str] | None = None,
                timeout: float = 90) -> str:
    (tmp_path / "prog.py").write_text(source)
    result = run_shim(["prog.py", *args], backend=backend, cwd=tmp_path, options=options or ["-A"], timeout=timeout)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


# -- clients inside -----------------------------------------------------------------------------------------

HTTPS_CLIENTS = program("tls_https_clients.py")


def test_https_clients_inside_fetch_from_a_local_server(backend: str, tmp_path: Path, pki: dict[str, Path],
                                                        https_port: int) -> None:
    out = _run_inside(tmp_path, backend, HTTPS_CLIENTS, str(https_port), str(pki["ca"]))
    lines = out.splitlines()
    assert lines[0] == f"urllib 200 {100000 + len(MARKER)} {MARKER.decode()}"
    assert lines[1] == "http.client 200 True TLSv1.3 http/1.1"
    found = {line.split()[0]: line for line in lines}
    for name, size in (("requests", 100000 + len(MARKER)), ("urllib3", 5000 + len(MARKER)),
                       ("httpx", 100000 + len(MARKER))):
        pytest.importorskip(name)
        assert found[name] == f"{name} 200 {size}"
    assert found["untrusted"] == "untrusted SSLCertVerificationError unable to get local issuer certificate"


MODES = program("tls_modes.py")


def test_blocking_timeout_nonblocking_and_makefile(backend: str, tmp_path: Path, pki: dict[str, Path],
                                                   https_port: int) -> None:
    native = run_native(["-c", MODES, str(https_port), str(pki["ca"])], cwd=tmp_path, timeout=60)
    assert native.returncode == 0, native.stderr.decode()
    inside = _run_inside(tmp_path, backend, MODES, str(https_port), str(pki["ca"]))
    assert inside.splitlines() == native.stdout.decode().splitlines()
    assert "timeout TimeoutError The read operation timed out True" in inside
    assert "nonblocking recv SSLWantReadError" in inside and "nonblocking body True" in inside


ECHO_SERVER = program("tls_echo_server.py")

ECHO_CLIENT = program("tls_echo_client.py")


@pytest.mark.parametrize("inside", ["server", "client"])
def test_tls_echo_server_and_client_against_native_peers(backend: str, tmp_path: Path, pki: dict[str, Path],
                                                         inside: str) -> None:
    import subprocess
    import sys

    from conftest import REPO
    (tmp_path / "server.py").write_text(ECHO_SERVER)
    (tmp_path / "client.py").write_text(ECHO_CLIENT)
    port_file = tmp_path / "port"
    server_args = ["server.py", str(port_file), str(pki["server_cert"]), str(pki["server_key"]), str(pki["ca"])]
    client_args = ["client.py", str(port_file), str(pki["ca"]), str(pki["client_cert"]), str(pki["client_key"])]
    shim = [sys.executable, "-m", "posix_shim", "--backend", backend, "-A"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    server_cmd = (shim if inside == "server" else [sys.executable]) + server_args
    client_cmd = (shim if inside == "client" else [sys.executable]) + client_args
    server = subprocess.Popen(server_cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        client = subprocess.run(client_cmd, cwd=tmp_path, env=env, capture_output=True, timeout=60)
        out, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert client.returncode == 0, client.stderr.decode()
    assert server.returncode == 0, err.decode()
    payload = (tmp_path / "payload.bin").read_bytes()
    import hashlib
    assert client.stdout.decode().splitlines() == [f"sendfile {len(payload)} {hashlib.sha256(payload).hexdigest()}",
                                                   "done"]
    assert out.decode().splitlines() == ["peer client.test TLSv1.3", f"sent {len(payload)}", "peer None TLSv1.3",
                                         "unwrapped SSLSocket b'in the clear'"]


ASYNCIO_TLS = program("tls_asyncio_tls.py")


def test_asyncio_tls_client_and_server_inside(backend: str, tmp_path: Path, pki: dict[str, Path]) -> None:
    out = _run_inside(tmp_path, backend, ASYNCIO_TLS, str(pki["server_cert"]), str(pki["server_key"]),
                      str(pki["ca"]))
    assert out.strip() == "asyncio tls 10 of 10"


# -- files under the policy ---------------------------------------------------------------------------------

FILES = program("tls_files.py")


def test_cert_files_are_read_through_the_enclave_like_natively(backend: str, tmp_path: Path,
                                                               pki: dict[str, Path]) -> None:
    (tmp_path / "junk.txt").write_text("not a certificate\n")
    args = [str(pki["ca"]), str(pki["client_cert"]), str(pki["client_key"]), "junk.txt"]
    native = run_native(["-c", FILES, *args], cwd=tmp_path)
    inside = _run_inside(tmp_path, backend, FILES, *args)
    strip = [line.split(" (_ssl.c")[0] for line in native.stdout.decode().splitlines()]
    assert [line.split(" (_ssl.c")[0] for line in inside.splitlines()] == strip
    assert "missing cafile FileNotFoundError 2 [Errno 2] No such file or directory" in inside


def test_a_denied_ca_file_is_policy_denied_naming_the_flag(backend: str, tmp_path: Path,
                                                          pki: dict[str, Path]) -> None:
    (tmp_path / "prog.py").write_text(
        "import ssl, sys\n"
        "try:\n"
        "    ssl.create_default_context(cafile=sys.argv[1])\n"
        "except PermissionError as e:\n"
        "    print('denied', e.errno, type(e).__name__, sys.argv[1] in str(e), str(e).split('by ')[-1])\n"
        "else:\n"
        "    print('loaded')\n")
    ca = str(pki["ca"])
    # Outside what the default policy lets a program read (the CA is not in the program's folder).
    result = run_shim(["prog.py", ca], backend=backend, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert out.startswith("denied 13 PolicyDenied True") and "--allow-read" in out, out
    # Denied explicitly: the message names that flag.
    result = run_shim(["prog.py", ca], backend=backend, cwd=tmp_path, options=["-A", f"--deny-read={ca}"],
                      timeout=60)
    assert result.stdout.decode().strip() == f"denied 13 PolicyDenied True --deny-read={ca}"
    # Negative control: allowed, the same file loads.
    result = run_shim(["prog.py", ca], backend=backend, cwd=tmp_path, options=[f"--allow-read={ca}"], timeout=60)
    assert result.stdout.decode().strip() == "loaded", result.stderr.decode()


# -- only ciphertext crosses --------------------------------------------------------------------------------

TAPPED = program("tls_tapped.py")


def _tap(backend: str, tmp_path: Path, port: int, ca: Path, mode: str) -> tuple[bytes, bytes]:
    """Run TAPPED inside and return (every byte the host sent for it, every byte the host received for it)."""
    from ocall_bridge.access import ALLOW_ALL
    from posix_shim import Enclave

    (tmp_path / "tapped.py").write_text(TAPPED)
    events: list[Any] = []
    with Enclave(ALLOW_ALL, backend=backend, trace=events.append, trace_filter="sockets") as enclave:
        assert enclave.run_path(str(tmp_path / "tapped.py"), [str(port), str(ca), mode]) == 0
    sent = b"".join(bytes(ev.args[1]) for ev in events if ev.call in ("send", "sendto") and not ev.errno)
    received = b"".join(bytes(ev.result) for ev in events if ev.call == "recv" and not ev.errno)
    return sent, received


def test_only_ciphertext_crosses_the_boundary(backend: str, tmp_path: Path, pki: dict[str, Path],
                                              https_port: int, http_port: int) -> None:
    sent, received = _tap(backend, tmp_path, https_port, pki["ca"], "tls")
    assert len(sent) > 200 and len(received) > 1000  # the whole exchange crossed, as TLS records
    assert sent[:1] == b"\x16" and received[:1] == b"\x16"  # it starts with a TLS handshake record each way
    assert MARKER not in sent and MARKER not in received
    assert b"POST" not in sent and b"HTTP/1.1" not in received
    # Negative control: the same program without TLS, and the tap sees the marker both ways.
    sent, received = _tap(backend, tmp_path, http_port, pki["ca"], "plain")
    assert MARKER in sent and MARKER in received


def test_ciphertext_is_what_inject_reaches(tmp_path: Path, pki: dict[str, Path], https_port: int) -> None:
    """--inject works on TLS traffic: short sends and receives (the host's right) still deliver every byte."""
    out = _run_inside(tmp_path, "sim", HTTPS_CLIENTS.split("try:\n    import requests")[0], str(https_port),
                      str(pki["ca"]), options=["-A", "--inject", "send,recv:short=7"])
    assert out.splitlines()[:2] == [f"urllib 200 {100000 + len(MARKER)} {MARKER.decode()}",
                                    "http.client 200 True TLSv1.3 http/1.1"]


def test_ssl_outside_an_enclave_is_untouched(pki: dict[str, Path], https_port: int) -> None:
    """On the sim backend the host shares the ssl module: between runs it must be the native one."""
    from ocall_bridge.access import ALLOW_ALL
    from posix_shim import Enclave

    with Enclave(ALLOW_ALL, backend="sim") as enclave:
        enclave.run_code("import ssl")
    assert "sslsocket_class" in ssl.SSLContext.__dict__ and ssl.SSLContext.sslsocket_class is ssl.SSLSocket
    assert "_wrap_socket" not in ssl.SSLContext.__dict__
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", https_port)), server_hostname="localhost") as s:
        assert type(s) is ssl.SSLSocket and s.version() == "TLSv1.3"


def test_system_cas_are_loaded_only_as_far_as_the_policy_allows(backend: str, tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("import ssl\n"
                                      "ctx = ssl.create_default_context()\n"
                                      "print(ctx.cert_store_stats()['x509_ca'] > 0)\n")
    cafile = ssl.get_default_verify_paths().openssl_cafile
    if not os.path.exists(cafile):
        pytest.skip("no system CA bundle on this machine")
    native = run_native(["prog.py"], cwd=tmp_path)
    allowed = run_shim(["prog.py"], backend=backend, cwd=tmp_path, options=["-A"])
    # (The default policy grants the public CA certificates, as the C library's configuration: a deny shows what a
    # policy without them gives.)
    capath = ssl.get_default_verify_paths().openssl_capath
    default = run_shim(["prog.py"], backend=backend, cwd=tmp_path,
                       options=[f"--deny-read={cafile},{capath},{os.path.realpath(capath)}"])
    assert native.stdout == allowed.stdout == b"True\n", allowed.stderr.decode()
    assert default.returncode == 0 and default.stdout == b"False\n", default.stderr.decode()
    err = default.stderr.decode()
    assert err.startswith("posix_shim: the system CA bundle is not loaded inside the enclave: ")
    assert f"denied by --deny-read={cafile}" in err
