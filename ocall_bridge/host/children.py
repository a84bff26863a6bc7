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

from ..originals import os, posixsubprocess, signal
from ..pyargv import NotPythonArgv, python_command
from .runtime import Host

log = logging.getLogger("posix_shim.host")

@dataclass(frozen=True)
class Launcher:
    """How this host starts a child enclave: the interpreter, the runner's module, and the backend."""

    interpreter: str
    backend: str
    module: str = "posix_shim"

    def command(self, program: list[str], spec: int) -> list[str]:
        """The runner's command line: its own options, then the (checked) program; `spec` is the descriptor the
        runner reads its policy and cwd from."""
        return [self.interpreter, "-m", self.module, f"--backend={self.backend}", f"--spawned={spec}", *program]


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


def checked_program(launcher: Launcher, executable: bytes, argv: list[bytes]) -> list[str]:
    """The program part of `executable argv...` (ocall_bridge/pyargv.py), or PermissionError naming what is
    refused: anything but this host's interpreter, or a word that is not the interpreter's own form."""
    if not same_interpreter(executable, launcher.interpreter):
        raise OSError(errno.EACCES, f"spawn: only {launcher.interpreter} may be started as a child enclave, "
                                    f"not {os.fsdecode(executable)!r}")
    try:
        return python_command([os.fsdecode(w) for w in argv[1:]])
    except NotPythonArgv as exc:
        raise OSError(errno.EACCES, f"spawn: {exc}") from None


def _spec_fd(host: Host, cwd: bytes, fds: list[tuple[int, int]]) -> int:
    """A memory file holding what the child runner needs (the policy, its cwd, the descriptors it inherits and
    the enclave fd number each is to have), read once through --spawned."""
    spec = json.dumps({"policy": host.access.to_data(), "cwd": os.fsdecode(cwd), "fds": fds}).encode()
    fd = os.memfd_create("posix_shim-spawn", os.MFD_CLOEXEC)  # fork_exec's pass_fds clears CLOEXEC in the child
    try:
        view = memoryview(spec)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, 0)  # SEEK_SET
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_cwd(host: Host, call: str, cwd: bytes) -> None:
    """The child starts in `cwd`: the host answers whether it exists only where the policy shows metadata.  (Not
    a `resources` entry of the row: the table's generic re-check harness cannot drive a real spawn.)"""
    if not cwd.startswith(b"/"):
        raise OSError(errno.EINVAL, f"{call}: the working directory must be absolute")
    denial = host.access.check(call, "stat", cwd)
    if denial:
        raise OSError(errno.EACCES, denial)
    if not stat.S_ISDIR(os.stat(cwd).st_mode):
        raise OSError(errno.ENOTDIR, f"{call}: the working directory is not a directory")


def _start(host: Host, program: str, command: list[str], env: dict[bytes, bytes], cwd: bytes,
           stdio: tuple[int, int, int], keep: tuple[int, ...] = ()) -> int:
    """Start `program` (an absolute path) with the handles `stdio` as its 0-2 (-1: /dev/null), in `cwd`, with
    exactly `env`; of this host's descriptors it inherits only `keep`.  The real fork_exec subprocess uses
    (captured before any interposition), so an exec failure comes back as the errno it failed with."""
    sources = [host.handles.get(h).fd if h >= 0 else -1 for h in stdio]
    owned: list[int] = []
    try:
        for i, fd in enumerate(sources):
            if fd < 0:
                sources[i] = os.open(b"/dev/null", os.O_RDONLY if i == 0 else os.O_WRONLY)
                owned.append(sources[i])
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        owned.append(err_r)
        try:
            pid = posixsubprocess.fork_exec(
                [os.fsencode(w) for w in command], [os.fsencode(program)], True, tuple(sorted(keep)), cwd,
                [k + b"=" + v for k, v in env.items()], sources[0], -1, -1, sources[1], -1, sources[2],
                err_r, err_w, True, False, -1, None, None, None, -1, None, True)
        finally:
            os.close(err_w)
        failure = os.read(err_r, 4096)
    finally:
        for fd in owned:
            os.close(fd)
    if failure:  # "OSError:<errno hex>:<where>": the exec (or the chdir before it) failed; nothing runs
        os.waitpid(pid, 0)
        parts = failure.split(b":")
        code = int(parts[1], 16) if len(parts) > 1 and parts[0] == b"OSError" else errno.EIO
        raise OSError(code or errno.EIO, f"starting {program} failed")
    lock, children = _state(host)
    with lock:
        children[pid] = os.pidfd_open(pid)
    log.info("started child %d: %s", pid, " ".join(command[:6]))
    return pid


def spawn(host: Host, executable: bytes, argv: bytes, cwd: bytes, stdin: int, stdout: int, stderr: int,
          passed: list[tuple[int, int]]) -> int:
    launcher: Launcher | None = getattr(host, "child_launcher", None)
    if launcher is None:
        raise OSError(errno.ENOSYS, "this host starts no child enclaves")
    program = checked_program(launcher, executable, argv.split(b"\0"))
    _check_cwd(host, "spawn", cwd)
    # Passed descriptors (pass_fds, multiprocessing's pipes): only handles this enclave holds; the child's runner
    # inherits the host's descriptor and hands it to the child enclave at the enclave's number.
    fds = [(fd, host.handles.get(handle).fd) for fd, handle in passed]
    if len({fd for fd, _ in fds}) != len(fds):
        raise OSError(errno.EINVAL, "spawn: an fd number passed twice")
    spec = _spec_fd(host, cwd, fds)
    try:
        env = dict(os.environ)  # the host's own environment: the child's host filters it by the same policy
        return _start(host, launcher.interpreter, launcher.command(program, spec), env, cwd, (stdin, stdout, stderr),
                      (spec, *{real for _, real in fds}))
    finally:
        os.close(spec)


def inherited(host: Host) -> list[tuple[int, int]]:
    """The (enclave fd, handle) pairs this enclave's parent passed it (the runner notes the descriptors in
    `host.inherit_pending`: posix_shim/wiring.py).  They become handles on the first ask, once the transport can
    pass their descriptors along; later asks get the same pairs."""
    pending, host.inherit_pending = getattr(host, "inherit_pending", None), None  # type: ignore[attr-defined]
    if pending:
        kinds = {fd: "socket" if stat.S_ISSOCK(os.fstat(real).st_mode) else "pipe" for fd, real in pending}
        host.inherited = [(fd, host.handles.add(real, kinds[fd])) for fd, real in pending]  # type: ignore
    return list(getattr(host, "inherited", ()))


def clean_environment(host: Host) -> dict[bytes, bytes]:
    """A host program's environment: the host variables the policy lets the enclave see, and the policy's own."""
    env = {k: v for k, v in os.environ.items() if host.access.env_allowed(os.fsdecode(k))}
    env.update({os.fsencode(k): os.fsencode(v) for k, v in host.access.env_values().items()})
    return env


def allowed_program(host: Host, name: str) -> str | None:
    """The path the host's copy of the policy resolved `name` to (--allow-run=NAME), or None: the host decides,
    whatever the enclave's copy said."""
    return host.access.run_programs().get(name)


def run_program(host: Host, name: str, argv: bytes, cwd: bytes, stdin: int, stdout: int, stderr: int) -> int:
    """Run the host program the policy names `name` (--allow-run=NAME), outside the enclave."""
    where = allowed_program(host, name)
    if where is None:
        raise OSError(errno.EACCES, f"run_program: {name!r} is not a program the policy allows (--allow-run={name})")
    words = [os.fsdecode(w) for w in argv.split(b"\0")] if argv else [name]
    _check_cwd(host, "run_program", cwd)
    return _start(host, where, words, clean_environment(host), cwd, (stdin, stdout, stderr))


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


__all__ = ["Launcher", "allowed_program", "checked_program", "clean_environment", "inherited", "run_program",
           "same_interpreter", "signalchild", "spawn", "waitchild"]


# The semaphore rows of this family live in their own module (one job each); the dispatcher finds them here.
from .semaphores import sem_acquire, sem_close, sem_getvalue, sem_open, sem_release, sem_unlink  # noqa: E402

__all__ += ["sem_acquire", "sem_close", "sem_getvalue", "sem_open", "sem_release", "sem_unlink"]
