"""The command line: `python -m posix_shim [OPTIONS] (SCRIPT | -m MODULE | -c CODE | -) [ARGS...]`.

Options come first; the program and its own arguments come after and are passed through untouched, exactly as
`python` takes them.  Subcommands: `policy check [FILE]`, `compat`, and `keygen`, `sign`, `measure`, `quote`
(integrity_cli.py), `sealed inspect FILE`.

Options with an optional value (`--allow-read[=PATHS]`, `--trace[=FILE]`) take it only after `=`, because the
next word may be the program.  `--allow-read /etc/hostname app.py` would therefore grant every read and run
/etc/hostname; that is refused (`bare_flag_error`) unless the program is plainly a Python program.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import integrity_cli, policy, prestart, trace
from .enclave import BACKENDS, DEFAULT_BACKEND, Enclave, EnclaveUnavailable

PROG = "posix-shim"
USAGE = f"{PROG} [OPTIONS] (SCRIPT | -m MODULE | -c CODE | -) [ARGS...]"
SUBCOMMANDS = ("Subcommands: 'policy check [FILE]', 'compat', 'keygen', 'sign', 'measure', 'quote verify', "
               "'sealed inspect FILE'.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=USAGE,
        description="Run a Python program inside an enclave: its POSIX calls become validated ocalls to an "
                    "untrusted host, under an allowlist policy.",
        epilog=f"{SUBCOMMANDS}  '-' reads the program from standard input.  Everything after the program is "
               f"passed to it.  Options with an optional value take it only after '=' (--allow-read=PATHS).",
    )
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                        help="where the enclave runs: process (default: a child process confined by the kernel - "
                             "seccomp, Landlock, no_new_privs - whose native calls the host checks too) or sim "
                             "(in this process: confines Python only - native code, C extensions and ctypes "
                             "are not stopped; for development and tests, like Asylo's simulated backend)")
    policy.add_arguments(parser)
    # A child enclave's runner (ocall_bridge/host/children.py): its policy and cwd come from the parent's host.
    parser.add_argument("--spawned", type=int, metavar="FD", help=argparse.SUPPRESS)
    trace.add_arguments(parser)
    integrity_cli.add_arguments(parser)
    from . import __version__  # the one place the version is written (pyproject.toml reads it too)

    parser.add_argument("--version", action="version", version=f"posix_shim {__version__}")
    return parser


def _takes_value(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings that consume the next word (nargs None/1) rather than only `--opt=value`."""
    out: set[str] = set()
    for action in parser._actions:
        if action.nargs in (None, 1) and action.option_strings and not isinstance(
                action, argparse._StoreTrueAction | argparse._StoreFalseAction | argparse._VersionAction
                | argparse._HelpAction | argparse._StoreConstAction | argparse._CountAction):
            out.update(action.option_strings)
    return out


def _optional_value(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings whose value is optional (nargs '?'): they take it only as `--opt=value`."""
    return {o for action in parser._actions if action.nargs == "?" for o in action.option_strings}


def looks_like_python(path: str) -> bool:
    """Whether `path` is plainly a Python program: a .py/.pyw/.pyz file, a folder or zip with __main__.py, or a
    file whose first line is a python shebang."""
    if path.endswith((".py", ".pyw", ".pyz")):
        return True
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "__main__.py"))
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    if head.startswith(b"PK"):
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                return "__main__.py" in z.namelist()
        except (OSError, zipfile.BadZipFile):
            return False
    return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]


def bare_flag_error(flag: str, program: str) -> str:
    """Why `FLAG PROGRAM` is refused: the user almost certainly meant `FLAG=PROGRAM` (the next word was a value,
    not the program).  Running it would grant everything the bare flag grants and run that value as Python."""
    return (f"{flag} takes a value only after '=' ({flag}={program}), so {program!r} would run as the program, "
            f"and it does not look like a Python program. Write {flag}={program}, or put '--' before the program "
            f"if it is one ({flag} -- {program} ...)")


def split_argv(argv: Sequence[str], parser: argparse.ArgumentParser) -> tuple[list[str], str | None, str | None,
                                                                                  list[str]]:
    """(runner options, kind, target, program args).  kind is 'path', 'module', 'code' or None."""
    takes = _takes_value(parser)
    optional = _optional_value(parser)
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
            if i and argv[i - 1] in optional and word != "-" and not looks_like_python(word):
                parser.error(bare_flag_error(argv[i - 1], word))
            return list(argv[:i]), "path", word, list(argv[i + 1:])
        i += 2 if word in takes else 1
    return list(argv), None, None, []


def _spawned(ns: argparse.Namespace) -> Any:
    """A child enclave's policy, read from the spec its parent's host left at descriptor `ns.spawned`; the runner
    moves to the child's working directory (the parent enclave's own) before anything else resolves a path."""
    with os.fdopen(ns.spawned, "rb") as f:
        spec = json.loads(f.read())
    os.chdir(spec["cwd"])
    ns.inherit = [(int(fd), int(real)) for fd, real in spec.get("fds") or ()]
    return policy.from_spawned(spec["policy"], ns)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "policy":
        from .policy.check import main as policy_main

        return policy_main(argv[1:])
    if argv and argv[0] == "sealed":
        from .sealed_cli import main as sealed_main

        return sealed_main(argv[1:])
    if argv and argv[0] == "compat":
        from .compat.cli import main as compat_main  # lazily: the report is a tool, not part of a run

        return compat_main(argv[1:])
    if argv and argv[0] in integrity_cli.SUBCOMMANDS:
        return integrity_cli.SUBCOMMANDS[argv[0]](argv[1:])
    parser = build_parser()
    options, kind, target, args = split_argv(argv, parser)
    ns = parser.parse_args(options)
    if ns.manifest:
        return integrity_cli.manifest_run(ns, kind, target, args, trace.backend_options(ns))
    if kind is None or target is None:
        parser.error("nothing to run: give a SCRIPT, -m MODULE or -c CODE")
    try:
        access = _spawned(ns) if ns.spawned is not None else policy.from_args(ns, kind, target)
    except policy.PolicyError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if kind == "path" and target != "-" and not os.path.exists(target):
        # CPython's own wording and status for a missing script.
        print(f"{sys.executable}: can't open file {os.path.join(os.getcwd(), target)!r}: [Errno 2] No such file or "
              f"directory", file=sys.stderr)
        return 2
    try:
        inherit = {"inherit": ns.inherit} if getattr(ns, "inherit", None) else {}
        enclave = Enclave(policy=access, backend=ns.backend, **trace.backend_options(ns), **inherit).start()
    except EnclaveUnavailable as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    prestart.resume_gc()  # the collector, paused by __main__ for the start-up, runs again for the program
    with enclave:
        if kind == "path" and target == "-":
            status = enclave.run_stdin(sys.stdin.read(), args)
        else:
            status = {"path": enclave.run_path, "module": enclave.run_module, "code": enclave.run_code}[kind](
                target, args)
    note = policy.finish(access, " ".join(argv))  # --learn writes its policy here
    if note:
        print(f"{PROG}: {note}", file=sys.stderr)
    return status
