import csv
import dbm.dumb
import io
import json
import logging
import os
import shelve
import sys
import zipfile

d = sys.argv[1]
M = "PLAINTEXT-MARKER-51c0"
record = {"secret": M, "numbers": list(range(3000)), "text": "é" * 100}
with open(f"{d}/data.json", "w", encoding="utf-8") as f:
    json.dump(record, f)
assert json.load(open(f"{d}/data.json", encoding="utf-8")) == record
rows = [[i, M, f"row {i}"] for i in range(500)]
with open(f"{d}/t.csv", "w", newline="") as f:
    csv.writer(f).writerows(rows)
with open(f"{d}/t.csv", newline="") as f:
    assert [[int(a), b, c] for a, b, c in csv.reader(f)] == rows
with zipfile.ZipFile(f"{d}/z.zip", "w", zipfile.ZIP_STORED) as z:
    z.writestr("inner.txt", M * 1000)
    z.writestr("small.txt", M)
with zipfile.ZipFile(f"{d}/z.zip", "a") as z:
    z.writestr("added.txt", M + " appended")
with zipfile.ZipFile(f"{d}/z.zip") as z:
    assert z.read("inner.txt") == (M * 1000).encode() and z.read("added.txt") == (M + " appended").encode()
    assert z.testzip() is None
log = logging.getLogger("app")
handler = logging.FileHandler(f"{d}/app.log")
handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(200):
    log.info("event %d %s", i, M)
handler.close()
lines = open(f"{d}/app.log").read().splitlines()
assert lines[0] == f"INFO event 0 {M}" and len(lines) == 200
with shelve.Shelf(dbm.dumb.open(f"{d}/shelf", "c")) as s:
    s["k"] = {"v": M, "n": 7}
    s["big"] = M * 500
with shelve.Shelf(dbm.dumb.open(f"{d}/shelf", "r")) as s:
    assert s["k"] == {"v": M, "n": 7} and s["big"] == M * 500
# random access, append, truncate, stat with the plaintext size, across the 64 KiB chunks' boundaries
CH = 1 << 16
with open(f"{d}/r.bin", "wb") as f:
    f.write(bytes(range(256)) * 640)  # 2.5 chunks
with open(f"{d}/r.bin", "r+b") as f:
    f.seek(CH - 6)
    f.write(M.encode())
    f.seek(4 * CH + 20000)  # a hole: zeros, as natively
    f.write(b"end")
    f.flush()
    assert os.stat(f.name).st_size == 4 * CH + 20003
    f.truncate(2 * CH + 40000)
with open(f"{d}/r.bin", "ab") as f:
    f.write(b"tail")
expect = bytearray(bytes(range(256)) * 640)
expect[CH - 6:CH - 6 + len(M)] = M.encode()
expect += b"\0" * (2 * CH + 40000 - len(expect))
expect += b"tail"
data = open(f"{d}/r.bin", "rb").read()
assert data == bytes(expect), (len(data), len(expect))
assert os.path.getsize(f"{d}/r.bin") == len(expect) == os.stat(f"{d}/r.bin").st_size
with open(f"{d}/r.bin", "rb") as f:
    f.seek(CH - 3)
    assert f.read(6) == bytes(expect[CH - 3:CH + 3])
    f.seek(CH + 5)
    assert f.read(2 * CH) == bytes(expect[CH + 5:3 * CH + 5])
    try:
        f.fileno()
    except io.UnsupportedOperation as e:
        print("fileno refused:", "encrypted folder" in str(e))
try:
    os.open(f"{d}/r.bin", os.O_RDONLY)
except OSError as e:
    print("os.open refused:", e.errno, "encrypted folder" in str(e))
os.truncate(f"{d}/r.bin", CH + 5000)
assert open(f"{d}/r.bin", "rb").read() == bytes(expect[:CH + 5000])
os.truncate(f"{d}/r.bin", len(expect))
assert open(f"{d}/r.bin", "rb").read() == bytes(expect[:CH + 5000]) + b"\0" * (len(expect) - CH - 5000)
with open(f"{d}/r.bin", "r+b") as f:
    f.seek(CH + 5000)
    f.write(bytes(expect[CH + 5000:]))
try:
    os.link(f"{d}/r.bin", f"{d}/hard.bin")
except OSError as e:
    print("link refused:", e.errno)
os.rename(f"{d}/r.bin", f"{d}/moved.bin")
assert open(f"{d}/moved.bin", "rb").read() == bytes(expect)
os.replace(f"{d}/moved.bin", f"{d}/data.json")
assert open(f"{d}/data.json", "rb").read() == bytes(expect)
print("stdlib ok")
