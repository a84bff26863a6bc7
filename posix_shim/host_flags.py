"""The runner's flags for how the host behaves toward the enclave, as plain `Enclave(**options)`:

* `--inject SPEC`       host-side faults and lies (`ocall_bridge/inject.py` parses and applies them);
* `--on-violation MODE` what a lie the enclave caught costs it: an OSError(EIO) in the program (`raise`, the
  default) or the enclave aborted at once with status 70 (`abort`); the command line wins over the policy's
  `violation` key (`wiring.make_client`);
* `--strict-time`       ask the host on every clock read instead of the cached clock (both backends).

Apart from tracing (`trace.py`), which only watches: these change what the program sees.  A bad value raises
ValueError naming the flag; the caller decides how the command line reports it.
"""

from __future__ import annotations

import argparse
from typing import Any

VIOLATION_MODES = ("raise", "abort")


def add_arguments(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """The flags, in the group they are listed under in --help."""
    group.add_argument("--inject", action="append", default=[], metavar="SPEC",
                       help="host-side fault injection: CALL:error=ERRNO[:when=N[+STEP]], CALL:short[=N], "
                            "CALL:delay=MS, CALL:lie=KIND (repeatable)")
    group.add_argument("--on-violation", choices=VIOLATION_MODES, default=None,
                       help="when the host lies: raise OSError(EIO) in the program (default), or abort the enclave "
                            "at once with status 70")
    group.add_argument("--strict-time", action="store_true",
                       help="ask the host on every clock read (default: a cached clock, "
                            "resynced with the host every 10 ms; docs/time-env.md)")


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The Enclave options these flags ask for (plain data, so any backend can carry them).

    Every --inject spec is parsed here, before anything starts, so a typo is a usage error rather than a
    fault that never fires."""
    out: dict[str, Any] = {}
    specs = list(getattr(args, "inject", None) or [])
    if specs:
        from ocall_bridge import inject  # only with --inject: not on every start

        for spec in specs:
            try:
                inject.parse(spec)
            except inject.InjectSpecError as exc:
                raise ValueError(f"--inject {exc}") from None
        out["inject"] = specs
    if getattr(args, "on_violation", None):
        out["violation"] = args.on_violation
    if getattr(args, "strict_time", False):
        out["strict_time"] = True
    return out


__all__ = ["VIOLATION_MODES", "add_arguments", "options"]
