import os
import socket
import threading
import time

srv = socket.create_server(("127.0.0.1", 0))
port = srv.getsockname()[1]
a, b = socket.socketpair()
accepted, received = [], []
t1 = threading.Thread(target=lambda: accepted.append(srv.accept()))       # blocks: no timeout
t2 = threading.Thread(target=lambda: received.append(a.recv(10)))         # blocks: no timeout
t1.start(); t2.start()
time.sleep(0.2)
t0 = time.monotonic()
for i in range(100):                  # other threads' ocalls go on meanwhile
    with open(f"f{i}.txt", "w") as f:
        f.write("x")
    os.stat(f"f{i}.txt")
    os.unlink(f"f{i}.txt")
c, d = socket.socketpair()
c.sendall(b"ok"); d.recv(2)
print("others ran while blocked:", time.monotonic() - t0 < 5, t1.is_alive(), t2.is_alive())
socket.create_connection(("127.0.0.1", port), timeout=5).close()
b.sendall(b"wake")
t1.join(5); t2.join(5)
print("blocked calls completed:", len(accepted) == 1, received == [b"wake"])
