"""The host's seccomp-notify supervisor: native syscalls of the process child, served like ocalls.

The child's seccomp filter stops each syscall named in `native.FORWARDED` with SECCOMP_RET_USER_NOTIF.  This
thread receives the notification, reads the syscall's memory arguments (paths, addresses, buffers) once from the
child, checks that the notification is still alive, turns it into the table row `native.py` declares, and hands
that row to `Host.perform` - the very function Python-level ocalls go through, so the policy re-check, the
openat2 confinement, the trace and the fault injection are the same.  The answer goes back through the listener:
a new descriptor installed atomically with SECCOMP_IOCTL_NOTIF_ADDFD + SEND, a struct written into the child's
buffer, a value, or -errno.

Rules that make it sound:
* the child's own syscall never runs: FLAG_CONTINUE is never used, so what was checked is what was done (the
  child cannot change the path in its memory after the check; the host acts on its own copy);
* every memory argument is read exactly once, into host memory; paths are bounded (MAX_PATH, NUL-terminated or
  ENAMETOOLONG), reads and writes go through process_vm_readv/writev, so they obey the child's page protections
  as the kernel's own copy would (EFAULT);
* SECCOMP_IOCTL_NOTIF_ID_VALID after the reads and before acting: the thread may have died and its tid been
  reused, which would make the memory read meaningless;
* the receive struct is a fresh zeroed buffer every time (the kernel refuses a non-zero one: libseccomp 2.5.4);
* nothing the child sends can crash or hang this thread: a malformed notification is answered with an errno,
  a thread that died is skipped (ENOENT), the child exiting ends the loop (POLLHUP), and `close()` wakes it.

This module is the listener's side: receive, check the notification is alive, perform, answer.  Reading one
notification's arguments and building the row's values is `native_call.py`; the child's memory and descriptors
are reached through `child_memory.py`.
"""

from __future__ import annotations

import errno
import logging
import re
import struct
import threading
from collections.abc import Callable
from typing import Any

from .. import native as N
from ..originals import fcntl, os, select
from .child_memory import ChildMemory
from .native_call import PACK_STRUCT, CompiledForm, NativeCall, i32
from .runtime import NATIVE, Entry, Host

log = logging.getLogger("posix_shim.host")


# ---------------------------------------------------------------------------------------------------------
# seccomp user-notification ABI (include/uapi/linux/seccomp.h), x86_64
# ---------------------------------------------------------------------------------------------------------


def _ioc(direction: int, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | ord("!") << 8 | nr


_W, _RW = 1, 3
NOTIF_SIZE = 80  # struct seccomp_notif: id, pid, flags, struct seccomp_data (nr, arch, ip, args[6])
IOCTL_RECV = _ioc(_RW, 0, NOTIF_SIZE)
IOCTL_SEND = _ioc(_RW, 1, 24)  # struct seccomp_notif_resp: id, val, error, flags
IOCTL_ID_VALID = _ioc(_W, 2, 8)
IOCTL_ADDFD = _ioc(_W, 3, 24)  # struct seccomp_notif_addfd: id, flags, srcfd, newfd, newfd_flags
IOCTL_SET_FLAGS = _ioc(_W, 4, 8)
ADDFD_FLAG_SEND = 2
USER_NOTIF_FD_SYNC_WAKE_UP = 1

_NOTIF = struct.Struct("<QIIiIQ6Q")
_RESP = struct.Struct("<QqiI")
_ADDFD = struct.Struct("<QIIII")
_ID = struct.Struct("<Q")

_PROC_FD = re.compile(rb"/proc/([^/]+)/fd/(\d+)")

# Rows that may wait on the outside world for long (a connect to a silent address): served on a thread of their
# own so one blocked call never stalls the others.  `open` stays inline (it blocks only on a FIFO without a peer).
_OFF_THREAD = frozenset({"connect", "sendto", "send"})


class Supervisor:
    """Serves the child's forwarded native syscalls on a daemon thread until the child exits or `close()`.

    host: the `Host` of this enclave (its `perform` is what every forwarded call goes through).
    listener_fd: the seccomp listener (the supervisor owns it from now on and closes it).
    pid: the child process (thread-group leader).
    cwd: the enclave's current directory, asked for each relative path.
    umask: the enclave's umask, applied to creation modes (None: only the host's own umask applies).
    """

    def __init__(self, host: Host, listener_fd: int, pid: int, cwd: Callable[[], bytes], *,
                 umask: Callable[[], int] | None = None) -> None:
        self.host = host
        self.listener = listener_fd
        self.pid = pid
        self.cwd = cwd
        self.umask = umask
        self.pidfd = os.pidfd_open(pid)
        try:
            self.memory = ChildMemory(pid)
        except BaseException:
            os.close(self.pidfd)
            raise
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._stop = False
        self._fds_closed = False
        self._fd_lock = threading.Lock()
        self._closing = False
        self._workers = 0  # calls being served on threads of their own (_OFF_THREAD)
        self.served = 0  # notifications answered (any answer)
        self.sync_wakeup = self._set_sync_wakeup()
        by_name = {e.name: e for e in host.entries.values()}
        self._by_name = by_name
        self._forms: dict[int, tuple[CompiledForm, ...]] = {
            n.nr: tuple(CompiledForm(n.syscall, f, by_name[f.row] if f.row else None, f.row in _OFF_THREAD)
                         for f in n.forms)
            for n in N.NATIVE
        }

    def _set_sync_wakeup(self) -> bool:
        # Linux 6.6+: the supervisor and the stopped thread hand the CPU to each other directly.
        try:
            fcntl.ioctl(self.listener, IOCTL_SET_FLAGS, USER_NOTIF_FD_SYNC_WAKE_UP)
            return True
        except OSError:
            return False

    # -- life cycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="posix_shim-supervisor", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (promptly: it is woken through a pipe) and release the listener and pidfd."""
        self._stop = True
        with self._fd_lock:  # never write to a number the thread already closed (it may be another file now)
            if not self._fds_closed:
                try:
                    os.write(self._wake_w, b"x")
                except OSError:
                    pass
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():
                # Stuck in a host call (an open of a FIFO without a peer): it closes the descriptors itself
                # when that returns; closing them under it could hand their numbers to another file.
                log.warning("native-call supervisor did not stop within %.1fs", timeout)
                return
        if t is None:
            self._close_fds()

    def _close_fds(self) -> None:
        with self._fd_lock:
            self._closing = True
            if self._fds_closed or self._workers:
                return  # a worker still answers through the listener: the last one closes
            self._fds_closed = True
            self.memory.close()
            for fd in (self.listener, self.pidfd, self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the loop ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        listener = self.listener
        try:
            while not self._stop:
                try:
                    ready = poller.poll()
                except InterruptedError:
                    continue
                if self._stop:
                    break
                events = 0
                for fd, ev in ready:
                    if fd == listener:
                        events = ev
                    else:
                        return
                if events & select.POLLIN:
                    notif = bytearray(NOTIF_SIZE)  # zeroed for every receive: the kernel requires it
                    try:
                        fcntl.ioctl(listener, IOCTL_RECV, notif)
                    except OSError as exc:
                        if exc.errno in (errno.ENOENT, errno.EINTR):
                            continue  # the thread was killed between poll and receive
                        log.warning("native-call supervisor stops: receive failed: %s", exc)
                        return
                    self._serve(notif)
                elif events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    return  # every thread of the child has exited
        except Exception:
            log.exception("native-call supervisor failed")
        finally:
            self._close_fds()

    def _serve(self, notif: bytearray) -> None:
        nid, tid, _flags, nr, arch, _ip, *args = _NOTIF.unpack(notif)
        forms = self._forms.get(nr) if arch == N.AUDIT_ARCH_X86_64 else None
        if forms is None:
            log.warning("native-call supervisor: syscall %d (arch %#x) is not forwarded", nr, arch)
            self._reply(nid, 0, errno.ENOSYS)
            return
        call = NativeCall(self, nid, tid, nr, tuple(args))
        try:
            for c in forms:
                if c.when is None or c.when(call, c.form.when):
                    break
            if c.off_thread:
                with self._fd_lock:
                    self._workers += 1
                try:
                    threading.Thread(target=self._finish_worker, args=(call, c), daemon=True,
                                     name="posix_shim-native").start()
                except BaseException:
                    self._worker_done()
                    raise
                return  # that thread answers and releases
        except OSError as exc:
            self._fail(nid, exc)
            call.release()
            return
        except Exception:
            log.exception("native-call supervisor: bad notification for syscall %d", nr)
            self._reply(nid, 0, errno.EIO)
            call.release()
            return
        self._finish(call, c)

    def _finish_worker(self, call: NativeCall, c: CompiledForm) -> None:
        try:
            self._finish(call, c)
        finally:
            self._worker_done()

    def _worker_done(self) -> None:
        with self._fd_lock:
            self._workers -= 1
            last = self._closing and self._workers == 0
        if last:
            self._close_fds()

    def _finish(self, call: NativeCall, c: CompiledForm) -> None:
        nid = call.id
        form = c.form
        try:
            answer = form.answer
            if type(answer) is N.Fail:
                raise OSError(answer.errno, os.strerror(answer.errno))
            values = call.build(c.getters)
            # The reads are done: from here on only the host's copies are used.  Check that the thread is still
            # waiting (and so its memory was its own) before doing anything.
            try:
                fcntl.ioctl(self.listener, IOCTL_ID_VALID, _ID.pack(nid))
            except OSError:
                return
            NATIVE.syscall, NATIVE.tid = c.syscall, call.tid
            try:
                if None in values:
                    settled = self._omit(form, values)
                    if settled is None:
                        self._reply(nid, 0, 0)
                        return
                    values = settled
                own = self._own_descriptor(values[0], call.tid) if form.row == "open" else None
                if own is not None:
                    result = self._reopen(own, values[0], values[1])
                elif c.entry is None:  # only a Fail form has no row, and it raised above
                    raise OSError(errno.EIO, f"native form of {c.syscall} names no host call")
                else:
                    result = self.host.perform(c.entry, tuple(values))
            finally:
                NATIVE.syscall = None
            _ANSWERS[type(answer)](self, call, answer, result)
        except OSError as exc:
            self._fail(nid, exc)
        except Exception:
            log.exception("native-call supervisor: %s failed", form.row)
            self._reply(nid, 0, errno.EIO)
        finally:
            call.release()
            self.served += 1

    # -- the child's own descriptors, reopened by path --------------------------------------------------------
    def _own_descriptor(self, path: bytes, tid: int) -> int | None:
        """N for a path naming one of the child's own descriptors (`/proc/self/fd/N`: how OpenSSL is handed an
        in-memory certificate).  On the host, /proc/self would be the host: it is the child's, or nothing."""
        match = _PROC_FD.fullmatch(path)
        if match is None or match.group(1) not in (b"self", b"thread-self", b"%d" % self.pid, b"%d" % tid):
            return None
        return int(match.group(2))

    def _reopen(self, fd: int, path: bytes, flags: int) -> int:
        """A new open of the file the child's descriptor `fd` already holds, for no more access than that one
        has (reopening a read-only descriptor for writing would be a way around the policy's read-only grant)."""
        host_fd = self.memory.getfd(self.pidfd, fd)
        try:
            held = fcntl.fcntl(host_fd, fcntl.F_GETFL) & os.O_ACCMODE
            want = flags & os.O_ACCMODE
            if want != held and held != os.O_RDWR:
                raise OSError(errno.EACCES, f"reopening descriptor {fd} for more access than it has")
            new = os.open(b"/proc/self/fd/%d" % host_fd, (flags & ~os.O_CREAT) | os.O_CLOEXEC)
        finally:
            os.close(host_fd)
        try:
            return self.host.handles.add(new, "file", path)
        except BaseException:
            os.close(new)
            raise

    def _omit(self, form: N.Form, values: list) -> list | None:
        """UTIME_OMIT for one of the two times: keep that time as it is, read with a stat through the policy."""
        atime, mtime = values[1], values[2]
        if atime is None and mtime is None:
            return None  # nothing to change: utimensat succeeds without touching the file
        if form.row == "futime":
            row, arg = "fstat", values[0]
        else:
            row, arg = ("stat" if values[4] else "lstat"), values[0]
        entry = self._entry(row)
        st = self.host.perform(entry, (arg,))
        values = list(values)
        values[1] = st[7] if atime is None else atime
        values[2] = st[8] if mtime is None else mtime
        return values

    def _entry(self, row: str) -> Entry:
        return self._by_name[row]

    # -- answers -------------------------------------------------------------------------------------------
    def _zero(self, call: NativeCall, answer: N.Zero, result: Any) -> None:
        self._reply(call.id, 0, 0)

    def _value(self, call: NativeCall, answer: N.Value, result: Any) -> None:
        self._reply(call.id, int(result), 0)

    def _struct(self, call: NativeCall, answer: N.StructOut, result: Any) -> None:
        self.memory.write(call.tid, call.args[answer.arg], PACK_STRUCT[answer.layout](result))
        self._reply(call.id, 0, 0)

    def _bytes(self, call: NativeCall, answer: N.BytesOut, result: Any) -> None:
        size = i32(call.args[answer.size])
        if size <= 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        data = bytes(result)[:size]
        self.memory.write(call.tid, call.args[answer.arg], data)
        self._reply(call.id, len(data), 0)

    def _install(self, call: NativeCall, answer: N.NewFd, handle: int) -> None:
        """Hand the new descriptor to the child: installed and answered in one ioctl; the host keeps no copy."""
        h = self.host.handles.pop(handle)
        try:
            cloexec = answer.flags is not None and call.args[answer.flags] & answer.cloexec
            req = bytearray(_ADDFD.pack(call.id, ADDFD_FLAG_SEND, h.fd, 0, os.O_CLOEXEC if cloexec else 0))
            try:
                fcntl.ioctl(self.listener, IOCTL_ADDFD, req)
            except OSError as exc:
                if exc.errno != errno.ENOENT:  # ENOENT: the thread is gone, nobody to answer
                    self._fail(call.id, exc)  # not installed: the notification still waits for an answer
        finally:
            os.close(h.fd)

    def _fail(self, nid: int, exc: OSError) -> None:
        err = exc.errno if isinstance(exc.errno, int) and exc.errno > 0 else errno.EIO
        self._reply(nid, 0, err)

    def _reply(self, nid: int, val: int, err: int) -> None:
        try:
            fcntl.ioctl(self.listener, IOCTL_SEND, bytearray(_RESP.pack(nid, val, -err, 0)))
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EBADF):
                log.warning("native-call supervisor could not answer: %s", exc)


_ANSWERS: dict[type, Callable[..., None]] = {
    N.Zero: Supervisor._zero, N.Value: Supervisor._value, N.StructOut: Supervisor._struct,
    N.BytesOut: Supervisor._bytes, N.NewFd: Supervisor._install,
}


__all__ = ["Supervisor", "ChildMemory", "NOTIF_SIZE"]
