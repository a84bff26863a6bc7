"""UDP echo on 127.0.0.1: sendto/recvfrom, connected UDP, timeouts."""
import socket
import threading

TIMEOUT = 5.0
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind(("127.0.0.1", 0))
srv.settimeout(TIMEOUT)
port = srv.getsockname()[1]
N = 5


def serve():
    for _ in range(N + 1):
        try:
            data, addr = srv.recvfrom(65535)
        except socket.timeout:
            return
        if data == b"quit":
            return
        srv.sendto(data[::-1], addr)


t = threading.Thread(target=serve, daemon=True)
t.start()

cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
cli.settimeout(TIMEOUT)
for i in range(3):
    cli.sendto(f"datagram {i}".encode(), ("127.0.0.1", port))
    data, addr = cli.recvfrom(1024)
    print("reply:", data, addr == ("127.0.0.1", port))

cli.connect(("127.0.0.1", port))
cli.send(b"connected send")
print("connected recv:", cli.recv(1024))
big = b"x" * 60000
cli.send(big)
print("large datagram:", len(cli.recv(65535)))
cli.send(b"quit")
t.join(TIMEOUT)
print("server done:", not t.is_alive())

quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
quiet.bind(("127.0.0.1", 0))
quiet.settimeout(0.05)
try:
    quiet.recvfrom(10)
except socket.timeout:
    print("recv timeout: TimeoutError is socket.timeout:", socket.timeout is TimeoutError)
quiet.setblocking(False)
try:
    quiet.recv(10)
except BlockingIOError:
    print("non-blocking recv: BlockingIOError")
print("gettimeout after setblocking(False):", quiet.gettimeout())
for s in (srv, cli, quiet):
    s.close()
print("closed fileno:", cli.fileno())
