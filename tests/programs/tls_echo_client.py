import hashlib
import os
import socket
import ssl
import sys
import time

port_file, ca, cert, key = sys.argv[1:5]
deadline = time.monotonic() + 30
while not os.path.exists(port_file) or not open(port_file).read():
    assert time.monotonic() < deadline
    time.sleep(0.05)
port = int(open(port_file).read())
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname="localhost") as s:
    s.sendall(b"sendfile\n")
    data = b""
    while len(data) < 300000:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    print("sendfile", len(data), hashlib.sha256(data).hexdigest())
ctx2 = ssl.create_default_context(cafile=ca)
with ctx2.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname="localhost") as s:
    s.sendall(b"starttls-off\n")
    assert s.recv(3) == b"OK\n"
    plain = s.unwrap()
    plain.sendall(b"in the clear")
    plain.close()
print("done")
