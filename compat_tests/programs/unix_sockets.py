"""AF_UNIX: a stream socketpair, and a stream server bound to a socket file in the cwd."""
import os
import socket
import stat
import threading

TIMEOUT = 5.0
BASELINE = set(os.listdir("."))  # the cwd may already hold files that are not ours

a, b = socket.socketpair()
a.settimeout(TIMEOUT)
b.settimeout(TIMEOUT)
print("socketpair family:", a.family == socket.AF_UNIX, a.type == socket.SOCK_STREAM)
a.sendall(b"ping")
print("b got:", b.recv(100))
b.sendall(b"pong " * 1000)
got = b""
while len(got) < 5000:
    got += a.recv(8192)
print("a got bytes:", len(got))
with b.makefile("w", encoding="utf-8") as wf:
    wf.write("line one\nline two\n")
b.shutdown(socket.SHUT_WR)
with a.makefile("r", encoding="utf-8") as rf:
    print("makefile lines:", rf.read().splitlines())
a.close()
b.close()

PATH = "echo.sock"  # relative: bound in the current directory
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(PATH)
srv.listen(2)
srv.settimeout(TIMEOUT)
print("socket file:", stat.S_ISSOCK(os.stat(PATH).st_mode), srv.getsockname())


def serve(n):
    for _ in range(n):
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            data = conn.recv(1024)
            conn.sendall(b"echo:" + data)


t = threading.Thread(target=serve, args=(2,), daemon=True)
t.start()
for msg in (b"first", b"second"):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(TIMEOUT)
        c.connect(PATH)
        c.sendall(msg)
        print("reply:", c.recv(1024))
t.join(TIMEOUT)
srv.close()
os.unlink(PATH)
print("socket file removed:", set(os.listdir(".")) == BASELINE)

d1, d2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
d1.settimeout(TIMEOUT)
d2.settimeout(TIMEOUT)
d1.send(b"one")
d1.send(b"two")
print("datagram boundaries:", d2.recv(100), d2.recv(100))
d1.close()
d2.close()

try:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect("no-such.sock")
except FileNotFoundError:
    print("connect to missing path: FileNotFoundError")
