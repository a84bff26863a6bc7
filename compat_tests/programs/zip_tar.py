"""zipfile and tarfile: create, list, extract, compare with the originals."""
import filecmp
import hashlib
import io
import os
import tarfile
import zipfile

files = {
    "docs/readme.txt": b"Read me first.\n" * 20,
    "docs/notes.md": "# Notes\n\n- unicode: \u00fc\u00df\u20ac\n".encode(),
    "bin/blob.dat": bytes((i * 7) % 256 for i in range(5000)),
    "empty.txt": b"",
}
for rel, data in files.items():
    os.makedirs(os.path.dirname(rel) or ".", exist_ok=True)
    with open(rel, "wb") as f:
        f.write(data)

with zipfile.ZipFile("bundle.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
    for rel in sorted(files):
        z.write(rel)
    z.writestr("generated/info.txt", "made in memory\n")
with zipfile.ZipFile("bundle.zip") as z:
    print("zip test:", z.testzip())
    for info in sorted(z.infolist(), key=lambda i: i.filename):
        print(f"  {info.filename:24} {info.file_size:6} crc={info.CRC:08x}")
    z.extractall("unzipped")
    print("zip read member:", z.read("generated/info.txt"))

with zipfile.ZipFile("bundle.zip", "a") as z:
    z.writestr("appended.txt", b"later")
with zipfile.ZipFile("bundle.zip") as z:
    print("after append:", len(z.namelist()))

for mode, ext in [("w:gz", "tar.gz"), ("w:bz2", "tar.bz2"), ("w:xz", "tar.xz"), ("w", "tar")]:
    with tarfile.open(f"bundle.{ext}", mode) as t:
        for rel in sorted(files):
            t.add(rel)
        data = b"from a buffer\n"
        info = tarfile.TarInfo("generated/buffer.txt")
        info.size = len(data)
        info.mtime = 1700000000
        t.addfile(info, io.BytesIO(data))
    with tarfile.open(f"bundle.{ext}") as t:
        names = sorted(m.name for m in t.getmembers() if m.isfile())
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        t.extractall(f"untarred_{ext}", **kwargs)
    print(f"{ext}: {names}")

ok = True
for rel in files:
    for root in ["unzipped"] + [f"untarred_{e}" for e in ("tar.gz", "tar.bz2", "tar.xz", "tar")]:
        ok &= filecmp.cmp(rel, os.path.join(root, rel), shallow=False)
print("all extracted files identical:", ok)
with open("untarred_tar.gz/generated/buffer.txt", "rb") as f:
    print("buffer member:", f.read(), os.stat("untarred_tar.gz/generated/buffer.txt").st_mtime == 1700000000)
digest = hashlib.sha256()
for rel in sorted(files):
    with open(os.path.join("untarred_tar.xz", rel), "rb") as f:
        digest.update(f.read())
print("sha256:", digest.hexdigest()[:16])
