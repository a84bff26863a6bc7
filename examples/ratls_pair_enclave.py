"""One side of an attested channel: run inside a signed enclave by examples/ratls_pair.py.

    ratls_pair_enclave.py server PORT COUNT PLATFORM_PUB   serve COUNT connections, each gets the sealed secret
    ratls_pair_enclave.py client PORT PLATFORM_PUB         fetch the secret and print its fingerprint

Both roles accept only a peer running *this same program*: each enclave learns its own measurement from its own
quote, and requires the peer's quote to carry the same one (mutual RA-TLS).  A program that differs by one byte
has another measurement and is refused by both sides.  The platform's public key is a trusted file of the
manifest, so the host cannot swap the key this enclave verifies against.
"""

import hashlib
import secrets
import socket
import sys

from posix_shim import attestation, ratls


def own_measurement(platform_pub):
    quote = attestation.report(b"who am i")
    return attestation.verify(quote, platform_keys=platform_pub, user_data=b"who am i").measurement


def serve(port, count, platform_pub):
    me = own_measurement(platform_pub)
    # The secret is made inside the enclave and leaves it only inside TLS records.
    secret = secrets.token_bytes(32)
    ctx = ratls.server_context(mutual=True, expected_measurement=me, platform_keys=platform_pub)
    with socket.create_server(("127.0.0.1", port)) as listener:
        print("server: listening, measurement", me.hex()[:16], flush=True)
        for _ in range(count):
            conn, _ = listener.accept()
            try:
                with ratls.BIOStream(conn, ctx, server_side=True) as tls:
                    tls.sendall(secret)
                    print("server: sent the secret to", tls.ratls_peer.measurement.hex()[:16], flush=True)
            except ratls.RATLSError as exc:
                print("server: refused a client:", exc, flush=True)
            except OSError as exc:
                print("server: connection failed:", exc, flush=True)
    print("server: secret fingerprint", hashlib.sha256(secret).hexdigest()[:16], flush=True)


def fetch(port, platform_pub):
    me = own_measurement(platform_pub)
    ctx = ratls.client_context(expected_measurement=me, platform_keys=platform_pub, mutual=True)
    try:
        with ratls.BIOStream(socket.create_connection(("127.0.0.1", port)), ctx) as tls:
            secret = b""
            while len(secret) < 32:
                chunk = tls.recv(32 - len(secret))
                if not chunk:
                    break
                secret += chunk
    except ratls.RATLSError as exc:
        print("client: refused the server:", exc, flush=True)
        return 3
    except OSError as exc:
        print("client: the server would not talk to us:", exc, flush=True)
        return 4
    if len(secret) != 32:
        print("client: the server closed the connection without the secret", flush=True)
        return 4
    print("client: got the secret, fingerprint", hashlib.sha256(secret).hexdigest()[:16], flush=True)
    return 0


def main(argv):
    if argv[0] == "server":
        with open(argv[3], "rb") as f:
            serve(int(argv[1]), int(argv[2]), f.read())
        return 0
    with open(argv[2], "rb") as f:
        return fetch(int(argv[1]), f.read())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
