"""Seek/tell, append mode, binary vs text, readline iteration, newline handling."""
import io
import os

with open("notes.txt", "w", encoding="utf-8") as f:
    for i in range(5):
        f.write(f"line {i}: {'é' * i}\n")
    print("tell after text write:", f.tell())

with open("notes.txt", "a", encoding="utf-8") as f:
    f.write("appended line\n")
print("size:", os.path.getsize("notes.txt"))

with open("notes.txt", encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
        print(n, repr(line))

with open("notes.txt", encoding="utf-8") as f:
    first = f.readline()
    pos = f.tell()
    second = f.readline()
    f.seek(pos)
    print("seek back to tell:", f.readline() == second, repr(first))
    print("readlines rest:", len(f.readlines()))

with open("data.bin", "w+b") as f:
    f.write(b"0123456789abcdef")
    f.seek(4)
    print("read after seek:", f.read(4))
    f.seek(-3, io.SEEK_END)
    print("seek end:", f.read(), f.tell())
    f.seek(2, io.SEEK_SET)
    f.seek(3, io.SEEK_CUR)
    print("seek cur:", f.tell(), f.read(2))
    f.seek(20)
    f.write(b"X")  # writes past EOF leave a hole of zero bytes
    f.seek(0)
    print("with hole:", f.read())

with open("data.bin", "ab") as f:
    f.seek(0)
    f.write(b"END")  # O_APPEND ignores the seek
with open("data.bin", "rb") as f:
    print("append ignores seek:", f.read()[-4:])

with open("crlf.txt", "wb") as f:
    f.write(b"a\r\nb\rc\nd")
with open("crlf.txt", newline="") as f:
    print("newline='':", [repr(x) for x in f])
with open("crlf.txt") as f:
    print("universal:", f.read().splitlines())

fd = os.open("raw.txt", os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"hello raw world")
print("lseek:", os.lseek(fd, 6, os.SEEK_SET), os.read(fd, 3))
print("pread:", os.pread(fd, 5, 0))
os.pwrite(fd, b"HELLO", 0)
os.lseek(fd, 0, os.SEEK_SET)
print("pwrite:", os.read(fd, 100))
os.close(fd)

with open("buffered.txt", "w", buffering=1) as f:  # line buffered
    f.write("partial")
    f.write(" done\n")
with open("buffered.txt", "rb", buffering=0) as f:
    print("unbuffered read:", f.readall())
