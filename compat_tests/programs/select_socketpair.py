"""Readiness: select.select, select.poll and selectors.DefaultSelector over a socketpair and a pipe."""
import os
import select
import selectors
import socket

a, b = socket.socketpair()
r, w, x = select.select([a, b], [], [], 0)
print("nothing readable:", r == [])
r, w, x = select.select([], [a, b], [], 0)
print("both writable:", sorted(s is a for s in w))
a.sendall(b"hello")
r, _, _ = select.select([a, b], [], [], 1.0)
print("b readable:", [s is b for s in r])
print("recv:", b.recv(100))
r, _, _ = select.select([b], [], [], 0.05)
print("drained, timeout returns empty:", r == [])

p = select.poll()
p.register(a, select.POLLIN)
p.register(b.fileno(), select.POLLIN)
b.send(b"x")
events = p.poll(1000)
print("poll:", [(fd == a.fileno(), bool(ev & select.POLLIN)) for fd, ev in events])
a.recv(10)
print("poll timeout empty:", p.poll(10) == [])
b.close()
ev = dict(p.poll(1000))
print("peer closed -> readable/hup:", bool(ev.get(a.fileno(), 0) & (select.POLLIN | select.POLLHUP)))
print("EOF read:", a.recv(10))
a.close()

sel = selectors.DefaultSelector()
pairs = [socket.socketpair() for _ in range(3)]
for i, (left, right) in enumerate(pairs):
    left.setblocking(False)
    sel.register(left, selectors.EVENT_READ, data=f"chan{i}")
for i in (2, 0):
    pairs[i][1].send(f"msg for {i}".encode())
got = []
while len(got) < 2:
    ready = sel.select(timeout=1.0)
    if not ready:
        break
    for key, mask in ready:
        got.append((key.data, key.fileobj.recv(100)))
print("selector:", sorted(got))
print("selector timeout:", sel.select(timeout=0.02))
rfd, wfd = os.pipe()
sel.register(rfd, selectors.EVENT_READ, data="pipe")
os.write(wfd, b"through pipe")
ready = sel.select(timeout=1.0)
print("pipe ready:", [k.data for k, _ in ready], os.read(rfd, 100))
sel.modify(rfd, selectors.EVENT_READ, data="pipe2")
print("registered:", sorted(k.data for k in sel.get_map().values()))
for left, right in pairs:
    sel.unregister(left)
    left.close()
    right.close()
sel.unregister(rfd)
sel.close()
os.close(rfd)
os.close(wfd)
print("done")
