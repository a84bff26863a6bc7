"""Host side of the `process` family: who the enclave runs as, and which host environment it may see.

The identity answers describe the host process, the one the user started and can signal.  The environment is
the sandbox view of the boundary: the enclave asks for the host's variables, and the host hands over only those
its own copy of the policy allows, whatever the enclave would have accepted.
"""

from __future__ import annotations

import logging

from ..originals import os
from .runtime import Host

log = logging.getLogger("posix_shim.host")

MAX_NAME = 1020  # the envvar record's limits (calls.ENVVAR)
MAX_VALUE = 32 << 10
PAGE = 30  # calls.ENV_PAGE: variables per answer


def uname(host: Host) -> tuple[str, str, str, str, str]:
    u = os.uname()
    return (u.sysname, u.nodename, u.release, u.version, u.machine)


def getids(host: Host) -> tuple[int, int, int, int, int, int]:
    return (os.getpid(), os.getppid(), os.getuid(), os.geteuid(), os.getgid(), os.getegid())


def getgroups(host: Host) -> list[tuple[int]]:
    return [(gid,) for gid in os.getgroups()]


def getlogin(host: Host) -> str:
    return os.getlogin()


def environ(host: Host, after: bytes) -> list[tuple[bytes, bytes]]:
    """The next page of host variables the policy lets into the enclave, in name order after `after`.

    `os.environ` here is posix.environ, the dict the host's own `os.environ` reads and writes, so a variable
    an embedding program set with os.environ before starting the enclave is seen.  A variable too large for
    the record is left out (and logged), never truncated: half a value would be a lie.
    """
    page: list[tuple[bytes, bytes]] = []
    for name in sorted(n for n in list(os.environ) if n > after):
        value = os.environ.get(name)
        if value is None or not host.access.env_allowed(os.fsdecode(name)):
            continue
        if len(name) > MAX_NAME or len(value) > MAX_VALUE:
            log.warning("host environment variable %r is too large to hand to the enclave; left out", name)
            continue
        page.append((name, value))
        if len(page) == PAGE:
            break
    return page
