"""The ring's one-copy bulk route and its waits (ocall_bridge/ring.py): a read's data goes from the slot straight
into the caller's buffer, every byte fetched from shared memory once; the spin budgets are per call; the host
serves a `blocking` call inline only when it cannot wait."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_ring import SLEEP, RingOnly, honest, pair

from enclave_libc.files import fdio
from ocall_bridge import host_channel
from ocall_bridge import ring as R
from ocall_bridge.client import OcallClient
from ocall_bridge.errors import HostViolation
from ocall_bridge.wire import WireError, codec_for, decode_request, encode_answer

PREAD = codec_for("pread")
BIG = 200 << 10  # above the one-copy threshold


class IntoRing(RingOnly):
    """RingOnly with the into route, as the process backend's EnclaveTransport has it."""

    def roundtrip_into(self, frame: bytes, seq: int, buffer: memoryview, size: int) -> Any:
        got = self.client.roundtrip(frame, frame[6] | frame[7] << 8, None, buffer, size)
        return (self.fallback(frame), False) if got is None else got


def test_bulk_data_lands_in_the_callers_buffer_in_one_copy() -> None:
    data = os.urandom(BIG)
    server, client = pair(honest(data))
    try:
        stubs = OcallClient(IntoRing(client)).stubs
        buf = bytearray(BIG)
        assert stubs.pread.into(memoryview(buf), 3, BIG, 0) == BIG
        assert buf == data and client.placed == 1
        small = bytearray(64)  # below the threshold: copied whole, the same result
        assert stubs.pread.into(memoryview(small), 3, 64, 0) == 64
        assert small == data[:64] and client.placed == 1
    finally:
        server.stop()


class TwiceReader(R.RingClient):
    """The negative control: the defence switched off.  The header is checked in shared memory and the data is
    fetched from it a second time, when the client uses it, instead of once into private memory."""

    def _place(self, i: int, off: int, n: int, buffer: memoryview, size: int) -> Any:
        return self._view[off:off + n], False


@pytest.mark.parametrize("client_class, host_wins", [(R.RingClient, False), (TwiceReader, True)])
def test_a_host_rewriting_the_slot_after_the_answer_changes_nothing(client_class: type, host_wins: bool) -> None:
    """The one-copy route: the checked header and the used data are private copies made before any check.  A
    host that rewrites the slot (data and length word) after answering wins only against a double fetch."""
    server, client = pair(honest(b"A" * BIG), client_class=client_class)
    try:
        size = PREAD.answer.size
        buf = memoryview(bytearray(BIG))
        answer, placed = client.roundtrip(PREAD.pack_request(9, (3, BIG, 0)), PREAD.number, None, buf, size)
        (data,) = PREAD.unpack_view(answer, 9)  # the check: a well-formed answer of this call and sequence
        assert len(data) == BIG
        # The host rewrites the slot (slot 0: the first free) after the check, before the use.
        server._view[R.PAGE + size:R.PAGE + size + 4] = b"EVIL"
        server._w[R._SLOT_BASE + 2] = 7
        if not placed:
            buf[:len(data)] = data  # what the client does with an answer that was not placed
        assert (bytes(buf[:4]) == b"EVIL") is host_wins
        assert bytes(answer[:size]) == PREAD.finish_in_place(bytearray(size + BIG), 9, BIG)[:size].tobytes() \
            or host_wins
    finally:
        server.stop()


def test_lies_on_the_one_copy_route_are_refused() -> None:
    def too_much(frame: bytes) -> bytes:
        codec, seq, args = decode_request(frame)
        return encode_answer(codec, seq, (b"y" * (args[1] + 1),))

    def wrong_seq(frame: bytes) -> bytes:
        codec, seq, args = decode_request(frame)
        return encode_answer(codec, seq + 1, (b"y" * args[1],))

    for serve, match in [(too_much, "pread"), (wrong_seq, "pread")]:
        server, client = pair(serve)
        try:
            ocall = OcallClient(IntoRing(client))
            buf = memoryview(bytearray(2 * BIG))
            with pytest.raises(HostViolation, match=match):
                ocall.stubs.pread.into(buf, 3, BIG, 0)  # the buffer has room: the bound is the request's count
            assert len(ocall.violations) == 1
        finally:
            server.stop()


class SlotProbe(R.RingClient):
    """The negative control: one probe kept per slot, as before the fix."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept: dict[int, memoryview] = {}

    def _probe(self, i: int, n: int) -> memoryview:  # type: ignore[override]
        if i not in self._kept:
            self._kept[i] = memoryview(R._mmap.mmap(-1, R.SLOT_SIZE))
        return self._kept[i][:n]


@pytest.mark.parametrize("client_class, kept", [(R.RingClient, True), (SlotProbe, False)])
def test_an_answer_header_survives_the_next_call_on_its_slot(client_class: type, kept: bool) -> None:
    """The slot is free again as soon as the answer is placed; the next call (another thread's) takes it at once.
    The first answer's header, not yet checked, must still be its own."""
    server, client = pair(honest(b"A" * BIG), client_class=client_class)
    try:
        size = PREAD.answer.size
        first, placed = client.roundtrip(PREAD.pack_request(9, (3, BIG, 0)), PREAD.number, None,
                                         memoryview(bytearray(BIG)), size)
        assert placed
        client.roundtrip(PREAD.pack_request(10, (3, BIG, 0)), PREAD.number, None, memoryview(bytearray(BIG)), size)
        results = PREAD.unpack_view(first, 9)  # None: not a data answer of this call and sequence (refused)
        if kept:
            assert results is not None and len(results[0]) == BIG
        else:
            assert results is None  # the second answer's header (seq 10) overwrote the first's
    finally:
        server.stop()


def _too_long(frame: bytes) -> bytes:
    codec, seq, args = decode_request(frame)
    return encode_answer(codec, seq, (b"y" * (args[1] + 4096),))


@pytest.mark.parametrize("lent", ["count", "negative-control-whole-buffer"])
def test_a_too_long_answer_finds_no_room_beyond_the_count(lent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-copy route writes an answer's data before the checks refuse it, so the caller lends exactly the
    count it asked for (files/fdio._into): a lie longer than that is copied whole into private memory and refused,
    and the program's buffer is untouched.  Lending the whole buffer (the negative control) lets the lie's bytes
    into it, although the call is refused all the same."""
    monkeypatch.setattr(fdio, "MAX_DATA", BIG)  # one read's count: a buffer larger than that asks for BIG
    server, client = pair(_too_long)
    try:
        ocall = OcallClient(IntoRing(client))
        buf = bytearray(2 * BIG)
        view = memoryview(buf)
        with pytest.raises(HostViolation, match="pread"):
            if lent == "count":
                fdio._into(ocall.stubs.pread, view, 3, 0)
            else:
                ocall.stubs.pread.into(view, 3, BIG, 0)
        assert (buf.count(0) == len(buf)) is (lent == "count")
    finally:
        server.stop()


class _Handles:
    def __init__(self, fds: dict[int, int]) -> None:
        self.fds = fds

    def get(self, handle: int) -> Any:
        return SimpleNamespace(fd=self.fds[handle])


@pytest.mark.parametrize("pseudo_known", [True, False], ids=["pseudo-fs-to-the-pool", "negative-control-inline"])
def test_a_regular_file_of_a_pseudo_file_system_is_not_served_inline(tmp_path: Path, pseudo_known: bool,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/kmsg and tracefs's trace_pipe are regular files whose read may wait forever: served inline it would
    hold the ring thread (every ring call of the enclave) for as long.  A regular file elsewhere is inline."""
    if not pseudo_known:
        monkeypatch.setattr(host_channel, "_PSEUDO_DEVICES", frozenset())
    (tmp_path / "plain").write_bytes(b"x")
    proc = os.open("/proc/self/status", os.O_RDONLY)
    plain = os.open(tmp_path / "plain", os.O_RDONLY)
    try:
        channel = SimpleNamespace(_regular={}, host=SimpleNamespace(handles=_Handles({1: proc, 2: plain})))
        read = codec_for("read")
        quick = host_channel.HostChannel._quick
        assert quick(channel, read.pack_request(1, (2, 16))) is True
        assert quick(channel, read.pack_request(2, (1, 16))) is (not pseudo_known)
    finally:
        os.close(proc)
        os.close(plain)


# -- waits ---------------------------------------------------------------------------------------------------


def test_spin_budgets_are_per_call() -> None:
    """A call that keeps waiting (a sleep served on the pool) stops spinning; the budget of another call is its
    own.  Nothing here depends on timing but the sleep being longer than one spin."""
    def serve(frame: bytes) -> bytes:
        codec, seq, args = decode_request(frame)
        if codec.number == SLEEP.number:
            time.sleep(0.05)
            return encode_answer(codec, seq, (args[0],))
        return honest(b"q" * 16)(frame)

    server, client = pair(serve)
    try:
        stubs = OcallClient(RingOnly(client)).stubs
        for _ in range(8):
            stubs.sleep(1000)
        assert client._budgets[SLEEP.number] < R.MIN_SPIN
        assert client._budgets[PREAD.number] == client.spin
        assert stubs.pread(3, 16, 0) == b"q" * 16
    finally:
        server.stop()


QUICK = """
import os, socket
def run(path, n):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(n):
        os.write(fd, b"0123456789abcdef")
    os.close(fd)
    return os.path.getsize(path)
def blocking_recv(n):
    a, b = socket.socketpair()
    for _ in range(n):
        a.sendall(b"x")
        assert b.recv(1) == b"x"
    a.close(); b.close()
def nonblocking_recv(n):
    a, b = socket.socketpair()
    a.settimeout(5); b.settimeout(5)
    for _ in range(n):
        a.sendall(b"x")
        assert b.recv(1) == b"x"
    a.close(); b.close()
def read_back(path):
    from enclave_libc import runtime
    ring = runtime.RT.client.transport.ring
    before = ring.placed
    with open(path, "rb") as f:
        data = f.read()
    buf = bytearray(os.path.getsize(path))
    with open(path, "rb", buffering=0) as f:
        got = f.readinto(buf)
    import hashlib
    return hashlib.sha256(data).hexdigest(), hashlib.sha256(buf[:got]).hexdigest(), got, ring.placed - before
"""


@pytest.fixture
def enclave(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from ocall_bridge.access import ALLOW_ALL
    from posix_shim import Enclave

    (tmp_path / "quick_helper.py").write_text(QUICK)
    monkeypatch.chdir(tmp_path)  # the child imports the helper from its working directory
    sys.path.insert(0, str(tmp_path))
    try:
        with Enclave(ALLOW_ALL, backend="process") as e:
            yield e
    finally:
        sys.path.remove(str(tmp_path))


def test_only_calls_that_can_wait_go_to_the_pool(enclave: Any, tmp_path: Path) -> None:
    ring = enclave._backend.channel.ring
    before = ring._submitted
    assert enclave.call("quick_helper:run", str(tmp_path / "w.dat"), 50) == 800  # regular file: inline
    assert (tmp_path / "w.dat").read_bytes() == b"0123456789abcdef" * 50
    assert ring._submitted - before < 10  # closes (a close may linger on a socket), never the 50 writes
    before = ring._submitted
    enclave.call("quick_helper:nonblocking_recv", 20)  # O_NONBLOCK (a timeout): send and recv inline
    nonblocking = ring._submitted - before
    before = ring._submitted
    enclave.call("quick_helper:blocking_recv", 20)  # a blocking socket: every send and recv on the pool
    assert ring._submitted - before >= 40 > nonblocking


def test_bytes_read_through_the_ring_are_the_bytes_on_disk(enclave: Any, tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 12345)  # several full chunks and an odd tail
    (tmp_path / "r.dat").write_bytes(data)
    *digests, got, placed = enclave.call("quick_helper:read_back", str(tmp_path / "r.dat"))
    want = hashlib.sha256(data).hexdigest()
    assert digests == [want, want] and got == len(data)
    assert placed >= 3  # each full 1 MiB chunk of readinto took the one-copy route (read() gets bytes)


def test_a_short_read_request_is_refused_and_the_server_goes_on() -> None:
    """The host looks at a read's count (to lend the slot for a bulk answer) only inside a frame long enough."""
    def serve(frame: bytes) -> bytes | None:
        try:
            return honest(b"s" * 16)(frame)
        except WireError:
            return None  # as Host.serve refuses a malformed frame: no answer the enclave accepts

    class Lending(R.RingServer):  # as HostChannel makes it: with Host.serve_into for bulk reads
        def __init__(self, fds: R.RingFds, serve: Any, submit: Any) -> None:
            super().__init__(fds, serve, submit, serve_into=lambda frame, area: serve(frame))

    server, client = pair(serve, server_class=Lending)
    try:
        frame = PREAD.pack_request(4, (3, 16, 0))

        def short_ones() -> None:
            for cut in (8, 16, 20, 28):
                client.roundtrip(frame[:cut], PREAD.number)  # whatever the host answers, it is still there

        t = threading.Thread(target=short_ones, daemon=True)
        t.start()
        t.join(60)
        assert not t.is_alive(), "the ring server died on a short frame"
        assert OcallClient(RingOnly(client)).stubs.pread(3, 16, 0) == b"s" * 16
        assert server._thread.is_alive()
    finally:
        server.stop()


def test_a_signal_during_the_spin_runs_when_the_wait_begins() -> None:
    """Blocking calls spin first; a handler deferred during that spin (the main thread is mid-call, BUSY) runs as
    soon as the thread goes to sleep on its bell, not when the blocked call ends (which may be never)."""
    import socket

    from ocall_bridge.enclave_channel import BUSY, WAIT, EnclaveTransport

    a, b = socket.socketpair()
    transport = EnclaveTransport(os.dup(a.fileno()))
    try:
        ran: list[int] = []
        transport.main_state = BUSY
        transport.run_handler(lambda signum, frame: ran.append(signum), 2, None)
        assert ran == []  # deferred: mid-frame
        transport._ring_wait(True)
        assert ran == [2] and transport.main_state == WAIT

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        transport.main_state = BUSY
        transport.run_handler(interrupt, 2, None)
        with pytest.raises(KeyboardInterrupt):  # raised into the wait: the ring abandons the slot
            transport._ring_wait(True)
    finally:
        transport.sock.close()
        a.close()
        b.close()
