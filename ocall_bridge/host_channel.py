"""The host's end of the process transport: serves one enclave's ocalls and carries the host's ecalls to it.

See process.py for the protocol and the enclave's end; framing.py for the frames both ends share.
"""

from __future__ import annotations

import _socket
import _thread
import fcntl
import logging
import os
import queue as _queue
import stat
import struct
import threading
from collections.abc import Callable
from typing import Any

from .calls import BY_NAME
from .framing import (
    _SCM_RIGHTS,
    _SOL_SOCKET,
    MAX_ECALL,
    MAX_PASSED,
    ChannelClosed,
    EcallAssembler,
    FrameReader,
    ProtocolError,
    ecall_frames,
    fds_frame,
    frame_kind,
)
from .wire import ECALL, ECALL_RETURN, HEADER_SIZE, REQUEST

log = logging.getLogger("posix_shim.transport")
_allocate_lock = _thread.allocate_lock
_I64 = struct.Struct("<q")
_fstat, _S_ISREG = os.fstat, stat.S_ISREG
_getfl, _F_GETFL, _O_NONBLOCK = fcntl.fcntl, fcntl.F_GETFL, os.O_NONBLOCK
# `blocking` calls whose only wait is on their first parameter, a handle: on a regular file (read, write) or
# an O_NONBLOCK descriptor (all of them) they answer at once.
_REGULAR_QUICK = frozenset(BY_NAME[name].number for name in ("read", "write"))
_NONBLOCK_QUICK = _REGULAR_QUICK | {BY_NAME[name].number for name in ("send", "recv", "sendto", "recvfrom", "sendmsg")}


def _pseudo_devices() -> frozenset[int]:
    """The devices of the kernel's pseudo file systems, whose "regular" files may wait forever (/proc/kmsg,
    tracefs's trace_pipe): a read of one is never served inline on the ring thread."""
    devices = set()
    for where in ("/proc", "/sys", "/sys/kernel/tracing", "/sys/kernel/debug", "/sys/fs/cgroup", "/dev"):
        try:
            devices.add(os.stat(where).st_dev)
        except OSError:
            pass
    return frozenset(devices)


_PSEUDO_DEVICES = _pseudo_devices()

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

            self.ring = RingServer(ring, host.serve, self._submit, serve_into=getattr(host, "serve_into", None),
                                   quick=self._quick)
        # handle -> (is a regular file, its descriptor): a handle number is never reused (see _quick)
        self._regular: dict[int, tuple[bool, int]] = {}

    def start(self) -> None:
        self._thread.start()
        if self.ring is not None:
            self.ring.start()

    # -- serving -------------------------------------------------------------------------------------------
    def _quick(self, frame: bytes) -> bool:
        """For the ring: True when a `blocking` call cannot wait on the outside world this time, so that it is
        served inline instead of on the pool (a hand-off there costs a thread wake-up in each direction).

        Only regular files (not on a pseudo file system: _PSEUDO_DEVICES) and descriptors that are O_NONBLOCK
        never wait: a read or write of a regular file, and a read, write, send or receive on a non-blocking
        descriptor (a socket with a timeout, asyncio's).  (A hard-mounted network file system can still make a
        regular file wait; then that enclave's ring calls wait behind it.)
        Whether a handle is a regular file is cached (the host's table never reuses a handle number, and a
        file never changes type); O_NONBLOCK is read each time (setfl changes it).  A handle the table does not
        know is not quick: the pool serves its EBADF.  The enclave process shares each descriptor's open file
        (SCM_RIGHTS) and could clear O_NONBLOCK behind the host's back: then its own later ring calls wait
        behind the blocked one, which harms only that enclave.
        """
        call = frame[6] | frame[7] << 8
        if call not in _NONBLOCK_QUICK or len(frame) < HEADER_SIZE + 8:
            return False
        (handle,) = _I64.unpack_from(frame, HEADER_SIZE)
        known = self._regular.get(handle)
        if known is None:
            try:
                fd = self.host.handles.get(handle).fd
                st = _fstat(fd)
                known = (_S_ISREG(st.st_mode) and st.st_dev not in _PSEUDO_DEVICES, fd)
            except (OSError, AttributeError):
                return False
            if len(self._regular) >= 4096:
                self._regular.clear()
            self._regular[handle] = known
        if known[0]:
            return call in _REGULAR_QUICK
        try:
            return bool(_getfl(known[1], _F_GETFL) & _O_NONBLOCK)
        except OSError:
            return False

    def _issued(self, handle: int) -> None:
        pending = getattr(self._serving, "handles", None)
        if pending is not None:
            pending.append(handle)

    def _serve_passing(self, frame: bytes | memoryview) -> bytes | memoryview | None:
        """serve(), then send the descriptors of any handles the answer issued just ahead of it."""
        pending: list[int] = []
        self._serving.handles = pending
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

    def _send(self, data: bytes | memoryview) -> None:
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


__all__ = ["HostChannel"]
