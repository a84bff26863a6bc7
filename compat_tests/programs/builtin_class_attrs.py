"""C functions stored as class attributes and called through an instance.

A builtin function is not a descriptor: `self.opener(path)` calls `open(path)`, with no `self`. Code in the
wild (CPython's own test_io, injectable-dependency classes, mocks) relies on it. Inside the enclave the
replacements must keep that: a plain Python function stored on a class would bind and receive `self`.
"""
import io
import os
import time


class Store:
    opener = open
    io_open = io.open
    stat = os.stat
    listdir = os.listdir
    clock = time.monotonic

    def save(self, name, text):
        with self.opener(name, "w") as f:
            f.write(text)
        return self.stat(name).st_size


s = Store()
print("saved bytes:", s.save("a.txt", "hello"))
with s.io_open("a.txt") as f:
    print("read back:", f.read())
print("listed:", sorted(n for n in s.listdir(".") if n.endswith(".txt")))
print("clock is a float:", isinstance(s.clock(), float))
