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
