"""Copy, move, rename and atomically replace files; fsync and truncate."""
import filecmp
import os
import shutil

BASELINE = set(os.listdir("."))  # the cwd may already hold files that are not ours

def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


payload = bytes(range(256)) * 40  # 10240 bytes
write("source.bin", payload)

shutil.copyfile("source.bin", "copy1.bin")
shutil.copy("source.bin", "copy2.bin")
shutil.copy2("source.bin", "copy3.bin")
print("copies equal:", all(filecmp.cmp("source.bin", p, shallow=False)
                           for p in ("copy1.bin", "copy2.bin", "copy3.bin")))
print("copy2 kept mtime:", int(os.stat("copy3.bin").st_mtime) == int(os.stat("source.bin").st_mtime))

os.rename("copy1.bin", "renamed.bin")
print("rename:", os.path.exists("copy1.bin"), os.path.exists("renamed.bin"))

os.mkdir("sub")
shutil.move("renamed.bin", "sub")
print("move into dir:", sorted(os.listdir("sub")))

# The classic atomic update: write a temp file, fsync, os.replace over the target.
write("config.txt", b"version=1\n")
tmp = "config.txt.tmp"
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    os.write(fd, b"version=2\n")
    os.fsync(fd)
finally:
    os.close(fd)
os.replace(tmp, "config.txt")
print("replaced:", read("config.txt"), os.path.exists(tmp))

# truncate, by path and by descriptor
os.truncate("copy2.bin", 100)
print("truncate path:", os.path.getsize("copy2.bin"))
with open("copy2.bin", "r+b") as f:
    f.truncate(10)
    f.flush()
    os.fsync(f.fileno())
print("truncate fd:", os.path.getsize("copy2.bin"), read("copy2.bin"))
with open("copy2.bin", "r+b") as f:
    os.ftruncate(f.fileno(), 20)
print("extend with ftruncate:", read("copy2.bin")[8:], os.path.getsize("copy2.bin"))

os.remove("copy3.bin")
os.unlink("copy2.bin")
print("remaining:", sorted(set(os.listdir(".")) - BASELINE))
