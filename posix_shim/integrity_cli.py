"""The integrity subcommands and `--manifest` (docs/integrity.md).

    posix_shim keygen -o signer.pem
    posix_shim sign app.py [policy flags | --policy F] --key signer.pem -o app.manifest.toml [--trusted FILE]...
    posix_shim --manifest app.manifest.toml [--backend process] [-- ARGS...]
    posix_shim measure app.manifest.toml           (its measurement and signer, after checking its signature)
    posix_shim quote verify FILE --measurement HEX [--signer HEX] [--user-data HEX] [--platform-key PUB]
    posix_shim quote pubkey [-o FILE]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from . import policy

PROG = "posix-shim"


def keygen_main(argv: Sequence[str]) -> int:
    from . import manifest

    parser = argparse.ArgumentParser(prog=f"{PROG} keygen", description="Make an Ed25519 manifest signer key.")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the private key (PEM, mode 0600)")
    ns = parser.parse_args(list(argv))
    try:
        public = manifest.keygen(ns.output)
    except FileExistsError:
        print(f"{PROG} keygen: {ns.output} exists; not overwriting a key", file=sys.stderr)
        return 2
    print(f"signer {manifest.signer_id(public).hex()}")
    return 0


def sign_main(argv: Sequence[str]) -> int:
    from . import manifest

    parser = argparse.ArgumentParser(prog=f"{PROG} sign", description="Measure a script and sign its manifest.")
    parser.add_argument("script")
    parser.add_argument("args", nargs="*", help="arguments for the learning run")
    parser.add_argument("--key", required=True, metavar="PEM", help="the signer key (posix_shim keygen)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the manifest to write")
    parser.add_argument("--trusted", action="append", default=[], metavar="FILE",
                        help="a data file whose bytes the enclave must find unchanged (repeatable)")
    parser.add_argument("--no-learn", action="store_true",
                        help="do not run the script to find its modules (static import scan only)")
    parser.add_argument("--debug", action="store_true", help="mark the enclave as a debug enclave in its quotes")
    policy.add_arguments(parser)
    ns = parser.parse_args(list(argv))
    try:
        access = policy.build(ns, "path", ns.script)
        key = manifest.load_signing_key(ns.key)
        m = manifest.build(ns.script, key=key, access=access, args=ns.args, data_files=ns.trusted,
                           learn_run=not ns.no_learn, debug=ns.debug)
    except (policy.PolicyError, manifest.ManifestError, OSError, ValueError) as exc:
        print(f"{PROG} sign: {exc}", file=sys.stderr)
        return 2
    with open(ns.output, "w", encoding="utf-8") as f:
        f.write(m.to_toml())
    print(f"{PROG} sign: {ns.output}: {len(m.trusted)} trusted files\nmeasurement {m.measurement.hex()}\n"
          f"signer {m.signer.hex()}", file=sys.stderr)
    return 0


def measure_main(argv: Sequence[str]) -> int:
    """The measurement and signer of a manifest, recomputed from its fields (never read from its comments)."""
    from . import manifest

    parser = argparse.ArgumentParser(prog=f"{PROG} measure", description="Print a signed manifest's identity.")
    parser.add_argument("manifest")
    ns = parser.parse_args(list(argv))
    try:
        m = manifest.load(ns.manifest)
    except manifest.ManifestError as exc:
        print(f"{PROG} measure: {exc}", file=sys.stderr)
        return 2
    print(f"measurement {m.measurement.hex()}\nsigner {m.signer.hex()}\ntrusted files {len(m.trusted)}")
    return 0


def quote_main(argv: Sequence[str]) -> int:
    from . import attestation

    parser = argparse.ArgumentParser(prog=f"{PROG} quote", description="Verify quotes; show the platform key.")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="verify a quote file")
    v.add_argument("file")
    v.add_argument("--measurement", metavar="HEX", help="the expected measurement (64 hex digits)")
    v.add_argument("--signer", metavar="HEX", help="the expected signer")
    v.add_argument("--user-data", metavar="HEX", help="the exact user data (nonce) the quote must carry")
    v.add_argument("--platform-key", action="append", metavar="PUB",
                   help="a trusted platform public key (PEM); default: this machine's simulated platform")
    v.add_argument("--no-debug", action="store_true", help="refuse quotes of debug enclaves")
    p = sub.add_parser("pubkey", help="print (or write) this machine's simulated platform public key")
    p.add_argument("-o", "--output", metavar="FILE")
    ns = parser.parse_args(list(argv))
    if ns.command == "pubkey":
        pem = attestation.platform_public_pem()
        if ns.output:
            with open(ns.output, "wb") as f:
                f.write(pem)
        else:
            sys.stdout.write(pem.decode())
        return 0
    try:
        with open(ns.file, "rb") as f:
            quote = f.read()
        keys: Any = ns.platform_key or attestation.platform_public_key()
        fields = attestation.verify(quote, platform_keys=keys, measurement=ns.measurement, signer=ns.signer,
                                    user_data=bytes.fromhex(ns.user_data) if ns.user_data else None,
                                    allow_debug=not ns.no_debug)
    except (attestation.QuoteError, OSError, ValueError) as exc:
        print(f"{PROG} quote verify: {ns.file}: {exc}", file=sys.stderr)
        return 1
    print(f"{ns.file}: OK\n{fields.describe()}")
    return 0


SUBCOMMANDS = {"keygen": keygen_main, "sign": sign_main, "measure": measure_main, "quote": quote_main}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", metavar="FILE",
                        help="run a signed manifest (posix_shim sign): its entry point, policy and trusted files")


# Policy options that a manifest run refuses: the policy is part of what was signed.
_POLICY_DESTS = ("policy", "learn", "allow_all", "allow_read", "deny_read", "allow_write", "deny_write", "allow_net",
                 "deny_net", "allow_env", "deny_env", "allow_ffi", "allow_run")


def manifest_run(ns: argparse.Namespace, kind: str | None, target: str | None, args: list[str],
                 backend_options: dict[str, Any]) -> int:
    """`posix_shim --manifest FILE [ARGS]`: verify, then run the signed entry point with the signed policy."""
    from . import manifest
    from .enclave import Enclave

    given = [d for d in _POLICY_DESTS if getattr(ns, d, None)]
    if given:
        print(f"{PROG}: --manifest runs the policy it was signed with; drop --{given[0].replace('_', '-')}",
              file=sys.stderr)
        return 2
    if kind not in (None, "path"):
        print(f"{PROG}: --manifest runs its own entry point; give only the program's arguments", file=sys.stderr)
        return 2
    program_args = ([target] if target is not None else []) + list(args)
    try:
        m = manifest.load(ns.manifest)
        access = m.access()
    except (manifest.ManifestError, policy.PolicyError) as exc:
        print(f"{PROG}: refusing to start: {exc}", file=sys.stderr)
        return 2
    with Enclave(policy=access, backend=ns.backend, **backend_options, **m.run_options()) as enclave:
        return enclave.run_path(m.entry["path"], program_args)


__all__ = ["SUBCOMMANDS", "add_arguments", "manifest_run"]
