"""The command line: `python -m posix_shim [OPTIONS] (SCRIPT | -m MODULE | -c CODE) [ARGS...]`.

Options come first; the program and its own arguments come after and are passed through untouched, exactly as
`python` takes them.  Subcommands: `policy check FILE`, `compat`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import policy, trace
from .enclave import BACKENDS, Enclave

PROG = "posix-shim"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [OPTIONS] (SCRIPT | -m MODULE | -c CODE) [ARGS...]",
        description="Run a Python program inside an enclave: its POSIX calls become validated ocalls to an "
                    "untrusted host, under an allowlist policy.",
        epilog="Subcommands: 'policy check FILE', 'compat'.  Everything after the program is passed to it.",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="sim",
                        help="where the enclave runs: sim (in-process) or process (a child process)")
    policy.add_arguments(parser)
    trace.add_arguments(parser)
    from . import __version__  # the one place the version is written (pyproject.toml reads it too)

    parser.add_argument("--version", action="version", version=f"posix_shim {__version__}")
    return parser


def _takes_value(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings that consume the next word (nargs None/1) rather than only `--opt=value`."""
    out = set()
    for action in parser._actions:
        if action.nargs in (None, 1) and action.option_strings and not isinstance(
                action, argparse._StoreTrueAction | argparse._StoreFalseAction | argparse._VersionAction
                | argparse._HelpAction | argparse._StoreConstAction | argparse._CountAction):
            out.update(action.option_strings)
    return out


def split_argv(argv: Sequence[str], parser: argparse.ArgumentParser) -> tuple[list[str], str | None, str | None,
                                                                                  list[str]]:
    """(runner options, kind, target, program args).  kind is 'path', 'module', 'code' or None."""
    takes = _takes_value(parser)
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-m", "-c"):
            if i + 1 >= len(argv):
                parser.error(f"argument {word}: expected one argument")
            return list(argv[:i]), "module" if word == "-m" else "code", argv[i + 1], list(argv[i + 2:])
        if word == "--":
            if i + 1 >= len(argv):
                return list(argv[:i]), None, None, []
            return list(argv[:i]), "path", argv[i + 1], list(argv[i + 2:])
        if not word.startswith("-") or word == "-":
            return list(argv[:i]), "path", word, list(argv[i + 1:])
        i += 2 if word in takes else 1
    return list(argv), None, None, []


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "policy":
        from .policy_cli import main as policy_main

        return policy_main(argv[1:])
    if argv and argv[0] == "compat":
        from .compat import main as compat_main

        return compat_main(argv[1:])
    parser = build_parser()
    options, kind, target, args = split_argv(argv, parser)
    ns = parser.parse_args(options)
    if kind is None:
        parser.error("nothing to run: give a SCRIPT, -m MODULE or -c CODE")
    try:
        access = policy.from_args(ns, kind, target)
    except policy.PolicyError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if kind == "path" and target != "-" and not os.path.exists(target):
        # CPython's own wording and status for a missing script.
        print(f"{sys.executable}: can't open file {os.path.join(os.getcwd(), target)!r}: [Errno 2] No such file or "
              f"directory", file=sys.stderr)
        return 2
    with Enclave(policy=access, backend=ns.backend, **trace.backend_options(ns)) as enclave:
        if kind == "path" and target == "-":
            status = enclave.run_stdin(sys.stdin.read(), args)
        else:
            status = {"path": enclave.run_path, "module": enclave.run_module, "code": enclave.run_code}[kind](
                target, args)
    note = policy.finish(access, " ".join(argv))  # --learn writes its policy here
    if note:
        print(f"{PROG}: {note}", file=sys.stderr)
    return status
