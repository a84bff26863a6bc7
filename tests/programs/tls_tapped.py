import socket
import ssl
import sys

port, ca, use_tls = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "tls"
s = socket.create_connection(("127.0.0.1", port), timeout=10)
if use_tls:
    s = ssl.create_default_context(cafile=ca).wrap_socket(s, server_hostname="localhost")
body = b"secret=PLAINTEXT-MARKER-7f3a"
s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
data = b""
while not data.endswith(body[::-1]):
    data += s.recv(4096)
s.sendall(b"GET /1000 HTTP/1.1\r\nHost: x\r\n\r\n")
while b"PLAINTEXT-MARKER-7f3a" + b"." * 1000 not in data:
    data += s.recv(4096)
print("ok", len(data))
s.close()
