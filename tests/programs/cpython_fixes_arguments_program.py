import io
import os


def show(f, *a):
    try:
        f(*a)
        print("ok")
    except Exception as e:
        print(type(e).__name__, getattr(e, "errno", None), e)
bad = 1000
show(os.fpathconf, bad, "PC_NAME_MAX")
show(os.tcgetpgrp, bad)
show(os.tcsetpgrp, bad, 0)
r, w = os.pipe()
show(os.tcgetpgrp, r)
show(io.FileIO, 2**31)
show(open, "missing", "r", -1, None, None, None, True, lambda path, flags: -1)
open("f", "w").close()
show(os.chown, "f", -1.0, -1)
show(os.chown, "f", -2, -1)
show(os.chown, "f", -1, -1)
class Blocked(io.FileIO):
    def __setattr__(self, name, value):
        if name == "name":
            raise KeyError("blocked")
        super().__setattr__(name, value)
fd = os.open("f", os.O_RDONLY)
show(Blocked, fd)
show(os.close, fd)  # still the caller's: the failed constructor did not close it
