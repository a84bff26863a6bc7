"""`python -m benchmarks.integrity [--rounds N]`: the costs of integrity (docs/integrity.md holds the figures).

* start-up: `python -m posix_shim app.py` vs `python -m posix_shim --manifest app.manifest.toml` (the same app,
  importing a module of its own and json), on each backend: medians of alternated rounds.
* RA-TLS: one TLS handshake over loopback with a plain self-signed certificate vs one with RA-TLS (server only,
  and mutual), between two threads of an ordinary process; plus the one-off cost of making an attested context.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "import json\nimport helper\nprint(helper.greet('world'), json.dumps([1, 2]))\n"
HELPER = "def greet(name):\n    return 'hello ' + name\n"


def _median_ms(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def startup(rounds: int) -> list[str]:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    lines = []
    with tempfile.TemporaryDirectory() as work:
        for name, text in (("app.py", APP), ("helper.py", HELPER)):
            with open(os.path.join(work, name), "w") as f:
                f.write(text)

        def shim(*args: str) -> None:
            subprocess.run([sys.executable, "-m", "posix_shim", *args], cwd=work, env=env, check=True,
                           capture_output=True)

        shim("keygen", "-o", "signer.pem")
        shim("sign", "app.py", "--key", "signer.pem", "-o", "app.manifest.toml")
        for backend in ("sim", "process"):
            unsigned, signed = [], []
            for _ in range(rounds):  # alternated, so drift on a shared machine hits both alike
                unsigned.append(_median_ms(lambda b=backend: shim("--backend", b, "app.py"), 1))
                signed.append(_median_ms(lambda b=backend: shim("--backend", b, "--manifest", "app.manifest.toml"), 1))
            u, s = statistics.median(unsigned), statistics.median(signed)
            lines.append(f"startup {backend:8} unsigned {u:7.0f} ms   signed {s:7.0f} ms   ratio {s / u:.2f}")
    return lines


def _handshakes(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, n: int) -> float:
    listener = socket.create_server(("127.0.0.1", 0))
    address = listener.getsockname()

    def serve() -> None:
        for _ in range(n):
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"x")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with client_ctx.wrap_socket(socket.create_connection(address)) as tls:
            tls.recv(1)
        times.append((time.perf_counter() - t0) * 1000)
    thread.join()
    listener.close()
    return statistics.median(times)


def handshake(rounds: int) -> list[str]:
    sys.path.insert(0, REPO)
    from posix_shim import attestation, ratls

    m = b"\x01" * 32
    gen = attestation.PlatformQuoteGenerator(measurement=m, signer=m)
    make_ms = _median_ms(lambda: ratls.server_context(gen), rounds)
    cert, key, _ = ratls.make_certificate(gen)
    plain_server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ratls._load_chain(plain_server, cert, key)  # the same certificate, no quote check
    plain_client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    plain_client.check_hostname = False
    plain_client.load_verify_locations(cadata=ratls.ROOT_PEM)
    n = max(rounds, 20)
    plain = _handshakes(plain_server, plain_client, n)
    one_way = _handshakes(ratls.server_context(gen), ratls.client_context(expected_measurement=m), n)
    mutual = _handshakes(ratls.server_context(gen, mutual=True, expected_measurement=m),
                         ratls.client_context(expected_measurement=m, generator=gen), n)
    return [f"ratls    make context (key, quote, certificate) {make_ms:6.2f} ms",
            f"ratls    handshake plain TLS {plain:6.2f} ms   RA-TLS {one_way:6.2f} ms ({one_way / plain:.2f}x)   "
            f"mutual RA-TLS {mutual:6.2f} ms ({mutual / plain:.2f}x)"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.integrity")
    parser.add_argument("--rounds", type=int, default=7)
    ns = parser.parse_args(argv)
    for line in handshake(ns.rounds) + startup(ns.rounds):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
