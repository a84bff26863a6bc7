"""The questions a policy answers, asked on both sides of the boundary.

`posix_shim.policy` builds the real policy from TOML and flags and hands it down; this module only fixes the
interface, so that lower layers never import upward.  `ALLOW_ALL` is what `-A` means.
"""

from __future__ import annotations

import errno as _errno
import os as _os
from typing import Any

from .platform import MESSAGE, clear_of, forbidden

# Flags that make open() a write: asking for write access, creating, truncating or appending.
_WRITE_FLAGS = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC | _os.O_APPEND


def open_kinds(flags: int) -> tuple[str, ...]:
    """The resource kinds an open(2) with these flags touches."""
    if flags & (_os.O_WRONLY | _os.O_RDWR) == _os.O_WRONLY:
        return ("write",)
    if flags & _WRITE_FLAGS:
        return ("read", "write")
    return ("read",)


class Absent(str):
    """A denial whose answer is ENOENT, not EACCES: the metadata of a path outside everything the policy grants.

    Why: programs probe for optional files by stat (pytest, black and git-aware tools look for a config file in
    every folder above their own; `Path.exists()` and `Path.is_file()` before Python 3.13 raise on EACCES and
    answer False only on ENOENT), so "permission denied" for a name the enclave was never given crashes them
    where the native run just moves on.  Such a path is not in the enclave's view of the file system, and the
    answer is the same whether or not the host has a file there, so it tells the enclave nothing.  A path an
    explicit deny rule covers keeps EACCES: there the policy's author asked for a refusal.  The text is still the
    denial message (which flag would allow it), and the trace and --learn see the call as denied."""

    __slots__ = ()
    errno = _errno.ENOENT


def denial_errno(reason: str) -> int:
    """The errno a denial is answered with: ENOENT for an Absent one, else EACCES."""
    return reason.errno if isinstance(reason, Absent) else _errno.EACCES


def normalized(path: bytes) -> bytes:
    """os.path.normpath(path), without its cost for the absolute paths the enclave already normalizes: one that
    has no empty, "." or ".." component and no trailing slash is its own normal form."""
    if path.startswith(b"/") and b"//" not in path and b"/." not in path and (path == b"/" or path[-1:] != b"/"):
        return path
    return _os.path.normpath(path)


class Access:
    """Everything allowed.  Subclasses answer `call_allowed` (ENOSYS) and `check` (EACCES)."""

    # What the enclave does when it catches the host lying: "raise" OSError(EIO), or "abort" the enclave.
    violation = "raise"
    # Folders whose files are stored encrypted (enclave_libc/encfs.py), and what their key is bound to.
    encrypted: tuple[bytes, ...] = ()
    encrypted_bound = "signer"

    def call_allowed(self, name: str) -> bool:
        return True

    def check(self, call: str, kind: str, resource: Any) -> str | None:
        """None when `call` may touch `resource` as `kind`; otherwise the denial message.

        kind is "read", "write", "stat", "connect", "bind" or "resolve"; resource is an absolute path (bytes), a
        SOCKADDR record (family, host, port, flowinfo, scope_id, path), or for "resolve" the host name (str)
        given to getaddrinfo.  Even "everything" excludes the platform's sealing secret.
        """
        if isinstance(resource, bytes) and not clear_of(resource, kind) and forbidden(normalized(resource), kind):
            return MESSAGE
        return None

    def env_allowed(self, name: str) -> bool:
        """Whether the host environment variable `name` is visible inside the enclave."""
        return True

    def env_values(self) -> dict[str, str]:
        """Variables the policy itself sets inside the enclave (they win over the host's)."""
        return {}

    def native_allowed(self, what: str) -> bool:
        """Whether the program may bypass the enclave with native code: "ffi" (ctypes/cffi loading libraries)
        or "run" (subprocess, fork, exec, os.system).  Tripwires ask; the enclave cannot serve either."""
        return True

    def run_programs(self) -> dict[str, str]:
        """Host programs the enclave may run by name (--allow-run=NAME): name -> the absolute path it resolved to
        when the policy was loaded.  They run outside the enclave; `-A` grants none."""
        return {}

    def roots(self, kind: str) -> tuple[bytes, ...] | None:
        """The folders (or single files) beneath which the host confines `kind` ("read", "write", "stat") path
        access, deepest first; None when nothing is confined (everything allowed)."""
        return None

    def denials_within(self, root: bytes) -> bool:
        """Whether some denied path lies within `root` (the host then refuses to follow symlinks there blindly)."""
        return False

    def to_data(self) -> dict[str, Any]:
        """Plain data (JSON-able) from which the other side rebuilds the same policy."""
        return {"allow_all": True}


ALLOW_ALL = Access()
