"""The allowlist policy (minimal until the policy issue lands: -A / allow-all only)."""

from __future__ import annotations

import argparse

from ocall_bridge.access import ALLOW_ALL, Access


class PolicyError(ValueError):
    """A policy that cannot be used: the message names the file, key and problem."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-A", "--allow-all", action="store_true", help="allow every call and resource")


def from_args(args: argparse.Namespace) -> Access:
    return ALLOW_ALL
