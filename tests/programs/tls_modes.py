import select
import socket
import ssl
import sys
import time

port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
request = b"GET /200000 HTTP/1.1\r\nHost: x\r\n\r\n"

def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    size = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(body) < size:
        body += s.recv(65536)
    return body

# blocking
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as s:
    s.sendall(request)
    print("blocking", len(read_response(s)), s.cipher()[1], s.getpeercert()["subject"][0][0][1])

# timeout: a read the server never answers times out with the C module's words
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")
s.settimeout(0.3)
t = time.monotonic()
try:
    s.recv(10)
except TimeoutError as e:
    print("timeout", type(e).__name__, str(e), 0.25 < time.monotonic() - t < 3)
s.settimeout(5)
s.sendall(request)
print("after timeout", len(read_response(s)))
# makefile over TLS
s.sendall(request)
f = s.makefile("rb")
status = f.readline()
while f.readline() not in (b"\r\n", b""):
    pass
print("makefile", status.strip().decode(), len(f.read(200000 + 21)))
f.close()
s.close()

# non-blocking: handshake driven by hand, reads answer SSLWantReadError until data arrives
raw = socket.create_connection(("127.0.0.1", port))
raw.setblocking(False)
s = ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
wants = 0
while True:
    try:
        s.do_handshake()
        break
    except ssl.SSLWantReadError:
        wants += 1
        select.select([s], [], [], 5)
    except ssl.SSLWantWriteError:
        select.select([], [s], [], 5)
print("nonblocking handshake", s.version())
try:
    s.recv(10)
except ssl.SSLWantReadError:
    print("nonblocking recv", "SSLWantReadError")
sent = 0
while sent < len(request):
    try:
        sent += s.send(request[sent:])
    except ssl.SSLWantWriteError:
        select.select([], [s], [], 5)
data = b""
while len(data) < 200000 + 21:
    try:
        data += s.recv(65536)
    except ssl.SSLWantReadError:
        select.select([s], [], [], 5)
print("nonblocking body", MARKER in data if (MARKER := b"PLAINTEXT-MARKER-7f3a") else None)
s.close()
