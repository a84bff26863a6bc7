"""C extensions doing their own I/O on files the program opened: each output must be byte-identical to native.

Run by tests/test_native_io.py inside each backend and natively; prints one line per library so a failure names it.
"""

import hashlib
import io
import os
import sqlite3
import sys


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def numpy_files() -> None:
    import numpy as np

    a = np.arange(1000, dtype=np.float64).reshape(10, 100)
    np.save("a.npy", a)
    with open("b.npy", "wb") as f:  # a file object: numpy writes through it (or its descriptor)
        np.save(f, a * 2)
    a.tofile("c.bin")
    with open("d.bin", "wb") as f:
        (a + 1).tofile(f)
    back = np.load("a.npy")
    with open("b.npy", "rb") as f:
        back2 = np.load(f)
    c = np.fromfile("c.bin", dtype=np.float64).reshape(10, 100)
    with open("d.bin", "rb") as f:
        d = np.fromfile(f, dtype=np.float64).reshape(10, 100)
    print("numpy", bool((back == a).all() and (back2 == a * 2).all() and (c == a).all() and (d == a + 1).all()),
          *(digest(p) for p in ("a.npy", "b.npy", "c.bin", "d.bin")), os.path.getsize("a.npy"))


def pillow_files() -> None:
    from PIL import Image

    img = Image.new("RGB", (64, 48))
    img.putdata([(x * 4 % 256, y * 5 % 256, (x * y) % 256) for y in range(48) for x in range(64)])
    img.save("p.png")
    img.save("p.jpg", quality=90)
    with open("q.png", "wb") as f:
        img.save(f, format="PNG")
    with Image.open("p.png") as back, Image.open("p.jpg") as jpg:
        same = list(back.getdata()) == list(img.getdata())
        print("pillow", same, jpg.size, *(digest(p) for p in ("p.png", "p.jpg", "q.png")))


def sqlite_file() -> None:
    con = sqlite3.connect("db.sqlite")
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(200)])
    con.commit()
    con.close()
    con = sqlite3.connect("db.sqlite")
    print("sqlite", con.execute("SELECT COUNT(*), MIN(v), MAX(k) FROM t").fetchone())
    con.close()


def parquet_file() -> None:
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError:
        print("parquet skipped")
        return
    df = pd.DataFrame({"x": range(100), "y": [f"s{i}" for i in range(100)]})
    df.to_parquet("t.parquet")
    back = pd.read_parquet("t.parquet")
    print("parquet", bool(back.equals(df)), len(back))


def stdout_untouched() -> None:
    # The file's bytes must land in the file, never on the program's stdout (the bug this test was written for).
    buf = io.BytesIO()
    print("stdout clean", buf.getvalue() == b"")


for name in sys.argv[1:] or ["numpy_files", "pillow_files", "sqlite_file", "parquet_file", "stdout_untouched"]:
    globals()[name]()
