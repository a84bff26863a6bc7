import sys

CH = 1 << 16
p = "vault/c.bin"
if sys.argv[1] == "write":
    with open(p, "wb") as f:
        f.write(b"A" * 3 * CH)
    sys.exit(0)
with open(p, "r+b", buffering=0) as f:
    f.seek(CH)
    f.write(b"B" * CH)  # chunk 1 sealed anew: a new tag in the header's root
    f.write(b"C")  # chunk 2 touched last, so chunk 1 is read back from the host, not from what was just written
    f.seek(CH)
    try:
        print("read", f.read(10).decode())
    except OSError as e:
        print("refused", e.errno, e)
