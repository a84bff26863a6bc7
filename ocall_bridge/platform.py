"""Where the simulated platform keeps its sealing secret, known to both sides so that both refuse to reach it.

On SGX the root sealing secret is fused into the CPU and only derived keys ever leave it (EGETKEY).  Here the
stand-in is one file the *host* keeps: 32 random bytes, mode 0600, created on first use.  Its path comes from
the host environment variable POSIX_SHIM_PLATFORM_SECRET, else `$XDG_STATE_HOME/posix_shim/platform-secret`
(`~/.local/state/...`).  Every policy - even "allow everything" - refuses the enclave any access to that file
and its folder (`forbidden`), so the program gets only the keys the host derives for its identity.

This is a check of the path as named, like the rest of the policy.  Under a confined policy the host also
re-checks where a symlink really leads (ocall_bridge/host/confine.py); under "allow everything" there is no
confinement, so a program that may create symlinks could name the secret through one - in the simulation only
(a hardware platform keeps the secret in the CPU, out of every file system).
"""

from __future__ import annotations

import os
import posixpath

# Captured at import, before any interposition: inside the enclave `os.environ` is the enclave's own and
# `os.getcwd`/`expanduser` are served by the enclave (expanduser may even ask the host for the uid), while the
# secret's path is a fact about the host.  These are the host's own objects and functions.
_environ = os.environ
_environ_data = _environ._data  # type: ignore[attr-defined]  # the bytes dict os.environ reads and writes
_ENV_KEY = os.fsencode("POSIX_SHIM_PLATFORM_SECRET")
_getcwd = os.getcwd
_HOME = os.path.expanduser("~")

ENV = "POSIX_SHIM_PLATFORM_SECRET"


def secret_path() -> bytes:
    """The absolute path of the platform secret file (it may not exist yet)."""
    given = _environ.get(ENV)
    if given:
        if given.startswith("~"):
            given = _HOME + given[1:]
        return os.fsencode(posixpath.normpath(posixpath.join(_getcwd(), given)))
    state = _environ.get("XDG_STATE_HOME") or posixpath.join(_HOME, ".local", "state")
    return os.fsencode(posixpath.normpath(posixpath.join(_getcwd(), state, "posix_shim", "platform-secret")))


# (the variable's raw value, the secret's path, its last name): one tuple, replaced whole, so that a thread reads
# a consistent set.
_CACHED: tuple[bytes | None, bytes, bytes] | None = None


def _current() -> tuple[bytes | None, bytes, bytes]:
    global _CACHED
    # Asked twice for every path ocall (the enclave's guard and the host's check): read the variable's raw bytes
    # (a dict lookup), and work out the path again only when it changed.
    given = _environ_data.get(_ENV_KEY)
    cached = _CACHED
    if cached is None or cached[0] != given:
        path = secret_path()
        cached = _CACHED = (given, path, path.rsplit(b"/", 1)[-1])
    return cached


def forbidden(path: bytes, kind: str = "read") -> bool:
    """Whether the enclave may never touch `path` (absolute, normalized) as `kind`: the secret itself for any
    kind, and for "write" also every folder above it (renaming one would move the secret to a reachable name)."""
    secret = _current()[1]
    if path == secret:
        return True
    return kind == "write" and secret.startswith(path.rstrip(b"/") + b"/")


def clear_of(path: bytes, kind: str) -> bool:
    """True when `path` (absolute, normalized or not) certainly does not name the secret as `kind`: for any kind
    but "write", a path without the secret's last name in it (normalizing only drops names, so the normal form of
    such a path cannot end in that name).  False means "ask `forbidden` about the normal form"."""
    if kind == "write":
        return False
    cached = _CACHED  # (_current, without its call when the variable has not changed)
    if cached is None or cached[0] != _environ_data.get(_ENV_KEY):
        cached = _current()
    return cached[2] not in path


MESSAGE = "the platform secret is never reachable from inside the enclave (sealing keys are derived by the host)"
