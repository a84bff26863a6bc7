"""`python -m benchmarks.confidentiality [--backend sim,process] [--rounds N]`

What confidentiality costs (issue 15), as medians over alternating rounds:

* encrypted 1 MiB write and read through open(), inside the enclave, as a ratio of the same I/O on a plain
  folder inside the same enclave (the budget is >= 50 %);
* a 1 MiB TLS transfer (client sends 1 MiB, server answers its SHA-256) from inside the enclave, against the
  same client run natively, both to one native TLS server in another process.

The enclave side runs as ecalls (`Enclave.call("benchmarks.confidentiality:...")`) that time themselves.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20

SERVER = r'''
import hashlib, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ls = socket.create_server(("127.0.0.1", 0))
print(ls.getsockname()[1], flush=True)
while True:
    conn, _ = ls.accept()
    with ctx.wrap_socket(conn, server_side=True) as s:
        h, left = hashlib.sha256(), int(s.recv(16).decode())
        while left:
            chunk = s.recv(min(left, 65536))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
        s.sendall(h.digest())
'''


def file_io(folder: str, mib: int) -> list[int]:
    """[write ns, read ns] of `mib` MiB through open() in `folder`."""
    data = os.urandom(mib * MIB)
    path = os.path.join(folder, "bench.bin")
    t0 = time.perf_counter_ns()
    with open(path, "wb") as f:
        f.write(data)
    t1 = time.perf_counter_ns()
    with open(path, "rb") as f:
        back = f.read()
    t2 = time.perf_counter_ns()
    if back != data:
        raise AssertionError("read back differs")
    return [t1 - t0, t2 - t1]


def tls_transfer(port: int, ca: str, mib: int) -> int:
    """ns to send `mib` MiB over TLS (handshake included) and get its digest back."""
    data = os.urandom(mib * MIB)
    t0 = time.perf_counter_ns()
    ctx = ssl.create_default_context(cafile=ca)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as s:
        s.sendall(b"%16d" % len(data))
        s.sendall(data)
        digest = b""
        while len(digest) < 32:
            chunk = s.recv(32 - len(digest))
            if not chunk:
                break
            digest += chunk
    elapsed = time.perf_counter_ns() - t0
    if digest != hashlib.sha256(data).digest():
        raise AssertionError("digest differs")
    return elapsed


def _pki(folder: Path) -> tuple[str, str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path), str(cert_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.confidentiality")
    parser.add_argument("--backend", default="sim,process")
    parser.add_argument("--rounds", type=int, default=7)
    ns = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from posix_shim import Enclave
    from posix_shim import policy as policy_mod

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.environ["POSIX_SHIM_PLATFORM_SECRET"] = str(base / "platform-secret")
        (base / "plain").mkdir()
        (base / "vault").mkdir()
        cert, key, ca = _pki(base)
        server = subprocess.Popen([sys.executable, "-c", SERVER, cert, key], stdout=subprocess.PIPE)
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            print(f"{'backend':8} {'figure':28} {'enclave':>12} {'baseline':>12} {'ratio':>7}")
            for backend in ns.backend.split(","):
                rules = policy_mod.parse(["-A", f"--encrypted={base / 'vault'}"], "module", __name__)
                with Enclave(policy=rules, backend=backend) as enclave:
                    plain_w, plain_r, enc_w, enc_r, tls_in, tls_native = [], [], [], [], [], []
                    for _ in range(ns.rounds):
                        w, r = enclave.call("benchmarks.confidentiality:file_io", str(base / "plain"), 1)
                        plain_w.append(w)
                        plain_r.append(r)
                        w, r = enclave.call("benchmarks.confidentiality:file_io", str(base / "vault"), 1)
                        enc_w.append(w)
                        enc_r.append(r)
                        tls_in.append(enclave.call("benchmarks.confidentiality:tls_transfer", port, ca, 1))
                        tls_native.append(tls_transfer(port, ca, 1))
                med = statistics.median
                for label, inside, baseline, throughput in (
                        ("encrypted write 1 MiB (MiB/s)", enc_w, plain_w, True),
                        ("encrypted read 1 MiB (MiB/s)", enc_r, plain_r, True),
                        ("TLS transfer 1 MiB (ms)", tls_in, tls_native, False)):
                    a, b = med(inside), med(baseline)
                    if throughput:
                        print(f"{backend:8} {label:28} {1e9 / a:12.1f} {1e9 / b:12.1f} {b / a:7.0%}")
                    else:
                        print(f"{backend:8} {label:28} {a / 1e6:12.2f} {b / 1e6:12.2f} {a / b:7.2f}x")
        finally:
            server.kill()
            server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
