"""mmap of a regular file. Outside the enclave subset: inside it must fail with OSError(ENOSYS)."""
import mmap

with open("mapped.bin", "wb") as f:
    f.write(b"hello mmap world\n" + b"\0" * 4079)

with open("mapped.bin", "r+b") as f:
    with mmap.mmap(f.fileno(), 0) as m:
        print("size:", len(m), "find:", m.find(b"world"))
        print("first line:", m.readline())
        m[0:5] = b"HELLO"
        m.flush()
        m.seek(0)
        print("after write:", m.read(16))
with open("mapped.bin", "rb") as f:
    print("visible through read():", f.read(16))
with open("mapped.bin", "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
    print("read-only slice:", m[6:10])
