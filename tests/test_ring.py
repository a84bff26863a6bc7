"""The switchless ring of the process backend (ocall_bridge/ring.py): what the socketpair promised still holds."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_shim

from ocall_bridge import ring as R
from ocall_bridge.client import OcallClient
from ocall_bridge.errors import HostGone, HostViolation
from ocall_bridge.wire import codec_for, decode_request, encode_answer, encode_error

PREAD = codec_for("pread")
SLEEP = codec_for("sleep")


def pair(serve: Any, server_class: type[R.RingServer] = R.RingServer, client_class: type[R.RingClient] = R.RingClient,
         submit: Any = None) -> tuple[R.RingServer, R.RingClient]:
    """A host half and an enclave half on one fresh ring, in this process (the client maps its own copy)."""
    fds = R.RingFds.create()
    client_fds = R.RingFds(os.dup(fds.memfd), fds.host_bell, fds.bells)
    server = server_class(fds, serve, submit or (lambda frame, deliver, own=None: deliver((own or serve)(frame))))
    client = client_class(client_fds)
    server.start()
    return server, client


def honest(data: bytes) -> Any:
    def serve(frame: bytes) -> bytes:
        codec, seq, args = decode_request(frame)
        return encode_answer(codec, seq, (data[:args[1]],))
    return serve


class RingOnly:
    """A transport for OcallClient that carries every call through the ring (as the process backend does)."""

    name = "ring"

    def __init__(self, client: R.RingClient, fallback: Any = None) -> None:
        self.client = client
        self.fallback = fallback  # what the socketpair is to the process backend: used when no slot is free
        self.fell_back = 0

    def roundtrip(self, frame: bytes, seq: int) -> Any:
        answer = self.client.roundtrip(frame, frame[6] | frame[7] << 8)
        if answer is None:
            self.fell_back += 1
            return self.fallback(frame)
        return answer

    def close(self) -> None:
        pass


def test_answers_come_back_through_the_slots() -> None:
    server, client = pair(honest(b"0123456789abcdef" * 4))
    try:
        stubs = OcallClient(RingOnly(client)).stubs
        assert stubs.pread(7, 16, 0) == b"0123456789abcdef"
        assert stubs.pread(7, 5, 0) == b"01234"
        buf = bytearray(R.SLOT_SIZE)
        assert stubs.pread.into(buf, 7, 64, 0) == 64
    finally:
        server.stop()


def test_many_threads_get_their_own_answers() -> None:
    def serve(frame: bytes) -> bytes:
        codec, seq, args = decode_request(frame)
        return encode_answer(codec, seq, (args[2].to_bytes(8, "little"),))  # the offset asked, as data

    server, client = pair(serve)
    wrong: list[tuple[int, bytes]] = []
    try:
        transport = RingOnly(client, serve)
        stubs = OcallClient(transport).stubs

        def worker(base: int) -> None:
            for k in range(300):
                off = base * 1000 + k
                got = stubs.pread(3, 8, off)
                if got != off.to_bytes(8, "little"):
                    wrong.append((off, got))

        threads = [threading.Thread(target=worker, args=(b,)) for b in range(2 * R.SLOTS)]  # more than slots
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not wrong
        assert server.served + transport.fell_back == 2 * R.SLOTS * 300
    finally:
        server.stop()


# -- the double-fetch rule ----------------------------------------------------------------------------------


class InPlace(R.RingClient):
    """The negative control: the defence switched off - the answer is handed over as a live view of the slot."""

    def _copy_out(self, i: int, off: int, n: int) -> Any:
        return self._view[off:off + n]


@pytest.mark.parametrize("client_class, host_wins", [(R.RingClient, False), (InPlace, True)])
def test_a_host_rewriting_the_slot_after_the_check_changes_nothing(client_class: type, host_wins: bool) -> None:
    """What the enclave checked is what it uses: the check runs on its private copy.  A host that rewrites the
    slot between the enclave's check and its use wins only when the check ran on the shared memory."""
    server, client = pair(honest(b"A" * 16), client_class=client_class)
    try:
        frame = PREAD.pack_request(9, (3, 16, 0))
        answer = client.roundtrip(frame, PREAD.number)
        (data,) = PREAD.unpack_view(answer, 9)  # the check: a well-formed answer of this call and sequence...
        assert bytes(data) == b"A" * 16  # ...and data the enclave accepts
        # The host rewrites the slot (slot 0: the first free) after the check, before the use.
        size = PREAD.answer.size
        server._view[R.PAGE + size:R.PAGE + size + 16] = b"EVIL" * 4
        used = bytes(data)
        assert (used == b"EVIL" * 4) is host_wins
    finally:
        server.stop()


class LengthLiar(R.RingServer):
    """Answers with a length word beyond the slot (written before the state says ANS, as a real liar would)."""

    def _answer(self, i: int, answer: Any) -> None:
        h = R._SLOT_BASE + i * R._SLOT_WORDS
        self._w[h + 2] = R.SLOT_SIZE + 1
        self._w[h] = R.ANS
        if self._w[h + 1]:
            R._ring_bell(self.fds.bells[i])


def test_lies_through_the_ring_are_refused() -> None:
    server, client = pair(honest(b"x" * 64), server_class=LengthLiar)
    try:
        ocall = OcallClient(RingOnly(client))
        with pytest.raises(HostViolation):
            ocall.stubs.pread(3, 16, 0)
    finally:
        server.stop()

    def too_much(frame: bytes) -> bytes:
        codec, seq, args = decode_request(frame)
        return encode_answer(codec, seq, (b"y" * (args[1] + 16),))

    server, client = pair(too_much)
    try:
        ocall = OcallClient(RingOnly(client))
        with pytest.raises(HostViolation, match="pread"):
            ocall.stubs.pread(3, 16, 0)
        assert len(ocall.violations) == 1
    finally:
        server.stop()


def test_a_legitimate_error_is_an_oserror() -> None:
    def fail(frame: bytes) -> bytes:
        codec, seq, _ = decode_request(frame)
        return encode_error(codec.number, seq, 9)  # EBADF

    server, client = pair(fail)
    try:
        with pytest.raises(OSError) as info:
            OcallClient(RingOnly(client)).stubs.pread(3, 16, 0)
        assert info.value.errno == 9 and not isinstance(info.value, HostViolation)
    finally:
        server.stop()


# -- blocking, death, no leaks ------------------------------------------------------------------------------


def test_a_waiter_is_woken_with_hostgone_when_the_host_goes() -> None:
    never: list[Any] = []
    server, client = pair(lambda frame: None, submit=lambda frame, deliver, own=None: never.append(deliver))
    try:
        errors: list[BaseException] = []

        def wait() -> None:
            try:
                client.roundtrip(SLEEP.pack_request(1, (10**9,)), SLEEP.number)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=wait)
        t.start()
        deadline = time.monotonic() + 30
        while not never and time.monotonic() < deadline:
            time.sleep(0.01)
        assert never, "the host never received the blocking call"
        client.fail("the host process exited")
        t.join(10)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], HostGone)
        with pytest.raises(HostGone):  # and every later call
            client.roundtrip(PREAD.pack_request(2, (3, 16, 0)), PREAD.number)
    finally:
        server.stop()


def test_an_interrupted_wait_never_gives_its_late_answer_to_another_call() -> None:
    late: list[Any] = []
    server, client = pair(honest(b"B" * 16), submit=lambda frame, deliver, own=None: late.append((frame, deliver)))
    try:
        interrupted: list[BaseException] = []

        def on_wait(waiting: bool) -> None:
            if waiting and late:
                raise KeyboardInterrupt  # what a signal handler raises during the wait

        try:
            client.roundtrip(SLEEP.pack_request(1, (10**9,)), SLEEP.number, on_wait)
        except KeyboardInterrupt as exc:
            interrupted.append(exc)
        assert interrupted and client._abandoned == [0]
        # Other calls go on in other slots while slot 0 waits for its answer.
        stubs = OcallClient(RingOnly(client)).stubs
        assert stubs.pread(3, 16, 0) == b"B" * 16
        # The host answers the abandoned call at last: the slot comes back only then.
        frame, deliver = late[0]
        codec, seq, _ = decode_request(frame)
        deliver(encode_answer(codec, seq, (0,)))
        client._reclaim()
        assert client._abandoned == [] and 0 in client._free
    finally:
        server.stop()


def test_the_server_thread_ends_with_the_channel() -> None:
    server, client = pair(honest(b"z" * 16))
    assert OcallClient(RingOnly(client)).stubs.pread(3, 16, 0) == b"z" * 16
    server.stop()
    assert not server._thread.is_alive()
    assert server.fds.all() == [-1] * (2 + R.SLOTS)


BLOCKED = textwrap.dedent("""
    import os, socket, sys, threading, time
    a, b = socket.socketpair()
    got = []
    t = threading.Thread(target=lambda: got.append(b.recv(16)))
    t.start()
    time.sleep(0.2)
    fd = os.open(sys.argv[1], os.O_RDONLY)
    for _ in range(200):          # the main thread goes on while the other one is blocked in recv
        assert os.pread(fd, 5, 0) == b"hello"
    a.sendall(b"wake")
    t.join()
    print(got[0].decode(), flush=True)
""")


@pytest.mark.parametrize("transport", ["ring", "socket"])
def test_a_blocked_call_blocks_only_its_thread(tmp_path: Path, transport: str) -> None:
    (tmp_path / "blocked.py").write_text(BLOCKED)
    (tmp_path / "f.txt").write_bytes(b"hello")
    r = run_shim(["blocked.py", "f.txt"], backend="process", cwd=tmp_path, timeout=120,
                 env={"POSIX_SHIM_TRANSPORT": transport})
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"wake\n"


def test_the_process_backend_serves_through_the_ring_by_default(tmp_path: Path) -> None:
    from ocall_bridge.access import ALLOW_ALL
    from posix_shim import Enclave

    (tmp_path / "ring_helper.py").write_text("import os\ndef stat_many(p, n):\n    return [os.stat(p).st_size"
                                            " for _ in range(n)][-1]\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        with Enclave(ALLOW_ALL, backend="process") as e:
            served = e._backend.channel.ring
            assert served is not None
            before = served.served
            assert e.call("ring_helper:stat_many", str(tmp_path / "ring_helper.py"), 50) > 0
            assert served.served - before >= 50
        with Enclave(ALLOW_ALL, backend="process", transport="socket") as e:
            assert e._backend.channel.ring is None
            assert e.call("ring_helper:stat_many", str(tmp_path / "ring_helper.py"), 5) > 0
    finally:
        sys.path.remove(str(tmp_path))
        os.chdir(cwd)
