"""`python -m posix_shim policy check [FILE] [FLAGS...]`: validate a policy and print the rules in effect.

Exit status: 0 when the policy is usable, 2 when it is not (the message names the file, the key or TOML line,
and the problem).  Warnings (a granted path that does not exist, a denial that lies outside every grant) do not
fail the check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .flags import add_arguments, build
from .model import Policy, PolicyError, covers

PROG = "posix-shim policy"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Inspect a posix_shim policy.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a policy file and print the effective rules",
                           description="Validate a policy (a TOML file, a pyproject.toml with [tool.posix_shim], "
                                       "or, with no FILE, the one the runner would use here) together with any "
                                       "flags, and print the rules in effect.")
    check.add_argument("file", nargs="?", metavar="FILE", help="policy file (default: the nearest pyproject.toml)")
    check.add_argument("--script", metavar="PATH", help="the script the run would start (its folder is granted)")
    check.add_argument("--json", action="store_true", help="print the policy as the plain data sent to a child")
    add_arguments(check)
    return parser


def warnings(p: Policy) -> list[str]:
    """Rules that are valid but probably not what was meant."""
    out = []
    for rules in (p.read, p.write):
        for rule in rules.allow:
            if not rule.origin.startswith("default") and not os.path.lexists(rule.value):
                out.append(f"{rules.kind} grant {os.fsdecode(rule.value)} ({rule.origin}) does not exist (yet)")
        for rule in rules.deny:
            if rules.all is None and not any(covers(a.value, rule.value) or covers(rule.value, a.value)
                                             for a in rules.allow):
                out.append(f"{rules.kind} denial {os.fsdecode(rule.value)} ({rule.origin}) has no effect: nothing "
                           f"around it is granted")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.file:
        args.policy = args.file
    kind = "path" if args.script else None
    try:
        p = build(args, kind, args.script)
    except PolicyError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(p.to_data(), indent=2, sort_keys=True))  # what process_backend.py sends (from_data reads it)
        return 0
    source = args.policy or (f"[tool.posix_shim] in {p.source}" if p.source else None) or \
        "(no policy file here: the defaults and flags)"
    print(f"policy: {source}: OK")
    for w in warnings(p):
        print(f"warning: {w}")
    print(p.describe())
    print(SIM_NOTE)
    return 0


# What the rules above bind on each backend (docs/threat-model.md, "Python-level escapes, per backend").
SIM_NOTE = ("note: on --backend sim these rules bind Python code only: native code (C extensions, OpenSSL, "
            "ctypes) runs in the host's own process and cannot be stopped; sim is for development and tests, like "
            "Asylo's simulated backend.")


__all__ = ["main"]
