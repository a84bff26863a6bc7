import os

results = []
fd = os.open("out.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
try:
    os.write(fd, b"x" * 100)
except OSError as exc:
    results.append((type(exc).__name__, exc.errno, exc.strerror, exc.filename))
os.close(fd)
try:
    with open("out2.bin", "wb") as f:
        f.write(b"y" * 100)
except OSError as exc:
    results.append((type(exc).__name__, exc.errno, exc.strerror, exc.filename))
print(results)
