"""The errors a program sees inside the enclave, shaped like native ones so `except OSError` keeps working."""

from __future__ import annotations

import errno
import os

from ocall_bridge.access import Absent
from ocall_bridge.errors import HostGone, HostViolation

_strerror = os.strerror

__all__ = ["HostGone", "HostViolation", "PolicyDenied", "PolicyHidden", "policy_error", "Unsupported", "oserror",
           "with_filename", "EBADF_ERROR"]


class _Refusal(OSError):
    """What a policy refusal carries, whichever errno it answers with: the call, the resource, and a message that
    names the flag or policy key that would allow it."""

    errno_value = errno.EACCES

    def __init__(self, call: str, resource: object, reason: str) -> None:
        super().__init__(self.errno_value, f"posix_shim: {call}({resource!r}) denied: {reason}")
        self.call = call
        self.resource = resource
        self.reason = reason

    def __str__(self) -> str:
        return self.strerror or super().__str__()  # strerror is always set by __init__; typed Optional by OSError


class PolicyDenied(_Refusal, PermissionError):
    """A call the policy does not allow to touch this resource: errno EACCES."""


class PolicyHidden(_Refusal, FileNotFoundError):
    """A metadata call on a path outside everything the policy grants (ocall_bridge.access.Absent): errno ENOENT,
    so a program probing for an optional file moves on as natively."""

    errno_value = errno.ENOENT


def policy_error(call: str, resource: object, reason: str) -> PolicyDenied | PolicyHidden:
    """The exception a denial raises: PolicyHidden (ENOENT) for an Absent reason, else PolicyDenied (EACCES)."""
    if isinstance(reason, Absent):
        return PolicyHidden(call, resource, reason)
    return PolicyDenied(call, resource, reason)


class Unsupported(OSError):
    """A call outside the enclave's POSIX subset: errno ENOSYS, naming the call."""

    def __init__(self, call: str, detail: str = "") -> None:
        extra = f": {detail}" if detail else ""
        super().__init__(errno.ENOSYS, f"posix_shim: {call}() is outside the enclave's supported POSIX subset{extra}")
        self.call = call

    def __str__(self) -> str:
        return self.strerror or super().__str__()  # strerror is always set by __init__; typed Optional by OSError


def oserror(err: int, filename: object = None, filename2: object = None) -> OSError:
    """The OSError (subclass chosen by errno) that the native call would raise."""
    if filename2 is not None:
        return OSError(err, _strerror(err), filename, None, filename2)
    if filename is not None:
        return OSError(err, _strerror(err), filename)
    return OSError(err, _strerror(err))


def with_filename(exc: OSError, filename: object, filename2: object = None) -> OSError:
    """Attach the caller's own argument to an error from an ocall, as the native call would show it."""
    if isinstance(exc, PolicyDenied | PolicyHidden | Unsupported | HostViolation | HostGone) or exc.errno is None:
        return exc
    return oserror(exc.errno, filename, filename2)


EBADF_ERROR = errno.EBADF
