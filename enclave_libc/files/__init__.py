"""The `files` family inside the enclave: the `os` file functions on the `files` ocalls.

Same signatures, return types and exceptions as `posix`; paths in the caller's type, fds are enclave fds.  One job
per module: `args` (arguments and results as the native functions take and give them), `fdio` (open, I/O,
pipes, descriptor state, fcntl), `paths` (metadata, names, permissions, times), `cwd` (working directory and
umask, kept inside), `terminal` (terminals and the calls refused), `xattrs` (extended attributes).

PATCHES is derived: every function registered with `@interposed` in a module of this package replaces its
original (enclave_libc/patches.py), so a new module or function needs no list here.  The names other modules
call (`files.open`, `files.pread`...) are re-exported below for them and for mypy.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from ..patches import patches_of
from .args import _fd_of, _like, _path, stat_result
from .cwd import chdir, fchdir, getcwd, getcwdb, umask
from .fdio import (
    close,
    closerange,
    dup,
    dup2,
    fcntl,
    fdatasync,
    flock,
    fstat,
    fsync,
    ftruncate,
    get_blocking,
    get_inheritable,
    ioctl,
    lockf,
    lseek,
    open,
    pipe,
    pipe2,
    posix_fadvise,
    posix_fallocate,
    pread,
    pread_into,
    preadv,
    pwrite,
    pwritev,
    read,
    read_into,
    readv,
    sendfile,
    set_blocking,
    set_inheritable,
    sync,
    write,
    writev,
)
from .paths import (
    access,
    chmod,
    chown,
    fchmod,
    fchown,
    fstatvfs,
    lchown,
    link,
    lstat,
    mkdir,
    mkfifo,
    readlink,
    remove,
    rename,
    replace,
    rmdir,
    stat,
    statvfs,
    symlink,
    truncate,
    unlink,
    utime,
)
from .terminal import device_encoding, get_terminal_size, isatty, mmap, ttyname

MODULES = tuple(importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__))
PATCHES: dict[Any, Any] = patches_of(*MODULES)

__all__ = [
    "PATCHES", "_fd_of", "_like", "_path", "stat_result", "chdir", "fchdir", "getcwd", "getcwdb", "umask", "close",
    "closerange", "dup", "dup2", "fcntl", "fdatasync", "flock", "fstat", "fsync", "ftruncate", "get_blocking",
    "get_inheritable", "ioctl", "lockf", "lseek", "open", "pipe", "pipe2", "posix_fadvise", "posix_fallocate",
    "pread", "pread_into", "preadv", "pwrite", "pwritev", "read", "read_into", "readv", "sendfile", "set_blocking",
    "set_inheritable", "sync", "write", "writev", "access", "chmod", "chown", "fchmod", "fchown", "fstatvfs",
    "lchown", "link", "lstat", "mkdir", "mkfifo", "readlink", "remove", "rename", "replace", "rmdir", "stat",
    "statvfs", "symlink", "truncate", "unlink", "utime", "device_encoding", "get_terminal_size", "isatty", "mmap",
    "ttyname",
]
