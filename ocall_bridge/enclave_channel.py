"""The process transport: the wire format over a socketpair between the runner (host) and a child (enclave).

Both directions carry the frames of `wire.py` unchanged, multiplexed on one stream socket:

    enclave -> host   REQUEST (an ocall)            ECALL_RETURN (the result of an ecall)
    host -> enclave   ANSWER (matched by sequence)  ECALL (run a program, call a function, exit)

Ecall frames use the same 16-byte header: `call` holds the operation (OP_*), `sequence` pairs an ECALL with
its ECALL_RETURN, and the `errno` field carries flags (bit 0: more fragments of this payload follow).  The body
is opaque bytes (posix_shim puts JSON there); a payload larger than one frame is split into fragments, and the
receiver refuses to reassemble more than `max_ecall` bytes.  Every frame's length is checked against
`MAX_FRAME` from its header, before a byte of its body is read.

Enclave side (`EnclaveTransport`): many enclave threads may be inside ocalls at once.  Leader/follower: a
waiting thread reads the socket if nobody else is and hands other threads' answers to their slots, so a
single-threaded program pays no thread hand-off.  Writes go under one lock.  A watchdog thread polls the
socket for POLLHUP so that a dead host is noticed even while no thread reads.

Host side (`HostChannel`): one reader thread per enclave.  Calls whose table row is `blocking=False` are served
inline on the reader (the fast path); `blocking=True` calls go to a pool that grows to one worker per call in
flight (capped), so an accept, recv or sleep blocks only the enclave thread that asked for it.

Modules: the frames both ends share are in `framing.py`, the host's end (`HostChannel`) in `host_channel.py`,
the switchless slots in `ring.py`; this module is the enclave's end.

Everything here uses references captured at import: in the child the interposer rewrites `os`, `socket`,
`select` and `time`, and this module (skipped by name) must keep the real ones.  The enclave side never logs
or reads a clock: either would be an ocall made from inside the transport.
"""

from __future__ import annotations

import _socket
import _thread
import logging
import select as _select
import signal as _signal
import struct
import threading
from collections.abc import Callable
from typing import Any

from .calls import BY_NUMBER
from .errors import HostGone
from .framing import (
    _ANCILLARY,
    _MSG_CTRUNC,
    _SCM_RIGHTS,
    _SOL_SOCKET,
    _U32,
    FDS,
    MAX_ECALL,
    ChannelClosed,
    EcallAssembler,
    FrameReader,
    ProtocolError,
    ecall_frames,
    frame_kind,
    move_high,
    parse_fds_frame,
)
from .originals import os as _real
from .ring import ISSUES_HANDLES as _ISSUES_HANDLES
from .wire import ANSWER, ECALL, ECALL_RETURN

log = logging.getLogger("posix_shim.transport")

# Ecall operations (the `call` field of ECALL / ECALL_RETURN frames).

_allocate_lock = _thread.allocate_lock
_get_ident = _thread.get_ident
_start_new_thread = _thread.start_new_thread
_poll = _select.poll
_POLLIN, _POLLHUP, _POLLERR = _select.POLLIN, _select.POLLHUP, _select.POLLERR
_read, _close, _getppid, _pipe = _real.read, _real.close, _real.getppid, _real.pipe
_set_blocking = _real.set_blocking
_SocketType = _socket.socket
_default_int_handler = _signal.default_int_handler
_BLOCKING = frozenset(n for n, c in BY_NUMBER.items() if c.blocking)
_fstat = _real.fstat


# -- the enclave side --------------------------------------------------------------------------------------

# What the main thread is doing, for the SIGINT handler (only the main thread runs Python signal handlers).
OUT, BUSY, WAIT = 0, 1, 2


class _Slot:
    """One waiting thread: its answer when it comes, and a lock it sleeps on (released to wake it)."""

    __slots__ = ("frame", "lock", "signaled")

    def __init__(self) -> None:
        self.frame: Any = None
        self.lock = _allocate_lock()
        self.lock.acquire()
        self.signaled = False


class EnclaveTransport:
    """The enclave's end of the socketpair: `roundtrip` for ocalls, `wait_ecall` / `reply` for ecalls.

    A KeyboardInterrupt (or whatever a signal handler raises) must never cut a frame in half or lose another
    thread's answer: see `run_handler`, through which the child runs every Python-level signal handler.
    """

    name = "process"

    def __init__(self, fd: int, max_ecall: int = MAX_ECALL, ring: Any = None) -> None:
        self.sock = _SocketType(fileno=fd)
        self.fd = fd
        self._reader = FrameReader(self._recv_with_fds)
        self._arrived: list[int] = []  # descriptors received, not yet claimed by an FDS frame (stream order)
        self._passed: dict[int, int] = {}  # handle -> the real descriptor the host passed for it
        self.runtime_fds: set[int] = {fd}  # the runtime's own descriptors: never replaced by the program
        self._state = _allocate_lock()  # guards _pending, _ecall_slot, _inbox, _dead and slot signaling
        self._wlock = _allocate_lock()
        self._rlock = _allocate_lock()  # held by the leader, the one thread reading the socket
        self._pending: dict[int, _Slot] = {}
        self._ecall_slot: _Slot | None = None
        self._inbox: list[tuple[int, int, bytes]] = []
        self._assembler = EcallAssembler(ECALL, max_ecall)
        self._dead: str | None = None
        self._main = threading.main_thread().ident
        self.main_state = OUT
        self.deferred: list[tuple[Callable[[int, Any], Any], int]] = []
        self.closing = False  # set before a deliberate exit, so the watchdog stays quiet
        self.dropped = 0  # answers for sequence numbers nobody waited for
        self._main_poll = _poll()  # used by the main thread only (see _wait_readable)
        self._main_poll.register(self.fd, _POLLIN)
        self._wake_r = self._wake_w = -1
        # The switchless path (ring.RingClient) for every call that issues no handle; None: the socket only.
        self.ring = ring
        if ring is not None:
            self.runtime_fds.update(ring.fds())
        self._announce: Callable[[str], None] | None = None

    # -- ocalls --------------------------------------------------------------------------------------------
    def roundtrip(self, frame: bytes, seq: int) -> bytes | memoryview:
        ring = self.ring
        if _get_ident() != self._main:
            if ring is not None and frame[6] | frame[7] << 8 not in _ISSUES_HANDLES:
                answer = ring.roundtrip(frame, frame[6] | frame[7] << 8)
                if answer is not None:
                    return answer
            return self._roundtrip(frame, seq, False)
        self.main_state = BUSY
        try:
            if ring is not None and frame[6] | frame[7] << 8 not in _ISSUES_HANDLES:
                answer = ring.roundtrip(frame, frame[6] | frame[7] << 8, self._ring_wait)
                if answer is not None:
                    return answer
            return self._roundtrip(frame, seq, True)
        finally:
            self._leave_main()

    def roundtrip_into(self, frame: bytes, seq: int, buffer: memoryview, size: int) -> tuple[Any, bool]:
        """roundtrip() for the client's into route: `(answer, placed)`, see ring.RingClient.roundtrip.

        Through the ring a bulk answer's data is copied once, from the slot straight into `buffer`; over the
        socket (no ring, a call that issues handles, no free slot) the answer comes whole and `placed` is False.
        """
        ring = self.ring
        call = frame[6] | frame[7] << 8
        if ring is None or call in _ISSUES_HANDLES:
            return self.roundtrip(frame, seq), False
        main = _get_ident() == self._main
        if not main:
            got = ring.roundtrip(frame, call, None, buffer, size)
            return (self._roundtrip(frame, seq, False), False) if got is None else got
        self.main_state = BUSY
        try:
            got = ring.roundtrip(frame, call, self._ring_wait, buffer, size)
            return (self._roundtrip(frame, seq, True), False) if got is None else got
        finally:
            self._leave_main()

    def _ring_wait(self, waiting: bool) -> None:
        # The main thread's ring wait is where a signal handler may run at once (see run_handler).  One that came
        # during the spin before it (BUSY: deferred) runs now, or a Ctrl-C would wait for a blocked call's end.
        if waiting and self.deferred:
            handlers, self.deferred = self.deferred, []
            for handler, signum in handlers:
                handler(signum, None)  # may raise: the ring abandons the slot, as for a raise in the wait
        self.main_state = WAIT if waiting else BUSY

    def _roundtrip(self, frame: bytes, seq: int, main: bool) -> bytes | memoryview:
        slot = _Slot()
        with self._state:
            if self._dead is not None:
                raise HostGone(self._dead)
            self._pending[seq] = slot
        try:
            self._send(frame)
            # Only a blocking call waits for the socket with poll first, so that Ctrl-C can interrupt the wait;
            # a quick one reads straight away (one syscall less) and a signal waits the microseconds until its
            # answer is in.
            return self._await(slot, main, main and frame[6] | frame[7] << 8 in _BLOCKING)
        except BaseException:
            with self._state:
                self._pending.pop(seq, None)
            self._handoff()  # a KeyboardInterrupt may have eaten a wake-up meant to make this thread lead
            raise

    def _leave_main(self) -> None:
        self.main_state = OUT
        if self.deferred:
            handlers, self.deferred = self.deferred, []
            for handler, signum in handlers:
                handler(signum, None)

    def run_handler(self, handler: Callable[[int, Any], Any], signum: int, frame: Any) -> None:
        """Run a Python-level signal handler in the main thread, or defer it if that thread is mid-frame.

        Every handler in the child goes through here (the default SIGINT one, and any the program installs):
        a handler may raise, and an exception must never cut a frame in half or lose another thread's answer.
        While the main thread merely waits (WAIT: poll or sleep on its slot, nothing consumed) the handler runs
        at once, as it would interrupt a blocking system call; mid-frame (BUSY) it runs when the frame is done.
        """
        state = self.main_state
        if state == BUSY:
            self.deferred.append((handler, signum))
            return
        if state == WAIT:
            self.main_state = BUSY  # the unwinding (slot removal, hand-off) must not be cut short in turn
        handler(signum, frame)

    def on_interrupt(self, signum: int, frame: Any) -> None:
        """The child's SIGINT handler: Python's default (KeyboardInterrupt), through run_handler."""
        self.run_handler(_default_int_handler, signum, frame)

    def _send(self, data: bytes) -> None:
        try:
            with self._wlock:
                self.sock.sendall(data)
        except OSError as exc:
            self.fail(f"cannot write to the host: {exc.strerror or exc}")
            raise HostGone(self._dead or "") from None

    def _await(self, slot: _Slot, main: bool, poll_first: bool) -> Any:
        state, rlock = self._state, self._rlock
        while True:
            if slot.frame is not None:
                return slot.frame
            if self._dead is not None:
                raise HostGone(self._dead)
            if rlock.acquire(False):
                try:
                    self._lead(slot, poll_first)
                finally:
                    rlock.release()
                    self._handoff()
                continue
            if main:
                self.main_state = WAIT
                slot.lock.acquire()
                self.main_state = BUSY
            else:
                slot.lock.acquire()
            with state:
                slot.signaled = False

    def _lead(self, slot: _Slot, poll_first: bool) -> None:
        reader = self._reader
        try:
            while slot.frame is None:
                frame = reader.take()
                if frame is None:
                    if poll_first:
                        self._wait_readable()
                    reader.fill()
                    continue
                self._dispatch(frame)
        except (ChannelClosed, ProtocolError, OSError) as exc:
            reason = exc.reason if isinstance(exc, ChannelClosed) else f"{type(exc).__name__}: {exc}"
            self.fail(reason)

    def _wait_readable(self) -> None:
        # Only the wait is interruptible: poll consumes nothing, so a KeyboardInterrupt here loses no bytes.
        self.main_state = WAIT
        self._main_poll.poll()
        self.main_state = BUSY

    def _dispatch(self, frame: bytes | memoryview) -> None:
        kind = frame_kind(frame)
        (seq,) = _U32.unpack_from(frame, 8)
        if kind == ANSWER:
            with self._state:
                slot = self._pending.pop(seq, None)
                if slot is not None:
                    slot.frame = frame
                    self._wake(slot)
            if slot is None:
                # An answer nobody waits for: its caller was interrupted, or the host lies.  Never acted on, and
                # only counted: logging here would read the clock, an ocall, while this thread leads.
                self.dropped += 1
        elif kind == FDS:
            self._take_passed(frame)
        elif kind == ECALL:
            done = self._assembler.add(frame)
            if done is not None:
                with self._state:
                    self._inbox.append(done)
                    if self._ecall_slot is not None:
                        self._ecall_slot.frame = True
                        self._wake(self._ecall_slot)
        else:
            raise ProtocolError(f"the host sent a frame of kind {kind}")

    # -- descriptors passed by the host (one fd space) ----------------------------------------------------------
    def _recv_with_fds(self, view: memoryview) -> int:
        """recv_into that keeps any descriptors the host attached (a plain recv would silently close them)."""
        n, ancillary, flags, _ = self.sock.recvmsg_into([view], _ANCILLARY)
        for level, kind, data in ancillary:
            if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
                usable = len(data) - len(data) % 4
                self._arrived.extend(struct.unpack(f"<{usable // 4}i", data[:usable]))
        if flags & _MSG_CTRUNC:
            raise ProtocolError("the host attached more descriptors than one frame may carry")
        return n

    def _take_passed(self, frame: bytes | memoryview) -> None:
        handles = parse_fds_frame(frame)
        if len(self._arrived) < len(handles):
            raise ProtocolError(f"an FDS frame names {len(handles)} handles but {len(self._arrived)} descriptors came")
        fds, self._arrived = self._arrived[:len(handles)], self._arrived[len(handles):]
        with self._state:
            for handle, fd in zip(handles, fds, strict=True):
                old = self._passed.pop(handle, None)
                if old is not None:
                    _close(old)
                self._passed[handle] = move_high(fd, 3) if fd < 3 else fd

    def fd_for(self, handle: int) -> int | None:
        """The real descriptor the host passed for `handle` (the enclave owns it from now on)."""
        with self._state:
            fd = self._passed.pop(handle, None)
        if fd is None:
            raise OSError(5, f"the host issued handle {handle} without passing its descriptor")
        return fd

    def discard(self, handle: int) -> None:
        """The handle is being closed without ever having become an enclave fd: drop its descriptor."""
        with self._state:
            fd = self._passed.pop(handle, None)
        if fd is not None:
            _close(fd)

    def reserved(self, fd: int) -> bool:
        return fd in self.runtime_fds

    @staticmethod
    def same_file(a: int, b: int) -> bool:
        try:
            sa, sb = _fstat(a), _fstat(b)
        except OSError:
            return False
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)

    def _wake(self, slot: _Slot) -> None:  # with self._state held
        if not slot.signaled:
            slot.signaled = True
            slot.lock.release()

    def _handoff(self) -> None:
        """Nobody reads the socket any more: wake one waiting thread so that it takes over."""
        with self._state:
            if self._rlock.locked():
                return
            for slot in self._pending.values():
                if slot.frame is None:
                    self._wake(slot)
                    return
            if self._ecall_slot is not None and self._ecall_slot.frame is None:
                self._wake(self._ecall_slot)

    # -- ecalls --------------------------------------------------------------------------------------------
    def wait_ecall(self) -> tuple[int, int, bytes]:
        """The next (op, seq, payload) the host asks for.  Raises HostGone when the host is gone.

        A signal handler deferred while the main thread took an ecall off the socket runs before this returns;
        if it raises, the ecall is kept for the next call rather than lost.
        """
        main = _get_ident() == self._main
        if main:
            self.main_state = BUSY
        try:
            slot = _Slot()
            with self._state:
                ready = bool(self._inbox)
                if not ready:
                    self._ecall_slot = slot
            if not ready:
                try:
                    self._await(slot, main, main)
                finally:
                    with self._state:
                        self._ecall_slot = None
        finally:
            if main:
                self._leave_main()
        with self._state:
            return self._inbox.pop(0)

    def reply(self, op: int, seq: int, payload: bytes) -> None:
        """Send the result of ecall (op, seq)."""
        main = _get_ident() == self._main
        if main:
            self.main_state = BUSY
        try:
            frames = ecall_frames(ECALL_RETURN, op, seq, payload)
            self._send(frames[0] if len(frames) == 1 else b"".join(frames))
        finally:
            if main:
                self._leave_main()

    # -- failure -------------------------------------------------------------------------------------------
    def fail(self, reason: str) -> None:
        """The host is gone: every waiting and every later ocall raises HostGone.

        The first failure is announced (`on_gone`, from start_watchdog) before anyone is woken, so the message
        comes out even when the program, seeing EIO, ends the process at once.
        """
        with self._state:
            first = self._dead is None
            if first:
                self._dead = reason
        if first and not self.closing and self._announce is not None:
            self._announce(reason)
        if self.ring is not None:
            self.ring.fail(reason)
        with self._state:
            for slot in self._pending.values():
                self._wake(slot)
            if self._ecall_slot is not None:
                self._wake(self._ecall_slot)

    @property
    def dead(self) -> str | None:
        return self._dead

    def start_watchdog(self, on_gone: Callable[[str], None], then: Callable[[], None],
                       host_pid: int | None = None) -> int:
        """Watch for the host's death, even while no thread reads the socket.

        `on_gone(reason)` is called once, by whichever thread first finds the host gone (it must only say so);
        `then()` is called afterwards from the watchdog thread (to end the process).  Returns a descriptor to
        write a byte to (from a parent-death signal handler, say) to make the watchdog check whether the host
        process still exists.
        """
        self._announce = on_gone
        r, w = _pipe()
        self._wake_r, self._wake_w = move_high(r, self.fd), move_high(w, self.fd)
        self.runtime_fds.update((self._wake_r, self._wake_w))
        _set_blocking(self._wake_w, False)
        p = _poll()
        p.register(self.fd, 0)  # POLLHUP and POLLERR are always reported
        p.register(self._wake_r, _POLLIN)

        def watch() -> None:
            reason = None
            while reason is None:
                try:
                    events = p.poll()
                except InterruptedError:
                    continue
                for fd, ev in events:
                    if fd == self.fd and ev & (_POLLHUP | _POLLERR):
                        reason = "the host closed the channel"
                    elif fd == self._wake_r:
                        _read(self._wake_r, 64)
                        if host_pid is not None and _getppid() != host_pid:
                            reason = "the host process exited"
            if self.closing:
                return
            self.fail(reason)
            then()

        _start_new_thread(watch, ())
        return self._wake_w

    def close(self) -> None:
        self.closing = True
        self.fail("the enclave closed the channel")
        self.sock.close()


__all__ = ["EnclaveTransport"]
