"""Kernel confinement of the process backend's child: no_new_privs, Landlock, a seccomp filter.

The child calls :func:`confine_process` once, after the runtime has booted and **before any thread is
started** and before any program code runs.  From then on the kernel, not Python, decides what the child can
do: what the rule table (:mod:`posix_shim.confine.rules`) does not allow fails with an error (ENOSYS by
default), or, for the syscalls the caller *forwards*, stops the calling thread and is served by the host's
supervisor through the seccomp listener descriptor that :func:`confine_process` returns.

Before starting a child, the host calls :func:`probe`; a non-empty answer means this kernel cannot keep the
promise, and the caller refuses to start (exit 2) instead of running unconfined.

``disable`` exists ONLY for negative-control tests (each wall is shown to be the one that stops an attack by
switching exactly it off).  It must never be fed from the command line, a policy file or anything the program
controls; the runtime's own call passes nothing.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterable

from . import bpf, rules
from .syscalls import NR, UnsupportedArchitecture, check_architecture

try:
    from . import _native, landlock
except (ImportError, OSError) as _exc:  # no ctypes/libc: probe() says so and confine_process() refuses
    _NATIVE_MISSING = f"ctypes and libc, for raw syscalls ({_exc})"
else:
    _NATIVE_MISSING = ""

__all__ = [
    "FILTER_FLAGS", "MECHANISMS", "ConfinementError", "build_filter", "confine_process", "probe",
]

PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_GET_SECCOMP = 21
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_GET_NOTIF_SIZES = 3
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
#: TSYNC puts every existing thread under the filter; NEW_LISTENER returns the notification fd; the kernel
#: accepts the two together only with TSYNC_ESRCH (a thread that cannot sync fails the call with ESRCH
#: instead of returning its tid in place of the listener fd).
FILTER_FLAGS = SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_TSYNC_ESRCH

#: Whole mechanisms that ``disable`` may name (besides single syscall rules).
MECHANISMS = ("no_core_dumps", "no_new_privs", "landlock", "seccomp")
RLIMIT_CORE = 4


class ConfinementError(RuntimeError):
    """Confinement could not be installed; the caller must not run the program (exit 2)."""


def build_filter(*, forward: Iterable[str] = (), channel_fds: Iterable[int] = (), own_pid: int,
                 disable: Iterable[str] = ()) -> bpf.Program:
    """The seccomp program :func:`confine_process` installs, built from :data:`rules.TABLE`.

    *forward*: syscall names whose otherwise-refused cases return SECCOMP_RET_USER_NOTIF (served by the host).
    *disable*: syscall names whose row becomes unconditional ALLOW (negative-control tests only).
    """
    forward = set(forward)
    disabled = set(disable) - set(MECHANISMS)
    for name in forward | disabled:
        if name not in NR:
            raise ValueError(f"unknown x86_64 syscall {name!r}")
    for name in forward:
        if rules.TABLE.get(name, rules.DENIED).always and name not in disabled:
            raise ValueError(f"{name!r} always runs natively; forwarding it would mean nothing")
    chans = tuple(sorted(set(channel_fds)))
    if any(fd < 0 for fd in chans):
        raise ValueError(f"bad channel descriptor in {chans}")
    conditional: list[bpf.Block] = []
    unconditional: list[bpf.Block] = []
    names = list(rules.TABLE) + sorted((forward | disabled) - set(rules.TABLE))
    for name in names:
        number = NR[name]
        if name in disabled:
            unconditional.append(bpf.Block(number, [bpf.Rule(bpf.ALLOW)]))
            continue
        row = rules.TABLE.get(name, rules.DENIED)
        fallback = bpf.USER_NOTIF if name in forward else bpf.ERRNO(row.otherwise)
        block = bpf.Block(number, _expand(row, fallback, own_pid, chans), fallback)
        if not block.rules and fallback == bpf.ERRNO(_errno.ENOSYS):
            continue  # the program's default says the same
        (unconditional if row.always else conditional).append(block)
    return bpf.build(conditional + unconditional)


def _expand(row: rules.Row, fallback: bpf.Action, own_pid: int, chans: tuple[int, ...]) -> list[bpf.Rule]:
    """Concrete rules for *row*: symbols resolved, a rule on CHANNEL_FD repeated per channel fd (and dropped
    when there is none: "arg is a channel fd" cannot hold)."""
    out: list[bpf.Rule] = []
    for rule in row.rules:
        if rule.kind == "allow":
            action = bpf.ALLOW
        elif rule.kind == "refuse":
            action = bpf.ERRNO(rule.errno)
        else:
            action = fallback
        per_chan = any(c.value == rules.CHANNEL_FD for c in rule.conds)
        for chan in chans if per_chan else (0,):
            conds: list[bpf.Cond] = []
            for c in rule.conds:
                if c.value == rules.CHANNEL_FD:
                    c = rules.CondT(c.arg, c.op, chan, c.mask)
                conds.extend(rules.resolve(c, own_pid, chans))
            out.append(bpf.Rule(action, tuple(conds)))
    return out


def probe() -> list[str]:
    """What this kernel lacks for the process backend's promise; an empty list means all is there.

    Checks, without confining anything: x86_64; seccomp filters with the ALLOW, ERRNO, USER_NOTIF and
    KILL_PROCESS actions and the TSYNC|NEW_LISTENER|TSYNC_ESRCH flags; Landlock with filesystem rights (ABI 1),
    TCP rights (ABI 4) and signal/abstract-unix scoping (ABI 6).
    """
    try:
        check_architecture()
    except UnsupportedArchitecture as exc:
        return [str(exc)]
    if _NATIVE_MISSING:
        return [_NATIVE_MISSING]
    missing: list[str] = []
    try:
        _native.prctl(PR_GET_SECCOMP)
    except _native.KernelError:
        missing.append("seccomp (kernel built without CONFIG_SECCOMP_FILTER)")
        return missing + _probe_landlock()
    for action in (bpf.ALLOW, bpf.ERRNO(_errno.ENOSYS), bpf.USER_NOTIF, bpf.KILL_PROCESS):
        value = _native.new("uint32_t *", action.value & 0xFFFF0000)  # the action without its data
        if _native.syscall_errno("seccomp", SECCOMP_GET_ACTION_AVAIL, 0, value) < 0:
            missing.append(f"seccomp action {action.label.split('(')[0]}")
    sizes = _native.new("uint16_t[3]")
    if _native.syscall_errno("seccomp", SECCOMP_GET_NOTIF_SIZES, 0, sizes) < 0:
        missing.append("seccomp user notification (SECCOMP_GET_NOTIF_SIZES)")
    # Flags are validated before the (NULL) program is read: EINVAL = unknown flags, EFAULT = flags accepted.
    result = _native.syscall_errno("seccomp", SECCOMP_SET_MODE_FILTER, FILTER_FLAGS, _native.NULL)
    if result == -_errno.EINVAL:
        missing.append("seccomp filter flags TSYNC|NEW_LISTENER|TSYNC_ESRCH (Linux 5.7+)")
    elif result >= 0:  # cannot happen with a NULL program; never leave a filter behind silently
        raise ConfinementError("seccomp accepted a NULL program during probe")
    return missing + _probe_landlock()


def _probe_landlock() -> list[str]:
    abi = landlock.abi_version()
    missing: list[str] = []
    if abi < 1:
        missing.append("Landlock (not built in, or not in the lsm= boot list)")
    if abi < 4:
        missing.append(f"Landlock ABI 4 (TCP bind/connect rights); this kernel has ABI {abi}")
    if abi < 6:
        missing.append(f"Landlock ABI 6 (signal and abstract unix socket scoping); this kernel has ABI {abi}")
    return missing


def _thread_count() -> int:
    """Threads of this process, from /proc/self/stat field 20, read with raw syscalls (``os`` may be
    interposed by now)."""
    path = _native.from_bytes(b"/proc/self/stat")
    o_rdonly_cloexec = 0o2000000
    fd = _native.syscall("openat", -100, path, o_rdonly_cloexec)
    try:
        buf = _native.new("char[4096]")
        n = _native.syscall("read", fd, buf, 4096)
        text = _native.buffer(buf, n)
    finally:
        _native.syscall("close", fd)
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(b")") + 2:].split()
    return int(fields[17])  # field 20 overall; fields[0] is field 3 (state)


def confine_process(*, forward: Iterable[str], channel_fds: Iterable[int], own_pid: int | None = None,
                    disable: Iterable[str] = ()) -> int:
    """Confine the calling process for good; returns the seccomp listener descriptor.

    In this order: no core dumps (``RLIMIT_CORE`` = 1); ``PR_SET_NO_NEW_PRIVS``; Landlock (no filesystem
    rights, no TCP bind/connect, scoped signals and abstract unix sockets); the seccomp filter with
    ``TSYNC | NEW_LISTENER | TSYNC_ESRCH``.

    Call it while the process has exactly **one thread**: Landlock binds only the calling thread and threads
    created later (no TSYNC before Landlock ABI 8), so a thread started earlier would escape it.  This function
    checks and raises :class:`ConfinementError` otherwise.  The seccomp filter does reach every thread.

    *forward*: syscall names served by the host's supervisor (SECCOMP_RET_USER_NOTIF) instead of failing.
    *channel_fds*: the enclave's own transport sockets: the only descriptors on which ``sendmsg`` runs
    natively, and which ``close``/``dup2``/``dup3``/``close_range`` may not touch.
    *own_pid*: the child's real pid (default: the raw ``getpid`` syscall); signals go only there.
    *disable*: NEGATIVE-CONTROL TESTS ONLY: names from :data:`MECHANISMS` or syscall rows to leave out.  Never
    derived from CLI arguments, policy or the program.

    The returned listener fd must be sent to the host and then **closed by the child**: a child that keeps it
    could answer its own forwarded calls.  It is -1 when ``disable`` contains "seccomp".  Any failure raises
    (:class:`ConfinementError` or ``OSError``) and the caller must exit: the process may be half-confined.
    """
    check_architecture()
    if _NATIVE_MISSING:
        raise ConfinementError(f"cannot confine without {_NATIVE_MISSING}")
    forward = tuple(forward)
    channel_fds = tuple(channel_fds)
    disable = tuple(disable)
    for name in disable:
        if name not in MECHANISMS and name not in NR:
            raise ValueError(f"disable: {name!r} is neither a mechanism {MECHANISMS} nor a syscall row")
    for fd in channel_fds:  # a closed number could be handed to the listener and then be uncloseable
        if _native.syscall_errno("fcntl", fd, 1) < 0:  # F_GETFD
            raise ValueError(f"channel descriptor {fd} is not open")
    if own_pid is None:
        own_pid = _native.syscall("getpid")
    # Build everything that can fail for ordinary reasons before the first irreversible step.
    program = None
    if "seccomp" not in disable:
        program = build_filter(forward=forward, channel_fds=channel_fds, own_pid=own_pid, disable=disable)
    if "landlock" not in disable:
        threads = _thread_count()
        if threads != 1:
            raise ConfinementError(
                f"confine_process needs a single-threaded process (Landlock binds only the calling thread and "
                f"its later children); this one has {threads} threads"
            )
    if "no_core_dumps" not in disable:
        # A core dump is the enclave's memory written to the host's disk (or piped to a root helper such as
        # systemd-coredump).  RLIMIT_CORE = 1 stops both: a file dump needs at least a page, and 1 is the
        # kernel's "never pipe" value.  Hard limit too: after the filter, no limit can be set again anyway.
        limit = _native.new("uint64_t[2]", [1, 1])
        _native.syscall("prlimit64", 0, RLIMIT_CORE, limit, _native.NULL)
    if "no_new_privs" not in disable:
        _native.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if _native.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
            raise ConfinementError("PR_SET_NO_NEW_PRIVS did not stick")
    if "landlock" not in disable:
        try:
            landlock.restrict_self()
        except (OSError, RuntimeError) as exc:
            raise ConfinementError(f"Landlock: {exc}") from exc
        _check_landlock_holds()
    if program is None:
        return -1
    data = _native.from_bytes(program.to_bytes())
    fprog = _native.new("struct sock_fprog *")
    fprog.len = len(program)
    fprog.filter = data
    try:
        listener = _native.syscall("seccomp", SECCOMP_SET_MODE_FILTER, FILTER_FLAGS, fprog)
    except OSError as exc:
        raise ConfinementError(f"seccomp filter: {exc}") from exc
    if "getpriority" not in forward and "getpriority" not in disable:
        # Trust, then verify: a call outside the table must now fail with ENOSYS (unconfined, it succeeds).
        result = _native.syscall_errno("getpriority", 0, 0)
        if result != -_errno.ENOSYS:
            raise ConfinementError(f"seccomp filter installed but getpriority answered {result}, not ENOSYS")
    return listener


def _check_landlock_holds() -> None:
    """After restrict_self, opening "/" must be refused (EACCES): else the ruleset is not in force."""
    path = _native.from_bytes(b"/")
    o_rdonly_directory_cloexec = 0o200000 | 0o2000000
    result = _native.syscall_errno("openat", -100, path, o_rdonly_directory_cloexec)
    if result >= 0:
        _native.syscall("close", result)
    if result != -_errno.EACCES:
        raise ConfinementError(f"Landlock enforced but opening / answered {result}, not EACCES")
