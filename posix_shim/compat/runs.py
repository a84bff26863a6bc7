"""Running one Python process for the report, and reading what it died of.

Shared by the corpus matrix and CPython's regression tests: both run a child with a timeout that always returns
(a hung enclave must not hang the report), from a scratch directory, with this checkout first on the path, and
both name a failed run by the exception on its stderr.
"""

from __future__ import annotations

import dataclasses
import errno as errno_mod
import importlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The directory that holds the posix_shim package: a source checkout's root, or site-packages when installed.
REPO = Path(__file__).resolve().parents[2]


def clip(text: str, width: int = 160) -> str:
    """One line of at most `width` characters, for a reason in a table cell."""
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[:width - 3] + "..."


@dataclasses.dataclass
class RunResult:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every run, native or not: this checkout first on the path, so the runner tests the
    posix_shim it is part of."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONSTARTUP", None)
    env.update(extra or {})
    return env


def run_command(cmd: Sequence[str], cwd: str | os.PathLike[str], timeout: float,
                env: dict[str, str] | None = None) -> RunResult:
    """Run `cmd` with a timeout that always returns: the child gets its own session, and on timeout the whole
    session is killed, so a grandchild (the process backend's enclave) cannot keep the pipes open."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env if env is not None else child_env(),
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_session(proc.pid)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a pipe held by an escaped process
            proc.kill()
            out, err = b"", b""
        code = None
    seconds = time.perf_counter() - t0
    return RunResult(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), seconds)


def _kill_session(sid: int) -> None:
    """SIGKILL every process of the session this runner created for one run, by pid.  A process group is not
    enough: the process backend puts its enclave child in a group of its own."""
    pids = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after "pid (comm)": state ppid pgrp session
            pids.append(int(entry))
    if not pids:
        pids = [sid]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_in_scratch(cmd: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> RunResult:
    """Run `cmd` from a fresh empty directory, removed afterwards: a program finds only what it creates."""
    scratch = tempfile.mkdtemp(prefix="posix-shim-compat-")
    try:
        return run_command(cmd, scratch, timeout, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# What a run died of
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Uncaught:
    type_name: str
    message: str
    errno: int | None

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name


_LAST_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")
_ERRNO = re.compile(r"\[Errno (-?\d+)\]")


def _errno_of_type(type_name: str, message: str) -> int | None:
    """The errno an OSError subclass stands for when its message does not show `[Errno N]` (the enclave's
    errors print only their message)."""
    from enclave_libc.errors import PolicyDenied, PolicyHidden, Unsupported
    from ocall_bridge.errors import HostGone, HostViolation

    cls: Any = None
    if "." in type_name:
        module, _, attr = type_name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr, None)
        except Exception:  # any import failure just means "unknown type"
            cls = None
    else:
        import builtins

        cls = getattr(builtins, type_name, None)
    if isinstance(cls, type):
        for known, err in ((Unsupported, errno_mod.ENOSYS), (PolicyDenied, errno_mod.EACCES),
                           (PolicyHidden, errno_mod.ENOENT),
                           (HostViolation, errno_mod.EIO), (HostGone, errno_mod.EIO)):
            if issubclass(cls, known):
                return err
    if "outside the enclave's supported POSIX subset" in message:
        return errno_mod.ENOSYS
    return None


def uncaught_exception(stderr: str) -> Uncaught | None:
    """The exception a Python process died of, from its stderr: the last unindented line after the last
    traceback (chained exceptions print the final one last)."""
    at = stderr.rfind("Traceback (most recent call last):")
    if at < 0:
        return None
    last = None
    for line in stderr[at:].splitlines()[1:]:
        if line and not line[0].isspace():
            last = line
    if last is None:
        return None
    m = _LAST_LINE.match(last)
    if not m:
        return Uncaught(last.strip(), "", None)
    type_name, message = m.group("type"), m.group("msg") or ""
    found = _ERRNO.search(message)
    err = int(found.group(1)) if found else _errno_of_type(type_name, message)
    return Uncaught(type_name, message, err)
