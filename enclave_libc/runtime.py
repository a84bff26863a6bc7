"""The state of one running enclave: its ocall stubs, fd table, working directory and umask.

Family modules reach it as `runtime.RT` (set by `activate`).  One enclave is active per process at a time: on
the process backend that is the child's only enclave; on the sim backend the runner activates it around each
run.

The stubs here are the *guarded* ones: before a call leaves the enclave, the policy is asked whether the call
exists at all (ENOSYS otherwise) and whether each resource the table names may be touched (EACCES otherwise).
The host asks again on its side; this first check is for a clear message and for not leaking the request.
"""

from __future__ import annotations

import errno
import os as _os
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

from ocall_bridge import originals
from ocall_bridge import types as T
from ocall_bridge.access import ALLOW_ALL, Access, open_kinds
from ocall_bridge.calls import CALLS, Call
from ocall_bridge.client import OcallClient

from .errors import Unsupported, policy_error
from .fdtable import FdTable, NativeFds, OpenFile

_umask = originals.get("posix", "umask")


def _host_umask() -> int:
    mask = _umask(0o022)
    _umask(mask)
    return mask


def _describe(value: Any) -> Any:
    """How a resource is named in a denial: a path as text, an address as the program would write it."""
    if isinstance(value, bytes):
        return _os.fsdecode(value)
    if isinstance(value, tuple) and len(value) == 6:  # SOCKADDR
        family, host, port, _, _, path = value
        return _os.fsdecode(path) if family == 1 else f"{host}:{port}"
    return value


class EnclaveRuntime:
    def __init__(self, client: OcallClient, access: Access | None = None, native: NativeFds | None = None) -> None:
        self.client = client
        self.access = access or ALLOW_ALL
        self.ocall = SimpleNamespace(**{c.name: self._guard(c, getattr(client.stubs, c.name))
                                        for c in CALLS if c.number is not None})
        discard = getattr(native, "discard", None)
        if discard is not None:
            # A handle the runtime keeps to itself (a scandir's directory) never gets an fd, so the descriptor the
            # host passed with it is dropped when the handle is closed, not leaked in the enclave process.
            close = self.ocall.close

            def close_handle(handle: int) -> Any:
                discard(handle)
                return close(handle)

            self.ocall.close = close_handle
        self.fds = FdTable(self.ocall.close, native, self.ocall)
        self.cwd = _os.fsencode(_os.getcwd())
        self.umask = _host_umask()
        self.ids: tuple[int, ...] | None = None
        # The process is the enclave's own (process backend): its real cwd and umask follow the enclave's, so
        # native code's forwarded paths and modes mean what the program's do.  Never on sim (the host's process).
        self.owns_process = False
        self.extra: dict[str, Any] = {}  # per-enclave state of other families (time, environment)

    def _guard(self, c: Call, stub: Callable[..., Any]) -> Callable[..., Any]:
        access = self.access
        if not access.call_allowed(c.name):
            def refused(*args: Any) -> Any:
                self.client.denied(c.name, args, "call not enabled by the policy", errno.ENOSYS)  # for the trace
                raise Unsupported(c.name, "not allowed by the policy (enable its family or call)")

            return refused
        if not c.resources:
            return stub
        index = {f.name: i for i, f in enumerate(c.params)}
        checks = [(index[name], kind) for name, kind in c.resources]
        if len(checks) == 1 and checks[0][1] != "open":
            # Nearly every path call (stat, lstat, access, unlink...): one resource of a fixed kind, checked
            # without the loops below; the same question, the same denial.
            (at, only), name, check = checks[0], c.name, access.check

            def guarded_one(*args: Any) -> Any:
                reason = check(name, only, args[at])
                if reason:
                    self.client.denied(name, args, reason)  # the trace marks the call with the rule
                    raise policy_error(name, _describe(args[at]), reason)
                return stub(*args)

            guarded_one.__name__ = c.name
            return guarded_one

        def guarded(*args: Any) -> Any:
            for i, kind in checks:
                kinds = open_kinds(args[index["flags"]]) if kind == "open" else (kind,)
                for k in kinds:
                    reason = access.check(c.name, k, args[i])
                    if reason:
                        self.client.denied(c.name, args, reason)  # the trace marks the call with the rule
                        raise policy_error(c.name, _describe(args[i]), reason)
            return stub(*args)

        guarded.__name__ = c.name
        return guarded

    def attach_stdio(self) -> None:
        """Enclave fds 0, 1 and 2 over the handles the host gives for its standard streams."""
        for fd, handle in enumerate(self.ocall.attach(1)):
            if handle >= 0:
                self.fds.place(fd, OpenFile(handle, "stdio"), cloexec=False)
        # A child enclave: the descriptors its parent passed (pass_fds), each at its number, inheritable.
        try:
            passed = self.ocall.inherited() if self.access.call_allowed("inherited") else []
        except OSError:
            passed = []
        for fd, handle in passed:
            self.fds.place(fd, OpenFile(handle, "pipe", None, _os.O_RDWR), cloexec=False)

    # -- paths ---------------------------------------------------------------------------------------------
    def resolve(self, path: bytes, dir_fd: int | None = None) -> bytes:
        """An absolute host path for `path`, relative to dir_fd or the enclave's cwd.

        Only joined, never normalized: `a/../b` must mean what the kernel says it means when `a` is a symlink.
        """
        if path.startswith(b"/"):
            return path
        if not path:  # "" names nothing, natively too
            raise OSError(errno.ENOENT, _os.strerror(errno.ENOENT))
        if dir_fd is None:
            base = self.cwd
        else:
            of = self.fds.get(dir_fd)
            if of.path is None:
                raise OSError(errno.ENOTDIR, _os.strerror(errno.ENOTDIR))
            base = of.path
        return base + path if base.endswith(b"/") else base + b"/" + path


class NoEnclave(AttributeError):
    """Raised by any use of `RT` while no enclave is active.

    An AttributeError, because that is what the same use raised when "no enclave" was `RT = None`: code that asks
    `getattr(runtime.RT.access, "encrypted", ())` keeps its default, and nothing else changes but the message.
    """


class _Absent:
    """`RT` when no enclave is active: falsy, and every attribute raises NoEnclave with a message that says so.

    Typed as an EnclaveRuntime so that the family modules' `runtime.RT.fds...` needs no None check at each of its
    ~180 uses; the places that must tell "no enclave" apart (and fail closed: a program that sets `RT = None`
    from inside gets a refusal, not the host's objects) test `active()`, which also treats None as absent.
    """

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        raise NoEnclave(f"posix_shim: no enclave is active (enclave_libc.runtime.RT.{name} used outside a run)")

    def __repr__(self) -> str:
        return "<no enclave>"


ABSENT = cast(EnclaveRuntime, _Absent())
RT: EnclaveRuntime = ABSENT


def active() -> bool:
    """Whether an enclave is active.  A value read from RT earlier is tested the same way: `if not rt:` (false
    for ABSENT and for a None a program put there)."""
    return bool(RT)


def activate(rt: EnclaveRuntime | None) -> EnclaveRuntime:
    """Make `rt` the enclave the family modules serve (None: none); returns the previous one."""
    global RT
    previous, RT = RT, rt or ABSENT
    return previous


def current() -> EnclaveRuntime:
    if not RT:
        raise RuntimeError("no enclave is active")
    return RT


__all__ = ["ABSENT", "EnclaveRuntime", "NoEnclave", "activate", "active", "current", "RT", "T"]
