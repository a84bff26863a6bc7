"""Deno-style policy flags (`--allow-read=PATHS`, `--deny-net`, `-A` ...) and the policies the runner builds
from them: the file (or pyproject table, or defaults) first, then the flags on top.

The same flags serve the runner, `policy check`, the library API (`parse`) and a spawned child enclave
(`from_spawned`), so what a flag means is written once, here.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from ocall_bridge.access import Access

from .builder import Builder, build_default
from .learner import Learner
from .loading import find_pyproject, load_file
from .model import Policy, PolicyError, from_data

ALL = "\x00all"  # the const of `--allow-read` given without a value: everything

# What -A / --allow-all means, in one place: --help, docs/cli.md, docs/getting-started.md and docs/policy.md
# quote it (tests/test_usage.py compares them), so no page can promise more than the flag does.
ALLOW_ALL_MEANING = ("allows every file, network address, environment variable and POSIX call; --deny-* rules "
                     "still apply, and loading native libraries (ctypes, cffi) or starting processes (subprocess, "
                     "fork/exec) stays refused unless --allow-ffi or --allow-run is given too")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The policy flag group (shared by the runner, `policy check` and `parse`)."""
    g = parser.add_argument_group("policy", "what the enclave may touch (docs/policy.md); --deny-* wins")
    g.add_argument("--policy", metavar="FILE",
                   help="a policy TOML file (default: [tool.posix_shim] of the nearest pyproject.toml)")
    g.add_argument("--learn", metavar="FILE",
                   help="run with everything allowed and write the smallest policy for this run to FILE")
    g.add_argument("-A", "--allow-all", action="store_true", help=f"{ALLOW_ALL_MEANING.replace('%', '%%')}")
    for kind, what in (("read", "PATHS"), ("write", "PATHS"), ("net", "HOST:PORT"), ("env", "NAMES")):
        # nargs="?" with values only after '=': `--allow-read app.py` grants everything and runs app.py.
        # The metavar shows the '=': in the runner a value is only ever taken after it (cli.py).
        g.add_argument(f"--allow-{kind}", action="append", nargs="?", const=ALL, metavar=f"={what}",
                       help=f"allow {kind}: --allow-{kind}={what},... (the value only after '='; alone: everything)")
        g.add_argument(f"--deny-{kind}", action="append", nargs="?", const=ALL, metavar=f"={what}",
                       help=f"deny {kind}: --deny-{kind}={what},... (the value only after '='; wins over every "
                            f"grant)")
    g.add_argument("--allow-ffi", action="store_true", help="let the program load native libraries (ctypes/cffi)")
    g.add_argument("--allow-run", action="append", nargs="?", const=ALL, metavar="=NAMES",
                   help="let the program run these host programs by name (--allow-run=git,ls; they run outside "
                        "the enclave); alone: let it start any process natively (subprocess/fork)")
    g.add_argument("--encrypted", action="append", metavar="DIR",
                   help="store files under DIR encrypted and authenticated (docs/confidentiality.md); implies "
                        "read and write access to DIR")


def _split(values: Sequence[str] | None) -> list[str]:
    out = []
    for v in values or ():
        if v == ALL:
            out.append(ALL)
        else:
            out += [x for x in v.split(",") if x]  # "--allow-read=" alone names nothing
    return out


def apply_flags(b: Builder, args: argparse.Namespace, cwd: str | None = None) -> None:
    """Add the rules the flags in `args` give to `b`; a bad value raises PolicyError naming the flag."""
    cwd = cwd or os.getcwd()
    if getattr(args, "allow_all", False):
        b.allow_everything("-A/--allow-all")
    for kind in ("read", "write"):
        for allow in (True, False):
            flag = f"--{'allow' if allow else 'deny'}-{kind}"
            for v in _split(getattr(args, f"{'allow' if allow else 'deny'}_{kind}", None)):
                if v == ALL:
                    if allow:
                        b.add_all(kind, flag)
                    else:
                        b.add_path(kind, False, "/", flag, cwd)
                    continue
                try:
                    b.add_path(kind, allow, v, f"{flag}={v}", cwd)
                except ValueError as exc:
                    raise PolicyError(f"{flag}: {exc}") from None
    for allow in (True, False):
        flag = f"--{'allow' if allow else 'deny'}-net"
        for v in _split(getattr(args, f"{'allow' if allow else 'deny'}_net", None)):
            try:
                if v == ALL:
                    if allow:
                        b.add_all("net", flag)
                    else:
                        b.add_net("deny", "*", flag)
                else:
                    b.add_net("allow" if allow else "deny", v, f"{flag}={v}")
            except ValueError as exc:
                raise PolicyError(f"{flag}: {exc}") from None
        flag = f"--{'allow' if allow else 'deny'}-env"
        for v in _split(getattr(args, f"{'allow' if allow else 'deny'}_env", None)):
            if v == ALL:
                if allow:
                    b.add_all("env", flag)
                else:
                    b.add_env(False, "*", flag)
                continue
            try:
                b.add_env(allow, v, f"{flag}={v}")
            except ValueError as exc:
                raise PolicyError(f"{flag}: {exc}") from None
    if getattr(args, "allow_ffi", False):
        b.native["ffi"] = True
    for v in _split(getattr(args, "allow_run", None)):
        if v == ALL:
            b.native["run"] = True
            continue
        try:
            b.add_program(v)
        except ValueError as exc:
            raise PolicyError(f"--allow-run: {exc}") from None
    for v in _split(getattr(args, "encrypted", None)):
        try:
            b.add_encrypted(v, f"--encrypted={v}", cwd)
        except ValueError as exc:
            raise PolicyError(f"--encrypted: {exc}") from None


def build(args: argparse.Namespace, kind: str | None = None, target: str | None = None,
          cwd: str | None = None) -> Policy:
    """The policy the runner uses: the file (or pyproject table, or defaults), then the flags on top."""
    cwd = cwd or os.getcwd()
    file = getattr(args, "policy", None)
    if file:
        b = load_file(file, kind=kind, target=target, cwd=cwd)
    else:
        found = find_pyproject(cwd)
        b = load_file(found, kind=kind, target=target, cwd=cwd) if found else Builder()
        if not found:
            b.add_defaults(kind, target, cwd)
    apply_flags(b, args, cwd)
    return b.build()


def parse(flags: Sequence[str] = (), kind: str | None = None, target: str | None = None,
          cwd: str | None = None) -> Policy:
    """A policy from command-line style flags, for the library API:
    `Enclave(policy=policy.parse(["--allow-read=data", "--policy=p.toml"], "path", "app.py"))`."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_arguments(parser)
    try:
        args, extra = parser.parse_known_args(list(flags))
    except argparse.ArgumentError as exc:
        raise PolicyError(f"bad policy flag: {exc}") from None
    if extra:
        raise PolicyError(f"not a policy flag: {' '.join(extra)}")
    return build(args, kind, target, cwd)


def from_args(args: argparse.Namespace, kind: str | None = None, target: str | None = None) -> Access:
    """The Access the runner hands down.  Raises PolicyError for a policy that cannot be used."""
    if getattr(args, "learn", None):
        return Learner(build_default(kind, target), args.learn)
    return build(args, kind, target)


def from_spawned(data: dict[str, Any], args: argparse.Namespace) -> Access:
    """The policy of a child enclave (`--spawned`): the parent host's copy, then any flags given on top.

    The parent's host builds the child's command line itself and lets no flag of the enclave's choosing onto it
    (ocall_bridge/pyargv.py); flags here come only from whoever runs the runner by hand."""
    base = from_data(data)
    if not isinstance(base, Policy):
        return base  # learn mode's parent: everything allowed, as inside the parent
    b = Builder()
    b.read, b.write, b.connect, b.bind = base.read, base.write, list(base.connect), list(base.bind)
    b.net_all, b.net_deny, b.env_all = base.net_all, list(base.net_deny), base.env_all
    b.env_allow, b.env_deny, b.env_set = list(base.env_allow), list(base.env_deny), dict(base.env_set)
    b.families, b.call_allow = set(), set(base.calls)
    b.native, b.source, b.violation = dict(base.native), base.source, base.violation
    b.encrypted, b.encrypted_bound = list(base.encrypted), base.encrypted_bound
    b.programs = dict(base.programs)
    apply_flags(b, args)
    return b.build()
