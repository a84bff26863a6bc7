"""AF_UNIX socket paths on the host, confined like any file path (the sockets family's bind/connect/sendto).

Apart from confine.py, which it uses: a socket name is reached through its descriptor's magic link for a
connect, and created through the real path of its confined parent for a bind (there is no bindat(2)).
"""

from __future__ import annotations

import errno
import logging
import stat as _stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..originals import os
from .confine import _WRITE, AT_FDCWD, O_PATH, Escape, confiner_for, fd_path

log = logging.getLogger("posix_shim.host")


@contextmanager
def unix_path(access: Any, address: Any, kind: str) -> Iterator[Any]:
    """The address to hand to bind/connect/sendto for an AF_UNIX socket path, confined like any file path.

    connect/sendto: the socket file is resolved beneath its root and reached through its descriptor's magic link
    (/proc/self/fd/N), so a symlink cannot redirect the connection.  bind must create the name, and there is no
    bindat(2): the parent directory is resolved beneath its root, the kernel's real path of that directory is
    used, and afterwards the new socket must be found in that very directory - a swap in between is refused
    (the stray name it may have created elsewhere is logged).  Anything that is not a filesystem path (an IP
    address tuple, the abstract namespace, autobind) passes through unchanged.
    """
    conf = confiner_for(access)
    if conf is None or not isinstance(address, bytes) or not address or address.startswith(b"\0"):
        yield address
        return
    if kind != "bind":
        fd = conf.open_fd(address, _WRITE, O_PATH)
        try:
            yield b"/proc/self/fd/%d" % fd
        finally:
            os.close(fd)
        return
    d, name, own = conf.parent(address, _WRITE, errno.EADDRINUSE)
    try:
        if d == AT_FDCWD:
            yield address
            return
        target = fd_path(d).rstrip(b"/") + b"/" + name
        if not target.startswith(b"/") or len(target) > 107:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        yield target
        try:
            st = os.stat(name, dir_fd=d, follow_symlinks=False)
        except OSError:
            st = None
        if st is None or not _stat.S_ISSOCK(st.st_mode):
            log.warning("bind(%r) changed while it was being resolved: the name was created at %r instead",
                        address, target)
            raise Escape(f"{os.fsdecode(address)} changed while it was being resolved")
    finally:
        if own:
            os.close(d)
