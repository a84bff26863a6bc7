import os
import socket
import ssl
import sys

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
ctx.load_verify_locations(cafile=sys.argv[4])
ctx.verify_mode = ssl.CERT_OPTIONAL
with open("payload.bin", "wb") as f:
    f.write(os.urandom(300000))
listener = socket.create_server(("127.0.0.1", 0))
with open(sys.argv[1], "w") as f:
    f.write(str(listener.getsockname()[1]))
with ctx.wrap_socket(listener, server_side=True) as ls:
    for _ in range(2):
        conn, addr = ls.accept()
        with conn:
            peer = conn.getpeercert()
            print("peer", peer["subject"][0][0][1] if peer else None, conn.version())
            line = b""
            while not line.endswith(b"\n"):
                line += conn.recv(1)
            if line == b"sendfile\n":
                with open("payload.bin", "rb") as f:
                    print("sent", conn.sendfile(f))
            elif line == b"starttls-off\n":
                conn.sendall(b"OK\n")
                plain = conn.unwrap()
                print("unwrapped", type(plain).__name__, plain.recv(100))
                plain.close()
                continue
            else:
                conn.sendall(line.upper())
