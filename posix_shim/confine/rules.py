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

from ocall_bridge.frozen import Frozen

from .bpf import Cond, eq, gt32, low32, lt32, masked_eq, one_of

EPERM = errno.EPERM
ENOSYS = errno.ENOSYS


class Sym(str):
    """A value only known when the filter is built (pid, channel descriptors)."""


OWN_PID = Sym("own_pid")
CHANNEL_FD = Sym("channel_fd")
MIN_CHANNEL_FD = Sym("min_channel_fd")
MAX_CHANNEL_FD = Sym("max_channel_fd")


class CondT(Frozen):
    """A condition whose value may be a :class:`Sym`."""

    arg: int
    op: str  # "eq" | "in" | "low32" | "masked_eq" | "gt32" | "lt32"
    value: int | Sym
    mask: int = 0
    values: tuple[int, ...] = ()


class RuleT(Frozen):
    """``kind``: "allow" (when), "refuse" (fixed errno), "fallback" (go to the row's fallback)."""

    kind: str
    conds: tuple[CondT, ...]
    errno: int = 0


class Row(Frozen):
    rules: tuple[RuleT, ...]
    otherwise: int  # errno when no rule matched and the syscall is not forwarded
    always: bool = False  # unconditional ALLOW: forwarding it would mean nothing
    note: str = ""  # why, for the rendered table


def when(*conds: CondT) -> RuleT:
    return RuleT("allow", conds)


def refuse(err: int, *conds: CondT) -> RuleT:
    return RuleT("refuse", conds, err)


def to_fallback(*conds: CondT) -> RuleT:
    return RuleT("fallback", conds)


def only(*rules: RuleT, otherwise: int = EPERM, note: str = "") -> Row:
    return Row(tuple(rules), otherwise, note=note)


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


def DENIED_WITH(err: int, note: str) -> Row:
    return Row((), err, note=note)


# --- constants used below (x86_64 uapi values) ------------------------------------------------------------------
CLONE_THREAD = 0x00010000
# Namespace flags: a "thread" in a new namespace is not a thread of this sandbox (CLONE_NEWNET with
# CLONE_THREAD is accepted by the kernel). CLONE_NEWTIME (0x80) is left out: in clone() that byte is the exit
# signal, and the kernel only accepts CLONE_NEWTIME through clone3/unshare, both refused.
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
SOCK_RAW, SOCK_PACKET = 3, 10
SOCK_TYPE_MASK = 0xF
FIONREAD, FIONBIO, FIOCLEX, FIONCLEX = 0x541B, 0x5421, 0x5451, 0x5450
TCGETS, TIOCGWINSZ, TIOCGPGRP = 0x5401, 0x5413, 0x540F
TCGETS2 = 0x802C542A  # newer glibc's tcgetattr
PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE = 1, 2, 3
PR_SET_NAME, PR_GET_NAME, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 15, 16, 38, 39
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = 0, 1, 2, 3, 4, 5, 6, 7
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS = 1030, 1031, 1032, 1033, 1034
MADV_HWPOISON, MADV_SOFT_OFFLINE = 100, 101
O_NONBLOCK, O_DIRECT, O_CLOEXEC = 0o4000, 0o40000, 0o2000000
PIPE2_OK = O_NONBLOCK | O_DIRECT | O_CLOEXEC
CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM = 8, 9
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
AT_FDCWD = -100

_FCNTL_OK = (F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK,
             F_OFD_SETLKW, F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS)
_IOCTL_OK = (FIONREAD, FIONBIO, FIOCLEX, FIONCLEX, TCGETS, TCGETS2, TIOCGWINSZ, TIOCGPGRP)
_PRCTL_OK = (PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE, PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_SET_NO_NEW_PRIVS,
             PR_GET_NO_NEW_PRIVS)
_SELF = (when(arg_eq(0, 0)), when(arg_eq(0, OWN_PID)))  # pid argument 0 (= the caller) or its own pid

# ----------------------------------------------------------------------------------------------------------------
# The table. Rows with argument checks come first: the kernel's cache cannot skip the filter for them, so they
# are the ones whose position costs time.
# ----------------------------------------------------------------------------------------------------------------
TABLE: dict[str, Row] = {
    # --- argument-checked (the note is the reason, and is what docs/confinement.md shows) -----------------------
    "close": only(refuse(EPERM, arg_low32(0, CHANNEL_FD)), when(),
                  note="never a channel descriptor"),
    "fcntl": only(when(arg_in(1, _FCNTL_OK)),
                  note="dup, flags, locks, pipe size, seals; no F_SETOWN/F_SETSIG/F_NOTIFY/leases (signals to others)"),
    "ioctl": only(when(arg_in(1, _IOCTL_OK)),
                  note="FIONREAD FIONBIO FIOCLEX FIONCLEX TCGETS TCGETS2 TIOCGWINSZ TIOCGPGRP; never TIOCSTI"),
    "madvise": only(refuse(EPERM, arg_low32(2, MADV_HWPOISON)), refuse(EPERM, arg_low32(2, MADV_SOFT_OFFLINE)),
                    when(), note="root could poison or offline a physical page of the machine"),
    "sendto": only(when(arg_eq(4, 0)), otherwise=ENOSYS,
                   note="no destination address; with one it is the host's call"),
    "sendmsg": only(when(arg_eq(0, CHANNEL_FD)), otherwise=ENOSYS,
                    note="a msghdr may name an address that BPF cannot read: natively on the channel only"),
    "dup2": only(refuse(EPERM, arg_low32(1, CHANNEL_FD)), when(), note="cannot replace a channel descriptor"),
    "dup3": only(refuse(EPERM, arg_low32(1, CHANNEL_FD)), when(), note="cannot replace a channel descriptor"),
    "close_range": only(when(arg_gt32(0, MAX_CHANNEL_FD)), when(arg_lt32(1, MIN_CHANNEL_FD)),
                        note="a range that misses every channel fd (CPython then falls back to close())"),
    "clone": only(when(arg_masked(0, CLONE_THREAD | CLONE_NAMESPACES, CLONE_THREAD)),
                  note="threads only (no fork, no new namespace)"),
    "kill": only(when(arg_eq(0, OWN_PID)),
                 note="itself only; pid 0 is its process group, which may hold the host"),
    "tkill": only(when(arg_eq(0, OWN_PID)), note="its main thread only"),
    "tgkill": only(when(arg_eq(0, OWN_PID)), note="its own thread group"),
    "prlimit64": only(when(arg_eq(0, 0), arg_eq(2, 0)), when(arg_eq(0, OWN_PID), arg_eq(2, 0)),
                      note="read its own limits; never set any, never another process's"),
    "prctl": only(when(arg_in(0, _PRCTL_OK)),
                  note="SET/GET_NAME, GET_DUMPABLE, SET/GET_PDEATHSIG, SET/GET_NO_NEW_PRIVS"),
    "sched_getaffinity": only(*_SELF, note="itself only"),
    "sched_getparam": only(*_SELF, note="itself only"),
    "sched_getscheduler": only(*_SELF, note="itself only"),
    "socketpair": only(when(arg_eq(0, AF_UNIX)), note="AF_UNIX only"),
    "socket": only(refuse(EPERM, arg_masked(1, SOCK_TYPE_MASK, SOCK_RAW)),
                   refuse(EPERM, arg_masked(1, SOCK_TYPE_MASK, SOCK_PACKET)),
                   to_fallback(arg_low32(0, AF_UNIX)), to_fallback(arg_low32(0, AF_INET)),
                   to_fallback(arg_low32(0, AF_INET6)), refuse(EPERM), otherwise=ENOSYS,
                   note="AF_UNIX/INET/INET6 go to the host (or ENOSYS); netlink, packet, raw, vsock, alg... "
                        "never, even if the host serves socket()"),
    "pipe2": only(when(arg_masked(1, 0xFFFFFFFF & ~PIPE2_OK, 0)),
                  note="O_CLOEXEC, O_NONBLOCK, O_DIRECT; no O_NOTIFICATION_PIPE (kernel watch queues)"),
    "clock_nanosleep": only(refuse(EPERM, arg_low32(0, CLOCK_REALTIME_ALARM)),
                            refuse(EPERM, arg_low32(0, CLOCK_BOOTTIME_ALARM)), when(),
                            note="no *_ALARM clocks: as root they would program the machine's wake-up alarm"),
    "timer_create": only(refuse(EPERM, arg_low32(0, CLOCK_REALTIME_ALARM)),
                         refuse(EPERM, arg_low32(0, CLOCK_BOOTTIME_ALARM)), when(), note="as clock_nanosleep"),
    "timerfd_create": only(refuse(EPERM, arg_low32(0, CLOCK_REALTIME_ALARM)),
                           refuse(EPERM, arg_low32(0, CLOCK_BOOTTIME_ALARM)), when(), note="as clock_nanosleep"),
    "seccomp": only(when(arg_masked(1, SECCOMP_FILTER_FLAG_NEW_LISTENER, 0)),
                    note="more filters, never with its own listener (the newest USER_NOTIF filter wins a tie)"),
    "newfstatat": only(to_fallback(arg_low32(0, AT_FDCWD)), when(arg_eq(1, 0)), otherwise=ENOSYS,
                       note="NULL path + AT_EMPTY_PATH is fstat(fd) (Linux 6.11+); glibc's fstat passes \"\", "
                            "a pointer BPF cannot read: forward it"),
    "statx": only(to_fallback(arg_low32(0, AT_FDCWD)), when(arg_eq(1, 0)), otherwise=ENOSYS,
                  note="as newfstatat"),
    # --- I/O on descriptors it holds -------------------------------------------------------------------------
    "read": ALLOWED, "write": ALLOWED, "readv": ALLOWED, "writev": ALLOWED, "pread64": ALLOWED,
    "pwrite64": ALLOWED, "preadv": ALLOWED, "pwritev": ALLOWED, "preadv2": ALLOWED, "pwritev2": ALLOWED,
    "lseek": ALLOWED, "dup": ALLOWED, "fstat": ALLOWED, "fstatfs": ALLOWED, "ftruncate": ALLOWED,
    "fallocate": ALLOWED, "fadvise64": ALLOWED, "readahead": ALLOWED, "fsync": ALLOWED, "fdatasync": ALLOWED,
    "sync_file_range": ALLOWED, "flock": ALLOWED, "getdents64": ALLOWED,
    "sendfile": ALLOWED, "copy_file_range": ALLOWED, "splice": ALLOWED, "tee": ALLOWED,  # between held fds
    "pipe": ALLOWED, "eventfd": ALLOWED, "eventfd2": ALLOWED, "memfd_create": ALLOWED,
    "poll": ALLOWED, "ppoll": ALLOWED, "select": ALLOWED, "pselect6": ALLOWED, "epoll_create": ALLOWED,
    "epoll_create1": ALLOWED, "epoll_ctl": ALLOWED, "epoll_wait": ALLOWED, "epoll_pwait": ALLOWED,
    "epoll_pwait2": ALLOWED,
    "recvfrom": ALLOWED, "recvmsg": ALLOWED, "recvmmsg": ALLOWED, "getsockopt": ALLOWED, "setsockopt": ALLOWED,
    "getsockname": ALLOWED, "getpeername": ALLOWED, "shutdown": ALLOWED, "accept": ALLOWED,
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
    "alarm": ALLOWED, "getitimer": ALLOWED, "setitimer": ALLOWED,
    "timer_settime": ALLOWED, "timer_gettime": ALLOWED, "timer_getoverrun": ALLOWED, "timer_delete": ALLOWED,
    "timerfd_settime": ALLOWED, "timerfd_gettime": ALLOWED,
    # --- clocks, identity, harmless facts --------------------------------------------------------------------
    "clock_gettime": ALLOWED, "clock_getres": ALLOWED, "nanosleep": ALLOWED,
    "gettimeofday": ALLOWED, "time": ALLOWED, "times": ALLOWED, "getrandom": ALLOWED,
    "getpid": ALLOWED, "gettid": ALLOWED, "getppid": ALLOWED, "getuid": ALLOWED, "geteuid": ALLOWED,
    "getgid": ALLOWED, "getegid": ALLOWED, "getgroups": ALLOWED, "getresuid": ALLOWED, "getresgid": ALLOWED,
    "getpgrp": ALLOWED, "getrlimit": ALLOWED, "getrusage": ALLOWED, "uname": ALLOWED, "sysinfo": ALLOWED,
    # --- adding restrictions to itself -----------------------------------------------------------------------
    "landlock_create_ruleset": ALLOWED, "landlock_add_rule": ALLOWED, "landlock_restrict_self": ALLOWED,
    # --- in the subset, but never on this path ---------------------------------------------------------------
    "setrlimit": DENIED_WITH(EPERM, "limits are read-only, as with prlimit64"),
    "clone3": DENIED_WITH(ENOSYS, "ENOSYS on purpose: glibc then falls back to clone(), whose flags BPF can read"),
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
    # listen on a never-bound TCP socket binds it to a random port on every address, which Landlock does not
    # see: the host performs it and asks the policy about that implicit bind.
    "listen": FORWARDABLE,
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


def resolve(cond: CondT, own_pid: int, channel_fds: tuple[int, ...]) -> list[Cond]:
    """The concrete conditions for *cond* (empty = always true: a bound on channel fds when there are none).
    CHANNEL_FD must already be replaced by one descriptor (the caller repeats the rule per descriptor)."""
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


# ----------------------------------------------------------------------------------------------------------------
# Rendering (docs/confinement.md carries this output; a test keeps the two equal)
# ----------------------------------------------------------------------------------------------------------------


def _num(x: int) -> str:
    return str(x) if x < 4096 else hex(x)


def _cond_text(c: CondT) -> str:
    v = str(c.value) if isinstance(c.value, Sym) else _num(c.value)
    a = f"arg{c.arg}"
    if c.op == "eq":
        return f"{a} == {v}"
    if c.op == "in":
        return f"{a} in {{{', '.join(_num(x) for x in c.values)}}}"
    if c.op == "low32":
        return f"(int){a} == {v}"
    if c.op == "masked_eq":
        return f"{a} & {c.mask:#x} == {v}"
    if c.op == "gt32":
        return f"(u32){a} > {v}"
    return f"(u32){a} < {v}"


def _rule_text(r: RuleT) -> str:
    return " and ".join(_cond_text(c) for c in r.conds) or "always"


def render_markdown() -> str:
    """The table as Markdown: argument-checked rows, then the always-allowed, forwardable and denied names."""
    errname = errno.errorcode
    lines = ["| syscall | refused first | runs natively when | otherwise | why |", "|---|---|---|---|---|"]
    always, forwardable, denied = [], [], []
    for name, row in TABLE.items():
        if row.always:
            always.append(name)
        elif row is FORWARDABLE:
            forwardable.append(name)
        elif row is DENIED:
            denied.append(name)
        else:
            refused = "; ".join(f"{_rule_text(r)} -> {errname[r.errno]}" for r in row.rules if r.kind == "refuse")
            refused += "".join(f"{'; ' if refused else ''}{_rule_text(r)} -> otherwise" for r in row.rules
                               if r.kind == "fallback")
            native = " **or** ".join(_rule_text(r) for r in row.rules if r.kind == "allow") or "never"
            moot = any(r.kind == "allow" and not r.conds for r in row.rules)  # an unconditional allow ends the row
            otherwise = "-" if moot else errname[row.otherwise]
            lines.append(f"| `{name}` | {refused or '-'} | {native} | {otherwise} | {row.note} |")
    return "\n".join([
        "Argument-checked (\"otherwise\" becomes SECCOMP_RET_USER_NOTIF when the caller forwards the syscall):",
        "", *lines, "",
        f"Always allowed ({len(always)}): " + ", ".join(f"`{n}`" for n in always) + ".", "",
        f"Forwardable path and socket calls, ENOSYS unless forwarded ({len(forwardable)}): "
        + ", ".join(f"`{n}`" for n in forwardable) + ".", "",
        f"Named to say it: denied, ENOSYS ({len(denied)}): " + ", ".join(f"`{n}`" for n in denied) + ".", "",
        "Every other syscall: ENOSYS (or forwarded). Wrong architecture (i386 `int 0x80`): the process is killed.",
        "x32 ABI numbers: ENOSYS.",
    ])

