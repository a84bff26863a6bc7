import socket
import struct
import threading
import time

srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
c = socket.create_connection(srv.getsockname())
conn, _ = srv.accept()
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 2))
c.setblocking(False)
try:
    while True:
        c.send(b"x" * 65536)
except BlockingIOError:
    pass
c.setblocking(True)
ticks = []
started = threading.Event()
def tick():
    started.set()
    end = time.monotonic() + 4
    while time.monotonic() < end:
        time.sleep(0.05)
        ticks.append(time.monotonic())
t = threading.Thread(target=tick)
t.start()
started.wait()
t0 = time.monotonic()
c.close()
closed = time.monotonic() - t0
t.join()
print(f"{closed:.1f}", len([x for x in ticks if t0 < x < t0 + closed]))
