# The test's body (argv[2]) runs in this namespace, with these modules at hand.
import ctypes
import errno  # noqa: F401
import fcntl  # noqa: F401
import json
import os
import socket
import stat  # noqa: F401
import statistics  # noqa: F401
import struct
import sys
import threading  # noqa: F401
import time  # noqa: F401

chan_fd = int(sys.argv[1])
forward = [int(n) for n in sys.argv[3].split(",")]
confine = sys.argv[4:] == ["confine"]
NOTIF, ALLOW, KILL = 0x7FC00000, 0x7FFF0000, 0x80000000
def ins(code, jt, jf, k):
    return struct.pack("<HBBI", code, jt, jf, k)
LD, JEQ, RET = 0x20, 0x15, 0x06
prog = [ins(LD, 0, 0, 4), ins(JEQ, 1, 0, 0xC000003E), ins(RET, 0, 0, KILL), ins(LD, 0, 0, 0)]
for nr in forward:
    if nr == 44:    # sendto: only with an address (args[4] != NULL)
        prog += [ins(JEQ, 0, 6, nr), ins(LD, 0, 0, 48), ins(JEQ, 0, 2, 0), ins(LD, 0, 0, 52), ins(JEQ, 1, 0, 0),
                 ins(RET, 0, 0, NOTIF), ins(RET, 0, 0, ALLOW)]
    elif nr == 46:  # sendmsg: never on the channel
        prog += [ins(JEQ, 0, 4, nr), ins(LD, 0, 0, 16), ins(JEQ, 1, 0, chan_fd), ins(RET, 0, 0, NOTIF),
                 ins(RET, 0, 0, ALLOW)]
    else:
        prog += [ins(JEQ, 0, 1, nr), ins(RET, 0, 0, NOTIF)]
prog.append(ins(RET, 0, 0, ALLOW))
code = b"".join(prog)
buf = ctypes.create_string_buffer(code, len(code))
fprog = struct.pack("<HxxxxxxQ", len(prog), ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
if confine:  # the process backend's real confinement: its filter, Landlock, no_new_privs
    from ocall_bridge.native import FORWARDED
    from posix_shim.confine import confine_process
    listener = confine_process(forward=FORWARDED, channel_fds=[chan_fd])
else:
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    fprog_buf = ctypes.create_string_buffer(fprog, len(fprog))
    listener = libc.syscall(317, 1, 8, fprog_buf)  # seccomp(SET_MODE_FILTER, NEW_LISTENER)
    assert listener >= 0, ctypes.get_errno()
chan = socket.socket(fileno=chan_fd)
socket.send_fds(chan, [b"L"], [listener])
os.close(listener)
res = {}
def err(fn, *a, **k):
    try:
        return fn(*a, **k)
    except OSError as e:
        return -e.errno
exec(sys.argv[2])
os.write(1, json.dumps(res).encode())
