"""The default policy: what an ordinary script needs to run, and nothing that names the host's user.

Kept apart from the builder because it is the one place that decides what is granted without being asked
(reviewed on its own: every entry says why it is harmless), while the builder only accumulates rules.
"""

from __future__ import annotations

import os
import site
import sys

from .model import covers, normalize
from .safe_env import SAFE_ENV  # noqa: F401  (re-exported: the builder and the package read it here)

# Files the C library reads by itself on behalf of ordinary calls (user and group names for pwd/grp and
# Path.owner(), the time zone for localtime, service and protocol names, the loader's cache for an extension
# module's dependencies, the hosts file for "localhost").  On the confined process backend native code's opens
# are checked by the host like any other, so without these, `pathlib.Path.owner()` or `time.localtime()` would
# fail inside where they work natively.  Nothing here is a secret: all are world-readable by design.
LIBC_CONFIGURATION = ("/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/localtime", "/usr/share/zoneinfo",
                      "/etc/ld.so.cache", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf", "/etc/services",
                      "/etc/protocols", "/etc/ssl/openssl.cnf", "/usr/lib/ssl/openssl.cnf", "/usr/share/locale",
                      # The terminal descriptions readline and curses load (pdb and the REPL import readline).
                      "/etc/terminfo", "/usr/share/terminfo",
                      # The public CA certificates (ssl.create_default_context verifies servers with them).
                      "/etc/ssl/certs", "/usr/share/ca-certificates",
                      # What platform.freedesktop_os_release() and pip's user agent read to name the system.
                      "/etc/os-release", "/etc/debian_version", "/etc/lsb-release")
# The shared libraries an extension module links against (libcrypto for hashlib, libsqlite3, libz, libffi ...):
# the dynamic loader opens them natively when the module is imported.  Read-only, and public by nature.
SYSTEM_LIBRARIES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")


def default_paths(kind: str | None, target: str | None, cwd: str) -> list[tuple[str, bytes | str, str]]:
    """(access kind, path, origin) of every default grant, in the order they are added (which `describe`
    shows): the Python installation, the script's folder, the current directory, devices, the C library's
    configuration and the shared libraries."""
    out: list[tuple[str, bytes | str, str]] = []
    install = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    try:
        install += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # a site module without these (embedded builds)
        pass
    # sys.path[0] is where the runner itself was started from (the cwd for `python -m posix_shim`), not part
    # of the installation; the program's own sys.path[0] is its script folder or the cwd, granted below.
    install += [p for p in sys.path[1:] if p]
    kept: list[bytes] = []
    for p in sorted({normalize(os.fsencode(os.path.abspath(p))) for p in install}, key=lambda p: (len(p), p)):
        if os.path.exists(p) and not any(covers(k, p) for k in kept):  # nested entries add nothing
            kept.append(p)
            out.append(("read", p, "default: the Python installation"))
    if kind == "path" and target and target != "-":
        out.append(("read", os.path.dirname(os.path.abspath(target)), "default: the script's folder"))
    out.append(("read", cwd, "default: the current directory"))
    out.append(("write", cwd, "default: the current directory"))
    for dev in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"):
        out.append(("read", dev, "default: devices"))
    for conf in LIBC_CONFIGURATION:
        # Granted whether or not it exists here: a program probing for one (/etc/lsb-release) must get the
        # FileNotFoundError it handles natively, not a PermissionError.
        out.append(("read", conf, "default: the C library's configuration"))
    for lib in SYSTEM_LIBRARIES:
        if os.path.isdir(lib):
            out.append(("read", lib, "default: shared libraries"))
    out.append(("write", "/dev/null", "default: devices"))
    return out
