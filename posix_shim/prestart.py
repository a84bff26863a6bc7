"""The enclave process of a command-line run, started before the runner has loaded anything else.

A process-backend start is two interpreters one after the other: the runner imports the command line, the
policy and the host, then starts the enclave process, which imports the runtime and confines itself.  Most of
the enclave process's start does not depend on the policy, so `python -m posix_shim` starts it first
(`start_early`, from __main__.py), and the runner's own imports overlap the child's.

Only two things about that process are fixed when it starts: its command line and its real environment (what
native code's getenv and /proc/self/environ see).  Both are *guessed* here - the interpreter's settings plus the
policy's default variables (policy/safe_env.py) - and `ProcessBackend` takes the early process only if the
command and environment it would have started its own with are exactly these (`take`); otherwise it kills and
reaps it and starts its own, as before.  Either way the child has run no program code yet: it waits, before it
confines itself, for the ring's descriptors the host sends once it has made them (the runner does not load the
ring module first: it imports the ocall table and its codecs), and it learns the policy at INIT, as always.
Confinement (seccomp, Landlock) is applied by that process itself after it started, never inherited.
"""

from __future__ import annotations

import atexit
import fnmatch
import gc
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence

# The enclave process's real environment is built, not inherited: these configure the interpreter itself (where
# its library is, its encoding, hash seed, warnings), and the policy adds what it grants.  The program's
# os.environ is served by the host under the same policy.
INTERPRETER_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONHASHSEED",
                   "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONUNBUFFERED", "PYTHONWARNINGS",
                   "PYTHONDEVMODE", "PYTHONNOUSERSITE", "PYTHONMALLOC", "PYTHONFAULTHANDLER", "PYTHONINTMAXSTRDIGITS",
                   "LANG", "LC_ALL", "LC_CTYPE", "TZ")

# Where the host keeps its platform files (sealing secret, quote key): the enclave side must compute the same
# paths to refuse them with a clear message.  Paths, never the secrets themselves.
RUNTIME_ENV_PREFIX = "POSIX_SHIM_"
RUNTIME_ENV = ("XDG_STATE_HOME", "XDG_DATA_HOME")

# The child's argument saying that the ring's descriptors come over the socket before it confines itself
# (instead of `ring=FD,...` inherited at exec).
RING_LATER = "ring=later"
RING_MESSAGE = b"R"


def environment(allowed: Callable[[str], bool], values: dict[str, str]) -> dict[str, str]:
    """The environment an enclave process starts with: interpreter and runtime settings, the variables `allowed`
    grants, and the policy's own `values`."""
    env = {k: v for k, v in os.environ.items()
           if k in INTERPRETER_ENV or k in RUNTIME_ENV or k.startswith(RUNTIME_ENV_PREFIX) or allowed(k)}
    env.update(values)
    return env


def child_command(python: str, fd: int) -> list[str]:
    """The enclave process's command line, `fd` being its end of the socketpair."""
    # -W, -X, -O, -B ... as the runner was started (the private helper multiprocessing uses too; no stub)
    flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    if getattr(sys.__stdout__, "write_through", False) and "-u" not in flags:
        flags.append("-u")
    # -P: the child's sys.path[0] is not the current directory, so a file there named like one of our modules
    # cannot replace it.  The package's own root is appended in case it is not installed, only on the path.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # gc.disable(): the start allocates the runtime (~26,000 objects that live as long as the process) and the
    # collector would walk them ~40 times while it does; the child freezes them and turns it back on before the
    # program runs (child.py, Child.init).
    boot = (f"import gc; gc.disable(); import sys; r = {root!r}; r in sys.path or sys.path.append(r); "
            f"from posix_shim.child import main; main()")
    return [python, *flags, "-P", "-c", boot, str(fd), str(os.getpid())]


def spawn(python: str, env: dict[str, str], extra: Sequence[str], pass_fds: Sequence[int] = ()) -> tuple[
        subprocess.Popen, socket.socket]:
    """Start an enclave process (its end of a new socketpair passed as a descriptor); returns it and our end."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # stdin and stdout: nothing (the program's stdio are the host's, passed as enclave fds 0-2 at attach);
        # stderr stays the runner's until then, for a message if the child cannot start at all.
        proc = subprocess.Popen(child_command(python, child.fileno()) + list(extra),
                                pass_fds=(child.fileno(), *pass_fds), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, process_group=0, env=env)
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    return proc, parent


class _Early:
    def __init__(self, proc: subprocess.Popen, sock: socket.socket, python: str, env: dict[str, str],
                 ring: bool) -> None:
        self.proc, self.sock, self.python, self.env, self.ring = proc, sock, python, env, ring

    def discard(self) -> None:
        self.sock.close()  # the child sees the end of its socket and exits; kill it anyway, and reap it
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()


_early: _Early | None = None
_gc_paused = False


def pause_gc() -> None:
    """Switch the collector off for the runner's own start (`python -m posix_shim` running a program): the modules
    it imports and the host it builds live as long as the process, and the collector would walk them again and
    again while they are made.  `resume_gc` turns it back on before the program runs."""
    global _gc_paused
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


def resume_gc() -> None:
    """Undo `pause_gc` (no-op otherwise): what exists now is frozen (never walked again), then collection resumes
    for everything made from here on - in the sim backend, the program's own objects."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


def _transport() -> str:
    return os.environ.get("POSIX_SHIM_TRANSPORT") or "ring"


def _guessed_environment() -> dict[str, str]:
    from .policy.safe_env import SAFE_ENV

    return environment(lambda k: any(fnmatch.fnmatchcase(k, p) for p in SAFE_ENV), {})


def program_run(argv: Sequence[str]) -> str | None:
    """The backend this command line runs a program on, as far as the words before the program say (None: a
    subcommand, --help, --version, a manifest or spawned run).  A wrong guess costs an early process or a paused
    collector, never a wrong enclave: the backend checks what it takes (`take`)."""
    if not argv:
        return None
    if not argv[0].startswith("-") or argv[0] == "-":
        return None if argv[0] in ("policy", "sealed", "compat", "keygen", "sign", "measure", "quote") else "process"
    backend = "process"
    for i, word in enumerate(argv):
        if word in ("-m", "-c", "--") or not word.startswith("-") or word == "-":
            return backend
        if word in ("-h", "--help", "--version") or word.startswith(("--spawned", "--manifest")):
            return None
        if word == "--backend=sim" or (word == "--backend" and argv[i + 1:i + 2] == ["sim"]):
            backend = "sim"
    return None


def wanted(argv: Sequence[str]) -> bool:
    """Whether this command line runs a program on the process backend (the default): start its process early."""
    return program_run(argv) == "process"


def start_early(argv: Sequence[str]) -> None:
    """Start the enclave process for this command line now, if it will most likely be wanted (see the docstring)."""
    global _early
    if _early is not None or not wanted(argv) or _transport() not in ("ring", "socket"):
        return
    env = _guessed_environment()
    ring = _transport() == "ring"
    try:
        proc, sock = spawn(sys.executable, env, [RING_LATER] if ring else [])
    except OSError:
        return  # the runner will try again the ordinary way, and report what fails
    _early = _Early(proc, sock, sys.executable, env, ring)
    atexit.register(_discard)


def take(python: str, env: dict[str, str], ring: bool) -> tuple[subprocess.Popen, socket.socket] | None:
    """The early enclave process and our end of its socket, if it was started exactly as asked; else None (an
    early process that does not fit is killed and reaped here)."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    if early.python == python and early.env == env and early.ring == ring and early.proc.poll() is None:
        return early.proc, early.sock
    early.discard()
    return None


def send_ring(sock: socket.socket, fds: Sequence[int]) -> None:
    """Hand an early child the ring's descriptors (it waits for them before it confines itself)."""
    socket.send_fds(sock, [RING_MESSAGE], list(fds))


def receive_ring(fd: int, most: int) -> list[int]:
    """The child's side of `send_ring`, on its raw socket descriptor; [] when the host went away first."""
    sock = socket.socket(fileno=fd)
    try:
        msg, fds, flags, _ = socket.recv_fds(sock, 1, most)
    finally:
        sock.detach()
    if msg != RING_MESSAGE or flags & socket.MSG_CTRUNC:
        for received in fds:
            os.close(received)
        return []
    return fds


def _discard() -> None:
    global _early
    early, _early = _early, None
    if early is not None:
        early.discard()


__all__ = ["INTERPRETER_ENV", "RING_LATER", "RUNTIME_ENV", "RUNTIME_ENV_PREFIX", "child_command", "environment",
           "pause_gc", "program_run", "receive_ring", "resume_gc", "send_ring", "spawn", "start_early", "take",
           "wanted"]
