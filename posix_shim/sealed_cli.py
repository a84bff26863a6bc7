"""`posix-shim sealed inspect FILE...`: what a sealed blob or an encrypted-folder file is bound to, read from its
header without any key (so nothing in the output is authenticated: it says what the file claims)."""

from __future__ import annotations

import struct
import sys

from enclave_libc import encfs_format as encfs  # the file format (MAGIC, HDR, KINDS, CHUNK)
from enclave_libc.sealing import SealError, inspect


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "inspect":
        print("usage: posix-shim sealed inspect FILE...", file=sys.stderr)
        return 2
    status = 0
    for name in argv[1:]:
        try:
            with open(name, "rb") as f:
                data = f.read()
            if data.startswith(encfs.MAGIC) and len(data) >= encfs.HDR:
                size, version = struct.unpack("<QQ", data[32:48])
                bound = {v: k for k, v in encfs.KINDS.items()}.get(data[8], f"unknown ({data[8]})")
                print(f"{name}: encrypted-folder file, bound to {bound} identity, file id {data[16:32].hex()}, "
                      f"version {version}, {size} bytes of plaintext in {-(-size // encfs.CHUNK)} chunks")
                continue
            info = inspect(data)
        except (OSError, SealError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: sealed blob, bound to {info['bound_to']} identity, key id {info['key_id']}, "
              f"{info['size']} bytes of plaintext")
    return status
