"""Errors that cross layers: what the enclave sees when the host lies."""

from __future__ import annotations

import errno


class HostViolation(OSError):
    """The host answered something the call cannot legitimately answer (an Iago attack, or a broken host).

    It is an OSError with errno EIO, so `except OSError` code keeps working; the enclave never acts on the lie.
    """

    def __init__(self, call: str, problem: str) -> None:
        super().__init__(errno.EIO, f"posix_shim: host violation in {call}: {problem}")
        self.call = call
        self.problem = problem


class HostGone(OSError):
    """The host process died or closed the channel: no ocall can be answered any more."""

    def __init__(self, detail: str = "the host closed the channel") -> None:
        super().__init__(errno.EIO, f"posix_shim: host is gone ({detail})")


class TableError(RuntimeError):
    """The ocall table (or a map derived from it) breaks one of its own rules: a bug in this build, found at import.

    A plain `assert` would do the same check, but `python -O` removes asserts, and a table with two rows under one
    number would then route one call to the other's host function.
    """


def require(ok: object, problem: str) -> None:
    """Raise TableError(problem) unless `ok`: an invariant that survives `python -O`."""
    if not ok:
        raise TableError(f"posix_shim: broken table: {problem}")
