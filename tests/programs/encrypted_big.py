import sys

data = bytes(range(256)) * (int(sys.argv[1]) // 256)
with open("vault/big.bin", "wb") as f:
    f.write(data)
with open("vault/big.bin", "r+b") as f:
    f.seek(70000)  # a partial chunk rewritten in place, then read across chunk boundaries
    f.write(b"X" * 100000)
    f.seek(65000)
    got = f.read(300000)
expect = bytearray(data)
expect[70000:170000] = b"X" * 100000
assert got == bytes(expect[65000:365000])
with open("vault/big.bin", "rb") as f:  # read to the end twice: the second from the host again
    assert f.read() == bytes(expect)
    f.seek(1000)
    assert f.read() == bytes(expect[1000:])
    f.seek(len(expect) - 5)
    assert f.read() == bytes(expect[-5:])
print("ok")
