"""Framing of the process transport: frames on a stream, descriptors passed with them, ecall fragments.

Shared by both ends of the socketpair (`enclave_channel.py`: the enclave's end, `host_channel.py`: the host's end);
see process.py for the protocol.  Like them, it keeps the references captured at import.
"""

from __future__ import annotations

import _socket
import fcntl as _fcntl
import posix
import struct
from collections.abc import Callable
from typing import Any

from .types import MAX_FRAME
from .wire import HEADER, HEADER_SIZE, WIRE_VERSION

# A transport-level frame kind, host -> enclave only: "the descriptors attached to this frame (SCM_RIGHTS) are
# those of these handles", sent just before the answer that issues the handles.  Body: u32 count, then count
# i64 handle numbers.  It gives the enclave process a real descriptor for every enclave fd (one fd space).
FDS = 5
MAX_PASSED = 16  # descriptors one answer may carry (attach: 3, pipe/socketpair: 2, everything else: 1)
_I64 = struct.Struct("<q")
_ANCILLARY = _socket.CMSG_SPACE(MAX_PASSED * 4)
# Ecall operations, in the `call` field of ECALL frames (host -> enclave).
OP_INIT, OP_RUN, OP_CALL, OP_EXIT = 1, 2, 3, 4
MORE = 1  # flag in the errno field: another fragment of this payload follows
MAX_ECALL = 64 << 20  # default bound on one reassembled ecall payload, either direction
_FRAGMENT = MAX_FRAME - HEADER_SIZE

_U32 = struct.Struct("<I")
_close, _SocketType = posix.close, _socket.socket
_fcntl_call, _F_DUPFD_CLOEXEC = _fcntl.fcntl, _fcntl.F_DUPFD_CLOEXEC
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


def parse_fds_frame(frame: bytes | bytearray | memoryview) -> list[int]:
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
        data = bytearray()
        fds: list[int] = []
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


def frame_kind(frame: bytes | bytearray | memoryview) -> int:
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


__all__ = [
    "FDS", "MAX_PASSED", "MORE", "MAX_ECALL", "HIGH_FD", "move_high", "ProtocolError", "ChannelClosed",
    "FrameReader", "fds_frame", "parse_fds_frame", "send_listener", "receive_listener", "frame_kind",
    "ecall_frames", "EcallAssembler",
]
