"""The default policy at work: no network without a grant.

Natively the program starts a TCP server on 127.0.0.1:0 and talks to it. Inside the enclave, without the
`net` grant, binding (or connecting) must fail with PermissionError (EACCES) naming --allow-net.
"""
import socket
import threading

with socket.socket() as probe:
    print("socket created:", probe.family == socket.AF_INET)
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(5)
port = srv.getsockname()[1]


def serve():
    conn, _ = srv.accept()
    with conn:
        conn.sendall(conn.recv(100).upper())


t = threading.Thread(target=serve)
t.start()
with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
    c.sendall(b"hello")
    print("reply:", c.recv(100))
t.join(5)
srv.close()
print("server finished:", not t.is_alive())
