"""tempfile: NamedTemporaryFile, TemporaryFile, TemporaryDirectory, mkstemp, mkdtemp, SpooledTemporaryFile."""
import os
import tempfile

BASELINE = set(os.listdir("."))  # the cwd may already hold files that are not ours
tmpdir = tempfile.gettempdir()
print("gettempdir absolute:", os.path.isabs(tmpdir), os.path.isdir(tmpdir))

with tempfile.NamedTemporaryFile("w+", suffix=".txt", prefix="report-") as f:
    f.write("hello temp\n")
    f.flush()
    name = f.name
    base = os.path.basename(name)
    print("named: prefix/suffix ok:", base.startswith("report-") and base.endswith(".txt"))
    with open(name) as g:
        print("reopen by name:", g.read().rstrip())
    f.seek(0)
    print("read back:", f.read().rstrip())
print("deleted on close:", not os.path.exists(name))

with tempfile.NamedTemporaryFile(delete=False, dir=".") as f:
    f.write(b"kept")
    kept = f.name
print("delete=False kept in cwd:", os.path.exists(kept), os.path.dirname(os.path.abspath(kept)) == os.getcwd())
os.unlink(kept)

with tempfile.TemporaryFile() as f:
    f.write(b"anonymous data")
    f.seek(0)
    print("TemporaryFile:", f.read())

fd, path = tempfile.mkstemp(suffix=".dat")
try:
    os.write(fd, b"mkstemp bytes")
    os.lseek(fd, 0, os.SEEK_SET)
    print("mkstemp:", os.read(fd, 100), oct(os.stat(path).st_mode & 0o777))
finally:
    os.close(fd)
    os.unlink(path)
print("mkstemp removed:", not os.path.exists(path))

with tempfile.TemporaryDirectory(prefix="work-") as d:
    for i in range(3):
        with open(os.path.join(d, f"f{i}.txt"), "w") as f:
            f.write(str(i) * (i + 1))
    os.makedirs(os.path.join(d, "nested", "deeper"))
    print("tempdir contents:", sorted(os.listdir(d)), oct(os.stat(d).st_mode & 0o777))
print("tempdir cleaned:", not os.path.exists(d))

d = tempfile.mkdtemp(dir=".")
print("mkdtemp in cwd:", os.path.isdir(d), os.path.dirname(os.path.abspath(d)) == os.getcwd())
os.rmdir(d)

with tempfile.SpooledTemporaryFile(max_size=100) as f:
    f.write(b"x" * 50)
    small = f._rolled
    f.write(b"y" * 100)
    print("spooled rolled over:", small, f._rolled)
    f.seek(0)
    print("spooled size:", len(f.read()))
print("nothing left in cwd:", set(os.listdir(".")) == BASELINE)
