"""Extended attributes inside the enclave: refused as on a file system without them (for now).

The path must exist (ENOENT otherwise, as natively), then ENOTSUP - which shutil.copystat and friends expect
and skip.
"""

from __future__ import annotations

import errno
from typing import Any

from ..errors import oserror
from ..patches import interposed
from .args import _path
from .fdio import fstat
from .paths import stat


def _no_xattrs(func: str, path: Any, follow_symlinks: bool = True) -> OSError:
    p = _path(path, func, allow_fd=True)
    if isinstance(p, int):
        fstat(p)
    else:
        stat(path, follow_symlinks=follow_symlinks)
    return oserror(errno.ENOTSUP, path if not isinstance(p, int) else None)


@interposed("stat", "lstat", "fstat")
def getxattr(path: Any, attribute: Any, *, follow_symlinks: bool = True) -> bytes:
    raise _no_xattrs("getxattr", path, follow_symlinks)


@interposed("stat", "lstat", "fstat")
def setxattr(path: Any, attribute: Any, value: Any, flags: int = 0, *, follow_symlinks: bool = True) -> None:
    raise _no_xattrs("setxattr", path, follow_symlinks)


@interposed("stat", "lstat", "fstat")
def removexattr(path: Any, attribute: Any, *, follow_symlinks: bool = True) -> None:
    raise _no_xattrs("removexattr", path, follow_symlinks)


@interposed("stat", "lstat", "fstat")
def listxattr(path: Any = None, *, follow_symlinks: bool = True) -> list[str]:
    raise _no_xattrs("listxattr", "." if path is None else path, follow_symlinks)
