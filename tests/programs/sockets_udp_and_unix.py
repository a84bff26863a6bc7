import os
import socket
import threading

srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind(("127.0.0.1", 0))
srv.settimeout(5)
def echo():
    for _ in range(3):
        data, addr = srv.recvfrom(2048)
        srv.sendto(data[::-1], addr)
t = threading.Thread(target=echo); t.start()
cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
cli.settimeout(5)
for msg in (b"abc", b"x" * 1500, b""):
    cli.sendto(msg, srv.getsockname())
    data, addr = cli.recvfrom(2048)
    print("udp echo:", data == msg[::-1], addr == srv.getsockname())
t.join(5)
a, b = socket.socketpair()
a.settimeout(5); b.settimeout(5)
a.sendall(b"ping"); print("pair:", b.recv(10))
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
u.bind("s.sock"); u.listen(); u.settimeout(5)
print("unix name:", u.getsockname(), sorted(os.listdir(".")))
def serve():
    c, _ = u.accept()
    with c: c.sendall(b"hi " + c.recv(100))
t = threading.Thread(target=serve); t.start()
with socket.socket(socket.AF_UNIX) as c:
    c.settimeout(5); c.connect("s.sock"); c.sendall(b"there"); print("unix:", c.recv(100))
t.join(5); u.close(); os.unlink("s.sock")
