"""TCP echo server on 127.0.0.1 (ephemeral port) with a thread per client; several clients."""
import socket
import threading

TIMEOUT = 5.0
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
srv.settimeout(TIMEOUT)
host, port = srv.getsockname()
print("bound loopback:", host, port > 0)


def handle(conn):
    with conn, conn.makefile("rb") as rf:  # line-oriented protocol via a buffered reader
        conn.settimeout(TIMEOUT)
        for line in rf:
            conn.sendall(line.upper())


def serve(n):
    workers = []
    for _ in range(n):
        conn, _addr = srv.accept()
        t = threading.Thread(target=handle, args=(conn,), daemon=True)
        t.start()
        workers.append(t)
    for t in workers:
        t.join(TIMEOUT)


def client(i, results):
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer_ok = c.getpeername() == ("127.0.0.1", port)
        msgs = [f"client {i} message {j}".encode() for j in range(3)]
        c.sendall(b"\n".join(msgs) + b"\n")
        c.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        results[i] = (data.decode().splitlines(), peer_ok)


N = 4
server = threading.Thread(target=serve, args=(N,), daemon=True)
server.start()
results = {}
clients = [threading.Thread(target=client, args=(i, results), daemon=True) for i in range(N)]
for t in clients:
    t.start()
for t in clients:
    t.join(TIMEOUT)
server.join(TIMEOUT)
print("all clients answered:", sorted(results) == list(range(N)))
for i in sorted(results):
    print(i, results[i])

# a large transfer through makefile(), exercising partial reads and writes
big = bytes(range(256)) * 4096  # 1 MiB
sink = {}


def big_server():
    conn, _ = srv.accept()
    with conn:
        conn.settimeout(TIMEOUT)
        sink["data"] = b"".join(iter(lambda: conn.recv(65536), b""))


t = threading.Thread(target=big_server, daemon=True)
t.start()
with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
    c.sendall(big)
t.join(TIMEOUT)
print("1 MiB transfer intact:", sink.get("data") == big)
srv.close()
try:
    socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
except ConnectionRefusedError:
    print("connect after close: ConnectionRefusedError")
