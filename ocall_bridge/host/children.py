"""Host side of the `children` family: Python children of an enclave, started as new enclaves.

A fork cannot be served (the enclave's memory is not the host's to copy), but what a program asks for when it
runs `sys.executable` is a new Python program, and that the host can give: it starts the runner
(`python -m posix_shim --backend=B --spawned=FD PROGRAM...`) with the enclave's handles as the new program's
standard streams, and the new runner makes a new enclave of the same backend under the policy this host holds.
The enclave never sends a policy: the child's comes from the host's own copy (`host.access.to_data()`), so it
is the same as the parent's, never wider.  What the enclave does choose, the command line, is checked here
(`ocall_bridge.pyargv`): only this host's interpreter, and only words the interpreter itself would take, so no
runner option can be slipped in before the program.

Only the children this host started can be waited for or signalled, and only until they are reaped (a reaped
pid may name another process by then); any other pid is ECHILD/ESRCH, as natively for a process that is not
one's child.  The backend wiring (posix_shim/wiring.py) sets `host.child_launcher`; a host without one (built
by hand, in tests) starts nothing (ENOSYS).
"""

from __future__ import annotations

import errno
import json
import logging
import stat
import threading
from dataclasses import dataclass

from ..pyargv import NotPythonArgv, python_command
from .real import fcntl, os, signal
from .runtime import Host

log = logging.getLogger("posix_shim.host")

SPEC_FD = 3  # where the child runner finds its spec (policy and cwd), as --spawned=3


@dataclass(frozen=True)
class Launcher:
    """How this host starts a child enclave: the interpreter, the runner's module, and the backend."""

    interpreter: str
    backend: str
    module: str = "posix_shim"

    def command(self, program: list[str]) -> list[str]:
        return [self.interpreter, "-m", self.module, f"--backend={self.backend}", f"--spawned={SPEC_FD}", *program]


def _state(host: Host) -> tuple[threading.Lock, dict[int, int]]:
    """This host's lock and its children: pid -> a pidfd, which names that process even after its pid is
    reused, so a signal can never reach another process."""
    state = getattr(host, "_children", None)
    if state is None:
        state = host._children = (threading.Lock(), {})  # type: ignore[attr-defined]
    return state


def same_interpreter(executable: bytes, interpreter: str) -> bool:
    """Whether `executable` is this host's interpreter: the same path, or a path to the very same file."""
    own = os.fsencode(interpreter)
    if executable == own:
        return True
    try:
        a, b = os.stat(executable), os.stat(own)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def child_command(launcher: Launcher, executable: bytes, argv: list[bytes]) -> list[str]:
    """The runner's command line for `executable argv...`, or PermissionError naming what is refused."""
    if not same_interpreter(executable, launcher.interpreter):
        raise OSError(errno.EACCES, f"spawn: only {launcher.interpreter} may be started as a child enclave, "
                                    f"not {os.fsdecode(executable)!r}")
    try:
        program = python_command([os.fsdecode(w) for w in argv[1:]])
    except NotPythonArgv as exc:
        raise OSError(errno.EACCES, f"spawn: {exc}") from None
    return launcher.command(program)


def _spec_fd(host: Host, cwd: bytes) -> int:
    """A memory file holding what the child runner needs (the policy, its cwd), read once through --spawned."""
    spec = json.dumps({"policy": host.access.to_data(), "cwd": os.fsdecode(cwd)}).encode()
    fd = os.memfd_create("posix_shim-spawn", os.MFD_CLOEXEC)
    try:
        view = memoryview(spec)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, 0)  # SEEK_SET
    except BaseException:
        os.close(fd)
        raise
    return fd


def spawn(host: Host, executable: bytes, argv: bytes, cwd: bytes, stdin: int, stdout: int,
          stderr: int) -> int:
    launcher: Launcher | None = getattr(host, "child_launcher", None)
    if launcher is None:
        raise OSError(errno.ENOSYS, "this host starts no child enclaves")
    command = child_command(launcher, executable, argv.split(b"\0"))
    # The child starts in `cwd`: the host answers whether it exists only where the policy shows metadata.  (Not a
    # `resources` entry of the row: the table's generic re-check harness cannot drive a real spawn.)
    if not cwd.startswith(b"/"):
        raise OSError(errno.EINVAL, "spawn: the working directory must be absolute")
    denial = host.access.check("spawn", "stat", cwd)
    if denial:
        raise OSError(errno.EACCES, denial)
    if not stat.S_ISDIR(os.stat(cwd).st_mode):
        raise OSError(errno.ENOTDIR, "spawn: the working directory is not a directory")
    sources = [host.handles.get(h).fd if h >= 0 else None for h in (stdin, stdout, stderr)]
    # Every descriptor the child gets is first copied above the standard ones (close-on-exec), so that placing
    # one at 0-3 cannot overwrite another still to be placed; the child gets exactly these four.
    owned: list[int] = []
    try:
        for i, fd in enumerate(sources):
            if fd is None:
                fd = os.open(b"/dev/null", os.O_RDONLY if i == 0 else os.O_WRONLY)
                owned.append(fd)
            owned.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
            sources[i] = owned[-1]
        spec = _spec_fd(host, cwd)
        owned.append(spec)
        owned.append(fcntl.fcntl(spec, fcntl.F_DUPFD_CLOEXEC, 10))
        placed = [*sources, owned[-1]]
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(placed)]
        env = dict(os.environ)  # the host's own environment: the child's host filters it by the same policy
        pid = os.posix_spawn(os.fsencode(launcher.interpreter), [os.fsencode(w) for w in command], env,
                             file_actions=actions, setsigmask=(), setsigdef=(signal.SIGPIPE,))
    finally:
        for fd in owned:
            os.close(fd)
    lock, children = _state(host)
    with lock:
        children[pid] = os.pidfd_open(pid)
    log.info("started child enclave %d: %s", pid, " ".join(command[:6]))
    return pid


def waitchild(host: Host, pid: int, nohang: bool) -> tuple[int, int]:
    lock, children = _state(host)
    with lock:
        if pid not in children:
            raise OSError(errno.ECHILD, "not a child of this enclave")
    got, status = os.waitpid(pid, os.WNOHANG if nohang else 0)
    if got:
        with lock:
            pidfd = children.pop(pid, None)
        if pidfd is not None:
            os.close(pidfd)
    return got, status & 0xFFFF


def signalchild(host: Host, pid: int, sig: int) -> None:
    lock, children = _state(host)
    with lock:  # held while signalling: the pidfd cannot be closed under the signal
        pidfd = children.get(pid)
        if pidfd is None:
            raise OSError(errno.ESRCH, "not a running child of this enclave")
        signal.pidfd_send_signal(pidfd, sig)


__all__ = ["Launcher", "SPEC_FD", "child_command", "same_interpreter", "signalchild", "spawn", "waitchild"]

