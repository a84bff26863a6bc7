"""Symlinks, readlink, hard links, lstat vs stat, stat fields and mode tests."""
import os
import stat
from pathlib import Path

os.mkdir("links")  # work in a subdirectory so that whatever else is in the cwd does not matter
os.chdir("links")
with open("target.txt", "w") as f:
    f.write("0123456789" * 10)
os.mkdir("dir")

os.symlink("target.txt", "link.txt")
os.symlink("dir", "dirlink")
os.symlink("missing.txt", "dangling")
os.link("target.txt", "hard.txt")

st, lst = os.stat("link.txt"), os.lstat("link.txt")
print("readlink:", os.readlink("link.txt"), Path("dirlink").readlink().as_posix())
print("stat follows:", stat.S_ISREG(st.st_mode), st.st_size)
print("lstat no follow:", stat.S_ISLNK(lst.st_mode), lst.st_size)
print("islink:", os.path.islink("link.txt"), os.path.islink("target.txt"), os.path.islink("hard.txt"))
print("dangling exists/lexists:", os.path.exists("dangling"), os.path.lexists("dangling"))
print("dir through link:", os.path.isdir("dirlink"), stat.S_ISDIR(os.stat("dirlink").st_mode))
print("realpath resolves:", os.path.realpath("link.txt") == os.path.realpath("target.txt"))
print("samefile:", os.path.samefile("link.txt", "target.txt"), os.path.samefile("hard.txt", "target.txt"))

t, h = os.stat("target.txt"), os.stat("hard.txt")
print("hard link nlink:", t.st_nlink, "same inode:", t.st_ino == h.st_ino and t.st_dev == h.st_dev)
with open("hard.txt", "a") as f:
    f.write("!")
print("write via hard link visible:", os.path.getsize("target.txt"))
os.unlink("target.txt")
print("after unlink: nlink", os.stat("hard.txt").st_nlink, "link dangling:", not os.path.exists("link.txt"))
os.rename("hard.txt", "target.txt")
print("link valid again:", os.path.exists("link.txt"))

os.chmod("target.txt", 0o640)
m = os.stat("target.txt").st_mode
print("mode:", oct(stat.S_IMODE(m)), stat.filemode(m))
os.utime("target.txt", (1600000000, 1700000000))
s = os.stat("target.txt")
print("utime:", int(s.st_atime), int(s.st_mtime), s.st_mtime_ns)
print("dir mode type:", stat.filemode(os.stat("dir").st_mode)[0], stat.filemode(os.lstat("dirlink").st_mode)[0])
print("blocks field present:", hasattr(s, "st_blocks"), "uid matches:", s.st_uid == os.getuid())

with os.scandir(".") as it:
    kinds = sorted((e.name, e.is_symlink(), e.is_file(), e.is_dir()) for e in it)
for k in kinds:
    print("  entry", k)

p = Path("plink")
p.symlink_to("target.txt")
print("pathlib:", p.is_symlink(), p.resolve().name, p.lstat().st_size == len("target.txt"))
os.replace("plink", "link2")
print("rename a link keeps target:", os.readlink("link2"))
try:
    os.readlink("target.txt")
except OSError as e:
    print("readlink on regular file errno:", e.errno == 22)
try:
    os.symlink("x", "link.txt")
except FileExistsError:
    print("symlink over existing: FileExistsError")
