"""`posix-shim sealed inspect FILE...`: what a sealed blob is bound to, read from its header without any key."""

from __future__ import annotations

import sys

from enclave_libc.sealing import SealError, inspect


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "inspect":
        print("usage: posix-shim sealed inspect FILE...", file=sys.stderr)
        return 2
    status = 0
    for name in argv[1:]:
        try:
            with open(name, "rb") as f:
                info = inspect(f.read())
        except (OSError, SealError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: sealed blob, bound to {info['bound_to']} identity, key id {info['key_id']}, "
              f"{info['size']} bytes of plaintext")
    return status
