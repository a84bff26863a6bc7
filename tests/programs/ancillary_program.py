import array
import os
import socket

a, b = socket.socketpair()
r, w = os.pipe()
with open("f", "w") as f:
    f.write("file contents")
fd = os.open("f", os.O_RDONLY)
a.sendmsg([b"here"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w, fd]))])
msg, anc, flags, addr = b.recvmsg(100, socket.CMSG_SPACE(2 * 4))
[(level, kind, data)] = anc
w2, fd2 = array.array("i", data)
print(msg, level == socket.SOL_SOCKET, kind == socket.SCM_RIGHTS, flags, len({w, fd, w2, fd2}))
os.write(w2, b"through the passed pipe")
print(os.read(r, 100).decode(), os.read(fd2, 100).decode())
a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w, fd]))])
msg, anc, flags, addr = b.recvmsg(10, socket.CMSG_LEN(4))  # room for one descriptor only
print(msg, [len(d) for _, _, d in anc], bool(flags & socket.MSG_CTRUNC))
b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
a.sendmsg([b"c"])
msg, anc, flags, addr = b.recvmsg(10, socket.CMSG_SPACE(12))
[(level, kind, data)] = anc
pid, uid, gid = array.array("i", data)
print(msg, kind == socket.SCM_CREDENTIALS, uid == os.getuid(), gid == os.getgid())
try:
    a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [999]))])
except OSError as e:
    print("bad fd", e.errno)
