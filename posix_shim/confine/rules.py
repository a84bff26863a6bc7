"""The seccomp rule table of the process backend's child: one line per syscall.

Reading the table:

* ``ALLOWED``: runs natively, whatever the arguments.  Only calls that act on descriptors the child already
  holds, on its own memory, threads, signals and clocks.  (The kernel caches these: the filter does not even
  run for them.)
* ``only(when(...), ..., otherwise=E)``: runs natively when one ``when`` matches (all its conditions hold);
  otherwise fails with ``E``, or goes to the host if the caller forwards this syscall.
* ``refuse(E, cond)``: a fixed refusal tried before the ``when`` rules; forwarding does not lift it.
* ``to_fallback(cond)``: this case goes to the row's fallback (forward, or ``otherwise``) even if a later
  ``when`` would allow it.
* ``FORWARDABLE``: a path or socket call that the host may serve (``forward``); ENOSYS if it does not.
* ``DENIED``: listed to say so out loud (and so a negative-control test can name it); same as absent.

Every syscall that is not in this table fails with ENOSYS (Asylo's rule: a call outside the table does not
exist), unless the caller forwards it.  EPERM is used where the call *is* in the subset but this use of it is
not: a signal, rlimit or scheduler query aimed at another process (EPERM is what the kernel itself answers
there, so callers print "Operation not permitted", not "Function not implemented"), fork, foreign socket
families, unlisted ioctl/fcntl/prctl commands, touching the enclave's channel descriptors.

Symbols resolved when the filter is built: ``OWN_PID`` (the child's real pid), ``CHANNEL_FD`` (the rule is
repeated for each channel descriptor, dropped if there are none), ``MIN_CHANNEL_FD``/``MAX_CHANNEL_FD`` (a
condition on them holds vacuously when there are no channel descriptors).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from .bpf import Cond, eq, gt32, low32, lt32, masked_eq, one_of

EPERM = errno.EPERM
ENOSYS = errno.ENOSYS


class Sym(str):
    """A value only known when the filter is built (pid, channel descriptors)."""


OWN_PID = Sym("own_pid")
CHANNEL_FD = Sym("channel_fd")
MIN_CHANNEL_FD = Sym("min_channel_fd")
MAX_CHANNEL_FD = Sym("max_channel_fd")


@dataclass(frozen=True)
class CondT:
    """A condition whose value may be a :class:`Sym`."""

    arg: int
    op: str  # "eq" | "in" | "low32" | "masked_eq" | "gt32" | "lt32"
    value: int | Sym
    mask: int = 0
    values: tuple[int, ...] = ()


@dataclass(frozen=True)
class RuleT:
    """``kind``: "allow" (when), "refuse" (fixed errno), "fallback" (go to the row's fallback)."""

    kind: str
    conds: tuple[CondT, ...]
    errno: int = 0


@dataclass(frozen=True)
class Row:
    rules: tuple[RuleT, ...]
    otherwise: int  # errno when no rule matched and the syscall is not forwarded
    always: bool = False  # unconditional ALLOW: forwarding it would mean nothing


def when(*conds: CondT) -> RuleT:
    return RuleT("allow", conds)


def refuse(err: int, *conds: CondT) -> RuleT:
    return RuleT("refuse", conds, err)


def to_fallback(*conds: CondT) -> RuleT:
    return RuleT("fallback", conds)


def only(*rules: RuleT, otherwise: int = EPERM) -> Row:
    return Row(tuple(rules), otherwise)


def arg_eq(arg: int, value: int | Sym) -> CondT:
    """All 64 bits equal (allow rules: garbage in the high half only turns an allow into a refusal)."""
    return CondT(arg, "eq", value)


def arg_in(arg: int, values: tuple[int, ...]) -> CondT:
    """One of *values*, all 64 bits (allow rules)."""
    return CondT(arg, "in", 0, values=values)


def arg_low32(arg: int, value: int | Sym) -> CondT:
    """The low 32 bits equal: for refusals on ``int`` parameters, whose high half the kernel ignores."""
    return CondT(arg, "low32", value)


def arg_masked(arg: int, mask: int, value: int) -> CondT:
    return CondT(arg, "masked_eq", value, mask)


def arg_gt32(arg: int, value: int | Sym) -> CondT:
    return CondT(arg, "gt32", value)


def arg_lt32(arg: int, value: int | Sym) -> CondT:
    return CondT(arg, "lt32", value)


ALLOWED = Row((RuleT("allow", ()),), ENOSYS, always=True)
FORWARDABLE = Row((), ENOSYS)
DENIED = Row((), ENOSYS)


def DENIED_WITH(err: int) -> Row:  # noqa: N802 - reads like the constant it parametrises
    return Row((), err)


# --- constants used below (x86_64 uapi values) ------------------------------------------------------------------
CLONE_THREAD = 0x00010000
# Namespace flags: a "thread" in a new namespace is not a thread of this sandbox (CLONE_NEWNET with
# CLONE_THREAD is accepted by the kernel). CLONE_NEWTIME (0x80) is left out: in clone() that byte is the exit
# signal, and the kernel only accepts CLONE_NEWTIME through clone3/unshare, both refused.
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
AF_UNIX, AF_NETLINK, AF_PACKET = 1, 16, 17
SOCK_RAW, SOCK_PACKET = 3, 10
SOCK_TYPE_MASK = 0xF
FIONREAD, FIONBIO, FIOCLEX, FIONCLEX = 0x541B, 0x5421, 0x5451, 0x5450
TCGETS, TIOCGWINSZ, TIOCGPGRP = 0x5401, 0x5413, 0x540F
PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE = 1, 2, 3
PR_SET_NAME, PR_GET_NAME, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 15, 16, 38, 39
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = 0, 1, 2, 3, 4, 5, 6, 7
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS = 1030, 1031, 1032, 1033, 1034
MADV_HWPOISON, MADV_SOFT_OFFLINE = 100, 101
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
AT_FDCWD = -100

_FCNTL_OK = (F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK,
             F_OFD_SETLKW, F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS)
_IOCTL_OK = (FIONREAD, FIONBIO, FIOCLEX, FIONCLEX, TCGETS, TIOCGWINSZ, TIOCGPGRP)
_PRCTL_OK = (PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE, PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_SET_NO_NEW_PRIVS,
             PR_GET_NO_NEW_PRIVS)
_SELF = (when(arg_eq(0, 0)), when(arg_eq(0, OWN_PID)))  # pid argument 0 (= the caller) or its own pid

# ----------------------------------------------------------------------------------------------------------------
# The table. Rows with argument checks come first: the kernel's cache cannot skip the filter for them, so they
# are the ones whose position costs time.
# ----------------------------------------------------------------------------------------------------------------
TABLE: dict[str, Row] = {
    # --- argument-checked ------------------------------------------------------------------------------------
    "close": only(refuse(EPERM, arg_low32(0, CHANNEL_FD)), when()),        # never the enclave's channel
    "fcntl": only(when(arg_in(1, _FCNTL_OK))),               # no F_SETOWN/F_SETSIG/F_NOTIFY/leases: signals to others
    "ioctl": only(when(arg_in(1, _IOCTL_OK))),               # never TIOCSTI (types into a terminal)
    "madvise": only(refuse(EPERM, arg_low32(2, MADV_HWPOISON)),            # root could poison/offline a physical page
                    refuse(EPERM, arg_low32(2, MADV_SOFT_OFFLINE)), when()),
    "sendto": only(when(arg_eq(4, 0)), otherwise=ENOSYS),                  # no address; with one: the host's call
    "sendmsg": only(when(arg_eq(0, CHANNEL_FD)), otherwise=ENOSYS),        # msghdr may name an address: channel only
    "dup2": only(refuse(EPERM, arg_low32(1, CHANNEL_FD)), when()),         # cannot replace a channel descriptor
    "dup3": only(refuse(EPERM, arg_low32(1, CHANNEL_FD)), when()),
    "close_range": only(when(arg_gt32(0, MAX_CHANNEL_FD)),                 # a range that misses every channel fd
                        when(arg_lt32(1, MIN_CHANNEL_FD))),                # (CPython falls back to close() per fd)
    "clone": only(when(arg_masked(0, CLONE_THREAD | CLONE_NAMESPACES, CLONE_THREAD))),  # threads only: no fork
    "kill": only(when(arg_eq(0, OWN_PID))),                                # itself only; 0 = its process group (host!)
    "tkill": only(when(arg_eq(0, OWN_PID))),                               # tid of its main thread only
    "tgkill": only(when(arg_eq(0, OWN_PID))),                              # its own thread group
    "prlimit64": only(when(arg_eq(0, 0), arg_eq(2, 0)),                    # read its own limits, never set any
                      when(arg_eq(0, OWN_PID), arg_eq(2, 0))),
    "prctl": only(when(arg_in(0, _PRCTL_OK))),               # no PR_SET_SECCOMP, PR_SET_DUMPABLE, ...
    "sched_getaffinity": only(*_SELF),
    "sched_getparam": only(*_SELF),
    "sched_getscheduler": only(*_SELF),
    "socketpair": only(when(arg_eq(0, AF_UNIX))),
    "socket": only(refuse(EPERM, arg_low32(0, AF_NETLINK)),                # kernel interfaces, raw frames: never,
                   refuse(EPERM, arg_low32(0, AF_PACKET)),                 # even if the host serves socket()
                   refuse(EPERM, arg_masked(1, SOCK_TYPE_MASK, SOCK_RAW)),
                   refuse(EPERM, arg_masked(1, SOCK_TYPE_MASK, SOCK_PACKET)), otherwise=ENOSYS),
    "seccomp": only(when(arg_masked(1, SECCOMP_FILTER_FLAG_NEW_LISTENER, 0))),  # more filters, never its own listener:
                                                                           # the newest USER_NOTIF filter would win
    "newfstatat": only(to_fallback(arg_low32(0, AT_FDCWD)),                # NULL path+AT_EMPTY_PATH: fstat(fd) (6.11+);
                       when(arg_eq(1, 0)), otherwise=ENOSYS),              # glibc passes "" though: that is a path
    "statx": only(to_fallback(arg_low32(0, AT_FDCWD)), when(arg_eq(1, 0)), otherwise=ENOSYS),
    # --- I/O on descriptors it holds -------------------------------------------------------------------------
    "read": ALLOWED, "write": ALLOWED, "readv": ALLOWED, "writev": ALLOWED, "pread64": ALLOWED,
    "pwrite64": ALLOWED, "preadv": ALLOWED, "pwritev": ALLOWED, "preadv2": ALLOWED, "pwritev2": ALLOWED,
    "lseek": ALLOWED, "dup": ALLOWED, "fstat": ALLOWED, "fstatfs": ALLOWED, "ftruncate": ALLOWED,
    "fallocate": ALLOWED, "fadvise64": ALLOWED, "readahead": ALLOWED, "fsync": ALLOWED, "fdatasync": ALLOWED,
    "sync_file_range": ALLOWED, "flock": ALLOWED, "getdents64": ALLOWED,
    "sendfile": ALLOWED, "copy_file_range": ALLOWED, "splice": ALLOWED, "tee": ALLOWED,  # between held fds
    "pipe": ALLOWED, "pipe2": ALLOWED, "eventfd": ALLOWED, "eventfd2": ALLOWED, "memfd_create": ALLOWED,
    "poll": ALLOWED, "ppoll": ALLOWED, "select": ALLOWED, "pselect6": ALLOWED, "epoll_create": ALLOWED,
    "epoll_create1": ALLOWED, "epoll_ctl": ALLOWED, "epoll_wait": ALLOWED, "epoll_pwait": ALLOWED,
    "epoll_pwait2": ALLOWED,
    "recvfrom": ALLOWED, "recvmsg": ALLOWED, "recvmmsg": ALLOWED, "getsockopt": ALLOWED, "setsockopt": ALLOWED,
    "getsockname": ALLOWED, "getpeername": ALLOWED, "shutdown": ALLOWED, "listen": ALLOWED, "accept": ALLOWED,
    "accept4": ALLOWED,
    "getcwd": ALLOWED, "fchdir": ALLOWED, "umask": ALLOWED,
    # --- its own memory --------------------------------------------------------------------------------------
    "mmap": ALLOWED, "munmap": ALLOWED, "mprotect": ALLOWED, "mremap": ALLOWED, "brk": ALLOWED,
    "mincore": ALLOWED, "msync": ALLOWED, "membarrier": ALLOWED, "mseal": ALLOWED,
    "map_shadow_stack": ALLOWED,  # glibc with CET: shadow stacks for new threads
    # --- its own threads -------------------------------------------------------------------------------------
    "futex": ALLOWED, "futex_waitv": ALLOWED, "futex_wake": ALLOWED, "futex_wait": ALLOWED,
    "futex_requeue": ALLOWED, "set_robust_list": ALLOWED, "get_robust_list": ALLOWED, "rseq": ALLOWED,
    "set_tid_address": ALLOWED, "arch_prctl": ALLOWED,  # x86 per-thread state (TLS base, AMX): its own only
    "exit": ALLOWED, "exit_group": ALLOWED, "sched_yield": ALLOWED, "getcpu": ALLOWED,
    "sched_get_priority_max": ALLOWED, "sched_get_priority_min": ALLOWED,
    "wait4": ALLOWED, "waitid": ALLOWED,  # it can have no children: ECHILD, the honest answer
    # --- its own signals and timers --------------------------------------------------------------------------
    "rt_sigaction": ALLOWED, "rt_sigprocmask": ALLOWED, "rt_sigreturn": ALLOWED, "sigaltstack": ALLOWED,
    "rt_sigpending": ALLOWED, "rt_sigtimedwait": ALLOWED, "rt_sigsuspend": ALLOWED, "pause": ALLOWED,
    "signalfd": ALLOWED, "signalfd4": ALLOWED, "restart_syscall": ALLOWED,
    "alarm": ALLOWED, "getitimer": ALLOWED, "setitimer": ALLOWED, "timer_create": ALLOWED,
    "timer_settime": ALLOWED, "timer_gettime": ALLOWED, "timer_getoverrun": ALLOWED, "timer_delete": ALLOWED,
    "timerfd_create": ALLOWED, "timerfd_settime": ALLOWED, "timerfd_gettime": ALLOWED,
    # --- clocks, identity, harmless facts --------------------------------------------------------------------
    "clock_gettime": ALLOWED, "clock_getres": ALLOWED, "clock_nanosleep": ALLOWED, "nanosleep": ALLOWED,
    "gettimeofday": ALLOWED, "time": ALLOWED, "times": ALLOWED, "getrandom": ALLOWED,
    "getpid": ALLOWED, "gettid": ALLOWED, "getppid": ALLOWED, "getuid": ALLOWED, "geteuid": ALLOWED,
    "getgid": ALLOWED, "getegid": ALLOWED, "getgroups": ALLOWED, "getresuid": ALLOWED, "getresgid": ALLOWED,
    "getpgrp": ALLOWED, "getrlimit": ALLOWED, "getrusage": ALLOWED, "uname": ALLOWED, "sysinfo": ALLOWED,
    # --- adding restrictions to itself -----------------------------------------------------------------------
    "landlock_create_ruleset": ALLOWED, "landlock_add_rule": ALLOWED, "landlock_restrict_self": ALLOWED,
    # --- in the subset, but never on this path ---------------------------------------------------------------
    "setrlimit": DENIED_WITH(EPERM),  # limits are read-only, like prlimit64
    "clone3": DENIED,  # ENOSYS on purpose: glibc then falls back to clone(), whose flags BPF can read
    # --- path and socket calls: the host's (forward) or ENOSYS -----------------------------------------------
    "open": FORWARDABLE, "openat": FORWARDABLE, "openat2": FORWARDABLE, "creat": FORWARDABLE,
    "stat": FORWARDABLE, "lstat": FORWARDABLE, "access": FORWARDABLE, "faccessat": FORWARDABLE,
    "faccessat2": FORWARDABLE, "readlink": FORWARDABLE, "readlinkat": FORWARDABLE, "unlink": FORWARDABLE,
    "unlinkat": FORWARDABLE, "rename": FORWARDABLE, "renameat": FORWARDABLE, "renameat2": FORWARDABLE,
    "mkdir": FORWARDABLE, "mkdirat": FORWARDABLE, "rmdir": FORWARDABLE, "symlink": FORWARDABLE,
    "symlinkat": FORWARDABLE, "link": FORWARDABLE, "linkat": FORWARDABLE, "chmod": FORWARDABLE,
    "fchmod": FORWARDABLE, "fchmodat": FORWARDABLE, "fchmodat2": FORWARDABLE, "chown": FORWARDABLE,
    "lchown": FORWARDABLE, "fchown": FORWARDABLE, "fchownat": FORWARDABLE, "utimensat": FORWARDABLE,
    "utime": FORWARDABLE, "utimes": FORWARDABLE, "truncate": FORWARDABLE, "statfs": FORWARDABLE,
    "connect": FORWARDABLE, "bind": FORWARDABLE, "sendmmsg": FORWARDABLE,
    # --- never: the sandbox's edges (ENOSYS, like everything absent) -----------------------------------------
    "execve": DENIED, "execveat": DENIED, "fork": DENIED, "vfork": DENIED, "ptrace": DENIED,
    "process_vm_readv": DENIED, "process_vm_writev": DENIED, "process_madvise": DENIED, "kcmp": DENIED,
    "io_uring_setup": DENIED, "io_uring_enter": DENIED, "io_uring_register": DENIED,
    "mount": DENIED, "umount2": DENIED, "unshare": DENIED, "setns": DENIED, "pivot_root": DENIED,
    "chroot": DENIED, "fsopen": DENIED, "fsmount": DENIED, "move_mount": DENIED, "open_tree": DENIED,
    "open_by_handle_at": DENIED, "name_to_handle_at": DENIED, "bpf": DENIED, "perf_event_open": DENIED,
    "userfaultfd": DENIED, "keyctl": DENIED, "add_key": DENIED, "request_key": DENIED,
    "pidfd_open": DENIED, "pidfd_getfd": DENIED, "pidfd_send_signal": DENIED,
    "setpriority": DENIED, "sched_setaffinity": DENIED, "sched_setscheduler": DENIED, "sched_setparam": DENIED,
    "sched_setattr": DENIED, "inotify_init": DENIED, "inotify_init1": DENIED, "inotify_add_watch": DENIED,
    "fanotify_init": DENIED, "fanotify_mark": DENIED, "mknod": DENIED, "mknodat": DENIED, "chdir": DENIED,
    "rt_sigqueueinfo": DENIED, "rt_tgsigqueueinfo": DENIED,
}


def resolve(cond: CondT, own_pid: int, channel_fds: tuple[int, ...]) -> list[Cond] | None:
    """The concrete conditions for *cond* (empty = always true), or None for "no such rule" (a per-channel-fd
    rule when there are no channel fds)."""
    value = cond.value
    if isinstance(value, Sym):
        if value == OWN_PID:
            value = own_pid
        elif value in (MIN_CHANNEL_FD, MAX_CHANNEL_FD):
            if not channel_fds:
                return []
            value = min(channel_fds) if value == MIN_CHANNEL_FD else max(channel_fds)
        else:  # CHANNEL_FD is expanded by the caller
            raise ValueError(f"unexpanded symbol {value}")
    if cond.op == "eq":
        return [eq(cond.arg, value)]
    if cond.op == "in":
        return [one_of(cond.arg, cond.values)]
    if cond.op == "low32":
        return [low32(cond.arg, value)]
    if cond.op == "masked_eq":
        return [masked_eq(cond.arg, cond.mask, value)]
    if cond.op == "gt32":
        return [gt32(cond.arg, value)]
    if cond.op == "lt32":
        return [lt32(cond.arg, value)]
    raise ValueError(f"unknown condition {cond.op}")
