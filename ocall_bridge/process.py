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

Everything here uses references captured at import: in the child the interposer rewrites `os`, `socket`,
`select` and `time`, and this module (skipped by name) must keep the real ones.  The enclave side never logs
or reads a clock: either would be an ocall made from inside the transport.
"""

from __future__ import annotations

import _socket
import _thread
import fcntl as _fcntl
import logging
import posix
import queue as _queue
import select as _select
import signal as _signal
import struct
import threading
import time as _time
from collections.abc import Callable
from typing import Any

from .calls import BY_NUMBER
from .errors import HostGone
from .ring import ISSUES_HANDLES as _ISSUES_HANDLES
from .types import MAX_FRAME
from .wire import ANSWER, ECALL, ECALL_RETURN, HEADER, HEADER_SIZE, REQUEST, WIRE_VERSION

log = logging.getLogger("posix_shim.process")

# Ecall operations (the `call` field of ECALL / ECALL_RETURN frames).
OP_INIT, OP_RUN, OP_CALL, OP_EXIT = 1, 2, 3, 4
# A transport-level frame kind, host -> enclave only: "the descriptors attached to this frame (SCM_RIGHTS) are
# those of these handles", sent just before the answer that issues the handles.  Body: u32 count, then count
# i64 handle numbers.  It gives the enclave process a real descriptor for every enclave fd (one fd space).
FDS = 5
MAX_PASSED = 16  # descriptors one answer may carry (attach: 3, pipe/socketpair: 2, everything else: 1)
_I64 = struct.Struct("<q")
_ANCILLARY = _socket.CMSG_SPACE(MAX_PASSED * 4)
MORE = 1  # flag in the errno field: another fragment of this payload follows
MAX_ECALL = 64 << 20  # default bound on one reassembled ecall payload, either direction
_FRAGMENT = MAX_FRAME - HEADER_SIZE

_U32 = struct.Struct("<I")
_allocate_lock = _thread.allocate_lock
_get_ident = _thread.get_ident
_start_new_thread = _thread.start_new_thread
_poll = _select.poll
_POLLIN, _POLLHUP, _POLLERR = _select.POLLIN, _select.POLLHUP, _select.POLLERR
_sleep = _time.sleep
_write, _read, _close, _getppid, _pipe = posix.write, posix.read, posix.close, posix.getppid, posix.pipe
_set_blocking = posix.set_blocking
_SocketType = _socket.socket
_default_int_handler = _signal.default_int_handler
_BLOCKING = frozenset(n for n, c in BY_NUMBER.items() if c.blocking)
_fcntl_call, _F_DUPFD_CLOEXEC = _fcntl.fcntl, _fcntl.F_DUPFD_CLOEXEC
_fstat = posix.fstat
_SOL_SOCKET, _SCM_RIGHTS, _MSG_CTRUNC = _socket.SOL_SOCKET, _socket.SCM_RIGHTS, _socket.MSG_CTRUNC
HIGH_FD = 900  # where the enclave process keeps its own descriptors (see move_high)


def move_high(fd: int, floor: int = HIGH_FD) -> int:
    """Move `fd` to the lowest free number >= floor (close-on-exec), closing the original.

    The enclave's own fds are virtual, but C code inside the enclave process (the traceback printer, an
    extension) can still reach a *real* descriptor by a small number - and must not find the channel or the
    watchdog's pipe there.
    """
    try:
        new = _fcntl_call(fd, _F_DUPFD_CLOEXEC, floor)
    except OSError:  # a tiny RLIMIT_NOFILE: leave it where it is
        return fd
    _close(fd)
    return new


class ProtocolError(Exception):
    """The peer sent a stream that is not a sequence of valid frames: the channel cannot be trusted any more."""


class ChannelClosed(Exception):
    """The channel is closed (the peer exited or broke the protocol); `reason` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- framing -----------------------------------------------------------------------------------------------


class FrameReader:
    """Frames out of a byte stream, reading as much as the socket has so that several frames cost one recv.

    The length in each header is checked (at least a header, at most `max_frame`) as soon as the header is
    buffered, before any room is made for the body: a peer cannot make this side allocate more than one frame.
    Small frames are copied out of a reused buffer; a frame larger than the buffer is read into its own.
    """

    def __init__(self, recv_into: Callable[[memoryview], int], size: int = 256 << 10,
                 max_frame: int = MAX_FRAME) -> None:
        self._recv_into = recv_into
        self._small = bytearray(size)
        self._small_view = memoryview(self._small)
        self._buf, self._view = self._small, self._small_view
        self._start = self._end = 0
        self._max = max_frame

    def take(self) -> bytes | memoryview | None:
        """The next complete frame, or None when more bytes must be read first."""
        start = self._start
        avail = self._end - start
        if avail < HEADER_SIZE:
            return None
        (length,) = _U32.unpack_from(self._buf, start)
        if length < HEADER_SIZE or length > self._max:
            raise ProtocolError(f"frame header claims {length} bytes (limit {self._max})")
        if avail < length:
            if start + length > len(self._buf):
                self._make_room(length)
            return None
        end = start + length
        if self._buf is self._small:
            frame: bytes | memoryview = bytes(self._view[start:end])
            if end == self._end:
                self._start = self._end = 0
            else:
                self._start = end
            return frame
        frame = self._view  # a dedicated buffer holds exactly this frame; go back to the shared one
        self._buf, self._view = self._small, self._small_view
        self._start = self._end = 0
        return frame

    def _make_room(self, length: int) -> None:
        avail = self._end - self._start
        if length <= len(self._small):
            self._small[:avail] = self._small_view[self._start:self._end]
        else:
            big = bytearray(length)  # length was checked against max_frame by take()
            big[:avail] = self._view[self._start:self._end]
            self._buf, self._view = big, memoryview(big)
        self._start, self._end = 0, avail

    def fill(self) -> None:
        """One read from the stream (blocking).  EOF raises ChannelClosed."""
        if self._end == len(self._buf):  # only possible with a partial header at the very end of the buffer
            self._make_room(HEADER_SIZE)
        n = self._recv_into(self._view[self._end:])
        if not n:
            partial = self._end - self._start
            raise ChannelClosed("the peer closed the channel" + (f" inside a frame ({partial} bytes)"
                                                                  if partial else ""))
        self._end += n

    def read(self) -> bytes | memoryview:
        while True:
            frame = self.take()
            if frame is not None:
                return frame
            self.fill()


def fds_frame(handles: list[int]) -> bytes:
    body = _U32.pack(len(handles)) + b"".join(_I64.pack(h) for h in handles)
    return HEADER.pack(HEADER_SIZE + len(body), WIRE_VERSION, FDS, 0, 0, 0) + body


def parse_fds_frame(frame: bytes | memoryview) -> list[int]:
    if len(frame) < HEADER_SIZE + 4:
        raise ProtocolError("short FDS frame")
    (count,) = _U32.unpack_from(frame, HEADER_SIZE)
    if not 0 < count <= MAX_PASSED or len(frame) != HEADER_SIZE + 4 + 8 * count:
        raise ProtocolError(f"malformed FDS frame ({count} handles in {len(frame)} bytes)")
    return [_I64.unpack_from(frame, HEADER_SIZE + 4 + 8 * i)[0] for i in range(count)]


# The confined enclave process's first message: one FDS frame (handle 0) carrying the seccomp listener.
_LISTENER_FRAME_SIZE = HEADER_SIZE + 4 + 8


def send_listener(fd: int, listener: int) -> None:
    """Enclave side: hand the seccomp listener to the host, before any other frame."""
    sock = _SocketType(fileno=fd)
    try:
        sock.sendmsg([fds_frame([0])], [(_SOL_SOCKET, _SCM_RIGHTS, struct.pack("<i", listener))])
    finally:
        sock.detach()


def receive_listener(sock: Any, timeout: float) -> int:
    """Host side: the listener the confined child sends first.  ChannelClosed if it exits instead."""
    sock.settimeout(timeout)
    try:
        data, fds = bytearray(), []
        while len(data) < _LISTENER_FRAME_SIZE:
            chunk, ancillary, flags, _ = sock.recvmsg(_LISTENER_FRAME_SIZE - len(data), _ANCILLARY)
            for level, kind, raw in ancillary:
                if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
                    fds.extend(struct.unpack(f"<{len(raw) // 4}i", raw[:len(raw) - len(raw) % 4]))
            if not chunk:
                raise ChannelClosed("the enclave process exited before it was confined")
            data += chunk
    except TimeoutError:
        raise ChannelClosed("the enclave process did not confine itself in time") from None
    finally:
        sock.settimeout(None)
    if frame_kind(data) != FDS or parse_fds_frame(data) != [0] or len(fds) != 1:
        for fd in fds:
            _close(fd)
        raise ProtocolError("the enclave process's first message is not its seccomp listener")
    return fds[0]


def frame_kind(frame: bytes | memoryview) -> int:
    """The kind of a frame whose length was already checked; the version must be ours."""
    if frame[4] != WIRE_VERSION:
        raise ProtocolError(f"wire version {frame[4]}, expected {WIRE_VERSION}")
    return frame[5]


def ecall_frames(kind: int, op: int, seq: int, payload: bytes) -> list[bytes]:
    """An ECALL or ECALL_RETURN payload as one or more frames (fragments flagged MORE but the last)."""
    pieces = [payload[i:i + _FRAGMENT] for i in range(0, len(payload), _FRAGMENT)] or [b""]
    last = len(pieces) - 1
    return [HEADER.pack(HEADER_SIZE + len(p), WIRE_VERSION, kind, op, seq, 0 if i == last else MORE) + p
            for i, p in enumerate(pieces)]


class EcallAssembler:
    """Reassembles fragmented ecall payloads, refusing to hold more than `limit` bytes."""

    def __init__(self, kind: int, limit: int = MAX_ECALL) -> None:
        self.kind = kind
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._head: tuple[int, int] | None = None

    def add(self, frame: bytes | memoryview) -> tuple[int, int, bytes] | None:
        """(op, seq, payload) when `frame` completes one, else None."""
        _, _, kind, op, seq, flags = HEADER.unpack_from(frame, 0)
        if kind != self.kind or flags & ~MORE:
            raise ProtocolError(f"bad ecall frame (kind {kind}, flags {flags})")
        if self._head is not None and self._head != (op, seq):
            raise ProtocolError(f"ecall fragment for {op}/{seq} inside {self._head}")
        self._head = (op, seq)
        self._size += len(frame) - HEADER_SIZE
        if self._size > self.limit:
            raise ProtocolError(f"ecall payload exceeds {self.limit} bytes")
        self._parts.append(bytes(frame[HEADER_SIZE:]))
        if flags & MORE:
            return None
        payload = b"".join(self._parts)
        self._parts, self._size, self._head = [], 0, None
        return op, seq, payload


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

    def _ring_wait(self, waiting: bool) -> None:
        # The main thread's ring wait is where a signal handler may run at once (see run_handler).
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


# -- the host side -----------------------------------------------------------------------------------------


class _EcallWait:
    __slots__ = ("lock", "result", "error")

    def __init__(self) -> None:
        self.lock = _allocate_lock()
        self.lock.acquire()
        self.result: bytes | None = None
        self.error: str | None = None


class HostChannel:
    """Serves one enclave's ocalls over the socketpair and carries the host's ecalls to it.

    `host` is anything with `serve(frame) -> answer | None` and `entries` (number -> row with `.blocking`): an
    `ocall_bridge.host.runtime.Host`.  `on_close(reason)` is called once, from the reader thread, when the
    channel ends (the child closed it, died, or broke the protocol) - before any waiting ecall is woken.
    """

    def __init__(self, host: Any, sock: Any, on_close: Callable[[str], None] | None = None,
                 max_workers: int = 256, max_queued: int = 1024, max_ecall: int = MAX_ECALL,
                 pass_fds: bool = False, ring: Any = None) -> None:
        self.host = host
        self.sock = sock
        # pass_fds: every handle an answer issues travels with it as a real descriptor (SCM_RIGHTS), so the
        # enclave process can give C code the same open file its Python-level ocalls use.  Collected per serving
        # thread by the handle table's `on_issue` hook while that thread serves a frame.
        self._serving = threading.local()
        if pass_fds:
            host.handles.on_issue = self._issued
        self.on_close = on_close
        self._reader = FrameReader(sock.recv_into)
        self._wlock = _allocate_lock()
        self._assembler = EcallAssembler(ECALL_RETURN, max_ecall)
        self._ecall_lock = threading.Lock()  # one ecall at a time: the enclave runs them on its main thread
        self._waiting: dict[int, _EcallWait] = {}
        self._next_ecall = 0
        self.closed: str | None = None
        self._close_lock = _allocate_lock()
        # The blocking-call pool: a worker per blocking call in flight, up to max_workers; beyond that calls
        # queue, and beyond max_queued the reader stops reading (the enclave's writes then block).
        self._jobs: _queue.SimpleQueue = _queue.SimpleQueue()
        self._pool_lock = _allocate_lock()
        self._idle = 0
        self._workers = 0
        self._max_workers = max_workers
        self._room = threading.BoundedSemaphore(max_queued)
        self._thread = threading.Thread(target=self._read_loop, name="posix_shim-host-reader", daemon=True)
        # The switchless path (ring.RingFds, or None): served by its own thread, blocking calls on this pool.
        self.ring: Any = None
        if ring is not None:
            from .ring import RingServer

            self.ring = RingServer(ring, host.serve, self._submit, serve_into=getattr(host, "serve_into", None))

    def start(self) -> None:
        self._thread.start()
        if self.ring is not None:
            self.ring.start()

    # -- serving -------------------------------------------------------------------------------------------
    def _issued(self, handle: int) -> None:
        pending = getattr(self._serving, "handles", None)
        if pending is not None:
            pending.append(handle)

    def _serve_passing(self, frame: bytes | memoryview) -> bytes | memoryview | None:
        """serve(), then send the descriptors of any handles the answer issued just ahead of it."""
        self._serving.handles = pending = []
        try:
            answer = self.host.serve(frame)
        finally:
            self._serving.handles = None
        if pending and answer is not None:
            fds = []
            live = []
            for handle in pending[:MAX_PASSED]:
                try:
                    fds.append(self.host.handles.get(handle).fd)
                    live.append(handle)
                except OSError:
                    pass  # issued and closed again while serving (the call failed after opening)
            if live:
                try:
                    with self._wlock:
                        self.sock.sendmsg([fds_frame(live)], [(_SOL_SOCKET, _SCM_RIGHTS, struct.pack(
                            f"<{len(fds)}i", *fds))])
                        self.sock.sendall(answer)
                except OSError:
                    pass
                return None
        return answer

    def _read_loop(self) -> None:
        reader, send, entries = self._reader, self._send, self.host.entries
        serve = self._serve_passing if getattr(self.host.handles, "on_issue", None) == self._issued else \
            self.host.serve
        reason = "the enclave closed the channel"
        try:
            while True:
                frame = reader.take()
                if frame is None:
                    reader.fill()
                    continue
                kind = frame_kind(frame)
                if kind == REQUEST:
                    entry = entries.get(frame[6] | frame[7] << 8)
                    if entry is not None and entry.blocking:
                        self._submit(frame)
                    else:
                        answer = serve(frame)
                        if answer is not None:
                            send(answer)
                elif kind == ECALL_RETURN:
                    done = self._assembler.add(frame)
                    if done is not None:
                        self._ecall_done(*done)
                else:
                    raise ProtocolError(f"the enclave sent a frame of kind {kind}")
        except ChannelClosed as exc:
            reason = exc.reason
        except ProtocolError as exc:
            reason = f"protocol violation: {exc}"
            log.error("enclave broke the protocol: %s", exc)
        except OSError as exc:
            reason = f"channel error: {exc}"
        except BaseException as exc:  # a bug here must still wake everyone waiting on this channel
            log.exception("host reader failed")
            reason = f"host reader failed: {exc!r}"
        self._close(reason)

    def _send(self, data: bytes) -> None:
        try:
            with self._wlock:
                self.sock.sendall(data)
        except OSError:
            pass  # the enclave is gone; the reader sees EOF and reports it

    def _submit(self, frame: bytes | memoryview, deliver: Callable[[Any], None] | None = None,
                serve: Callable[[Any], Any] | None = None) -> None:
        """Serve `frame` on the pool; its answer goes over the socket, or to `deliver` (the ring's slot), in
        which case `serve` (if given) serves it instead of the host's own serve."""
        self._room.acquire()
        with self._pool_lock:
            if self._idle:
                self._idle -= 1  # that idle worker is now claimed for this frame
                spawn = False
            else:
                spawn = self._workers < self._max_workers
                self._workers += spawn
        self._jobs.put((frame, deliver, serve))
        if spawn:
            threading.Thread(target=self._worker, name="posix_shim-host-worker", daemon=True).start()

    def _worker(self) -> None:
        send, jobs = self._send, self._jobs
        serve = self._serve_passing if getattr(self.host.handles, "on_issue", None) == self._issued else \
            self.host.serve
        while True:
            job = jobs.get()
            if job is None:
                return
            frame, deliver, own = job
            try:
                answer = serve(frame) if own is None else own(frame)
                if deliver is not None:
                    deliver(answer)
                elif answer is not None and self.closed is None:
                    send(answer)
            finally:
                self._room.release()
            with self._pool_lock:
                self._idle += 1

    # -- ecalls --------------------------------------------------------------------------------------------
    def ecall(self, op: int, payload: bytes) -> bytes:
        """Send an ecall and wait for its result.  Raises ChannelClosed if the enclave goes away first.

        The wait is a lock acquisition, which a signal interrupts to run its handler (so the runner can
        forward Ctrl-C) and then resumes.
        """
        with self._ecall_lock:
            wait = _EcallWait()
            with self._close_lock:
                if self.closed is not None:
                    raise ChannelClosed(self.closed)
                self._next_ecall = (self._next_ecall + 1) & 0xFFFFFFFF
                seq = self._next_ecall
                self._waiting[seq] = wait
            try:
                for frame in ecall_frames(ECALL, op, seq, payload):
                    self._send(frame)
                wait.lock.acquire()
            finally:
                with self._close_lock:
                    self._waiting.pop(seq, None)
            if wait.error is not None:
                raise ChannelClosed(wait.error)
            assert wait.result is not None
            return wait.result

    def _ecall_done(self, op: int, seq: int, payload: bytes) -> None:
        with self._close_lock:
            wait = self._waiting.pop(seq, None)
        if wait is None:  # its caller gave up waiting (an exception in the wait): nothing to deliver to
            log.warning("ecall result for sequence %d which nobody waits for: dropped", seq)
            return
        wait.result = payload
        wait.lock.release()

    # -- the end -------------------------------------------------------------------------------------------
    def _close(self, reason: str) -> None:
        with self._close_lock:
            if self.closed is not None:
                return
            self.closed = reason
        if self.on_close is not None:
            try:
                self.on_close(reason)
            except Exception:
                log.exception("on_close failed")
        if self.ring is not None:
            self.ring.stop()
        with self._close_lock:
            waits, self._waiting = list(self._waiting.values()), {}
        for wait in waits:
            wait.error = reason
            wait.lock.release()
        with self._pool_lock:
            workers = self._workers
        for _ in range(workers):
            self._jobs.put(None)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop reading and release the socket (the child must be gone or going)."""
        try:
            self.sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._close("the host closed the channel")
        self.sock.close()


__all__ = [
    "move_high", "OP_INIT", "OP_RUN", "OP_CALL", "OP_EXIT", "MORE", "MAX_ECALL", "FrameReader", "ProtocolError",
    "ChannelClosed", "EcallAssembler", "EnclaveTransport", "HostChannel", "ecall_frames", "frame_kind", "FDS",
    "fds_frame", "parse_fds_frame", "send_listener", "receive_listener",
]
