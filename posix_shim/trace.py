"""Tracing the boundary (the trace issue fills this in): command-line options and backend options."""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Trace, summary and injection flags (none yet)."""


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options for Enclave(**options) derived from the trace flags."""
    return {}
