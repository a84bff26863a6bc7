import ctypes
import errno
import json
import sys

from posix_shim.confine import _native

spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
prog = bytes.fromhex(spec["program"])
_native.prctl(38, 1, 0, 0, 0)
data = _native.from_bytes(prog)
fprog = _native.new("struct sock_fprog *")
fprog.len = len(prog) // 8
fprog.filter = data
_native.syscall("seccomp", 1, 0, fprog)
for nr, args in spec["calls"]:
    res = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    print("ERR " + errno.errorcode[ctypes.get_errno()] if res == -1 else "OK", flush=True)
