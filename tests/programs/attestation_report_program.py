import os

from posix_shim import attestation

quote = attestation.report(b"nonce-from-the-verifier")
with open("quote.bin", "wb") as f:
    f.write(quote)
for path in (os.environ["POSIX_SHIM_PLATFORM_KEY"], "link-to-key"):
    try:
        with open(path, "rb") as f:
            print("READ THE KEY", len(f.read()))
    except OSError as exc:
        print("key refused", exc.errno)
try:
    attestation.report(b"x" * 65)
except ValueError as exc:
    print("too long:", exc)
