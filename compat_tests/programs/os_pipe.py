"""os.pipe: read/write, EOF, non-blocking, a writer thread exceeding the pipe buffer, fdopen, dup."""
import os
import threading

r, w = os.pipe()
print("inheritable:", os.get_inheritable(r), os.get_inheritable(w))
os.write(w, b"hello pipe")
print("read:", os.read(r, 5), os.read(r, 100))
os.close(w)
print("EOF after writer closed:", os.read(r, 100))
os.close(r)

r, w = os.pipe()
os.set_blocking(r, False)
print("blocking flag:", os.get_blocking(r))
try:
    os.read(r, 10)
except BlockingIOError:
    print("empty non-blocking read: BlockingIOError")
os.close(r)
os.close(w)

r, w = os.pipe()
payload = bytes(range(256)) * 1024  # 256 KiB, larger than the default 64 KiB pipe buffer


def writer():
    view = memoryview(payload)
    while view:
        n = os.write(w, view[:65536])
        view = view[n:]
    os.close(w)


t = threading.Thread(target=writer, daemon=True)
t.start()
chunks = []
while True:
    data = os.read(r, 32768)
    if not data:
        break
    chunks.append(data)
t.join(5)
os.close(r)
print("large transfer intact:", b"".join(chunks) == payload, "writer done:", not t.is_alive())

r, w = os.pipe()
with os.fdopen(w, "w") as wf, os.fdopen(r) as rf:
    wf.write("line 1\nline 2\n")
    wf.flush()
    print("fdopen readline:", rf.readline().rstrip(), rf.readline().rstrip())

r, w = os.pipe()
w2 = os.dup(w)
os.write(w2, b"via dup")
os.close(w2)
print("dup shares pipe:", os.read(r, 100))
os.dup2(w, 50)
os.write(50, b"via dup2")
print("dup2 target:", os.read(r, 100))
os.close(50)
print("fstat is fifo:", __import__("stat").S_ISFIFO(os.fstat(r).st_mode))
os.close(w)
print("EOF:", os.read(r, 1))
os.close(r)
try:
    os.write(w, b"x")
except OSError as e:
    print("write to closed fd: EBADF" if e.errno == 9 else f"unexpected {e.errno}")
