"""The process backend: the transport's framing and multiplexing, and the child process as a user sees it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, run_native, run_shim

from ocall_bridge.access import ALLOW_ALL
from ocall_bridge.enclave_channel import EnclaveTransport
from ocall_bridge.errors import HostGone
from ocall_bridge.framing import OP_CALL, ChannelClosed, EcallAssembler, FrameReader, ProtocolError, ecall_frames
from ocall_bridge.types import MAX_FRAME
from ocall_bridge.wire import ANSWER, ECALL, ECALL_RETURN, HEADER, HEADER_SIZE, REQUEST, WIRE_VERSION
from posix_shim import Enclave, EnclaveCallError, EnclaveStateError
from posix_shim.process_backend import decode_plain, encode_plain


def frame(kind: int, seq: int, body: bytes = b"", call: int = 4) -> bytes:
    return HEADER.pack(HEADER_SIZE + len(body), WIRE_VERSION, kind, call, seq, 0) + body


# -- plain data ----------------------------------------------------------------------------------------------


def test_plain_data_keeps_every_type() -> None:
    value = {"a": [1, 2.5, None, True, "x\ud800", b"\x00\xff"], "t": (1, (b"", ())), "d": {"k": {}}, "n": -(2**80)}
    assert decode_plain(encode_plain(value)) == value
    assert type(decode_plain(encode_plain((1, 2)))) is tuple
    assert type(decode_plain(encode_plain([1, 2]))) is list


@pytest.mark.parametrize("raw", [b"{", b'{"x": 1}', b'{"b": "!!"}', b'{"b": 1, "t": []}', b"[" * 100000])
def test_plain_data_refuses_malformed(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_plain(raw)


def test_plain_data_refuses_objects() -> None:
    with pytest.raises(TypeError):
        encode_plain({"f": object()})


# -- framing -------------------------------------------------------------------------------------------------


def reader_over(data: bytes, size: int = 64) -> FrameReader:
    chunks = [data[i:i + 7] for i in range(0, len(data), 7)]  # dribbled in small pieces

    def recv_into(view: memoryview) -> int:
        if not chunks:
            return 0
        piece = chunks.pop(0)
        n = min(len(piece), len(view))
        view[:n] = piece[:n]
        if n < len(piece):
            chunks.insert(0, piece[n:])
        return n

    return FrameReader(recv_into, size=size)


def test_reader_splits_a_stream_into_frames_small_and_large() -> None:
    frames = [frame(ANSWER, 1, b"a" * 3), frame(ANSWER, 2, b"b" * 500), frame(ANSWER, 3)]
    r = reader_over(b"".join(frames))
    assert [bytes(r.read()) for _ in frames] == frames
    with pytest.raises(ChannelClosed):
        r.read()


def test_reader_checks_the_length_before_reading_a_body() -> None:
    allocated = []
    head = HEADER.pack(MAX_FRAME + 1, WIRE_VERSION, ANSWER, 4, 1, 0)

    def recv_into(view: memoryview) -> int:
        allocated.append(len(view))
        view[:HEADER_SIZE] = head
        return HEADER_SIZE

    r = FrameReader(recv_into, size=64)
    with pytest.raises(ProtocolError, match="claims"):
        r.read()
    assert allocated == [64]  # one read of the header, no buffer grown for the claimed body
    with pytest.raises(ProtocolError):
        reader_over(HEADER.pack(3, WIRE_VERSION, ANSWER, 4, 1, 0)).read()


def test_reader_reports_a_truncated_frame() -> None:
    with pytest.raises(ChannelClosed, match="inside a frame"):
        reader_over(frame(ANSWER, 1, b"xyz")[:-1]).read()


def test_ecall_payloads_are_fragmented_and_bounded() -> None:
    payload = os.urandom(2 * MAX_FRAME + 5)
    frames = ecall_frames(ECALL, OP_CALL, 9, payload)
    assert len(frames) == 3 and all(len(f) <= MAX_FRAME for f in frames)
    asm = EcallAssembler(ECALL)
    assert [asm.add(f) for f in frames] == [None, None, (OP_CALL, 9, payload)]
    small = EcallAssembler(ECALL, limit=MAX_FRAME)
    with pytest.raises(ProtocolError, match="exceeds"):
        for f in frames:
            small.add(f)
    with pytest.raises(ProtocolError):
        EcallAssembler(ECALL).add(ecall_frames(ECALL_RETURN, OP_CALL, 1, b"x")[0])


# -- the enclave side of the transport ------------------------------------------------------------------------


def test_answers_reach_their_own_threads_in_any_order() -> None:
    enclave_end, host_end = socket.socketpair()
    transport = EnclaveTransport(enclave_end.detach())
    results: dict[int, bytes] = {}

    def fake_host() -> None:
        # Collect 8 requests, then answer them in reverse order, so almost every answer is read by a thread
        # other than the one waiting for it.
        got = []
        r = FrameReader(host_end.recv_into)
        while len(got) < 8:
            got.append(r.read())
        for req in reversed(got):
            seq = HEADER.unpack_from(req, 0)[4]
            host_end.sendall(frame(ANSWER, seq, req[HEADER_SIZE:]))

    def caller(seq: int) -> None:
        results[seq] = bytes(transport.roundtrip(frame(REQUEST, seq, str(seq).encode()), seq))

    host = threading.Thread(target=fake_host)
    host.start()
    threads = [threading.Thread(target=caller, args=(seq,)) for seq in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    host.join(10)
    assert {seq: bytes(a[HEADER_SIZE:]) for seq, a in results.items()} == {s: str(s).encode() for s in range(1, 9)}
    transport.close()
    host_end.close()


def test_pending_and_later_ocalls_fail_with_eio_when_the_host_goes() -> None:
    enclave_end, host_end = socket.socketpair()
    transport = EnclaveTransport(enclave_end.detach())
    announced = []
    transport._announce = announced.append
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            transport.roundtrip(frame(REQUEST, 1), 1)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=caller)
    t.start()
    time.sleep(0.2)
    host_end.close()  # the host dies with an ocall in flight
    t.join(5)
    assert len(errors) == 1 and isinstance(errors[0], HostGone) and errors[0].errno == errno.EIO
    with pytest.raises(OSError) as later:
        transport.roundtrip(frame(REQUEST, 2), 2)
    assert later.value.errno == errno.EIO
    assert len(announced) == 1  # said once, whoever noticed first
    transport.close()


# -- the backend end to end ------------------------------------------------------------------------------------

MIXED = textwrap.dedent("""
    import os, threading
    data = bytes(range(256)) * 64
    wrong = []
    def worker(i):
        path = f"mixed_{i}.bin"
        with open(path, "wb") as f:
            f.write(data)
        fd = os.open(path, os.O_RDWR)
        try:
            for j in range(1000):
                k = (i + j) % 4
                off = (i * 131 + j * 17) % 16000
                if k == 0:
                    ok = os.pread(fd, 16, off) == data[off:off + 16]
                elif k == 1:
                    ok = os.stat(path).st_size == len(data)
                elif k == 2:
                    ok = os.lseek(fd, off, 0) == off and os.read(fd, 8) == data[off:off + 8]
                else:
                    ok = os.pwrite(fd, data[off:off + 4], off) == 4 and os.fstat(fd).st_size == len(data)
                if not ok:
                    wrong.append((i, j, k))
        finally:
            os.close(fd)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads: t.start()
    for t in threads: t.join()
    print("wrong", len(wrong), wrong[:5])
""")


def test_sixteen_threads_get_their_own_answers(tmp_path: Path) -> None:
    (tmp_path / "mixed.py").write_text(MIXED)
    r = run_shim(["mixed.py"], backend="process", cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"wrong 0 []\n"


PROGRAM = textwrap.dedent("""
    import sys
    line = sys.stdin.readline()
    print("read", line.strip(), sys.argv[1:])
    print("to stderr", file=sys.stderr)
    if line.startswith("boom"):
        raise ValueError("bad input: " + line.strip())
    sys.exit(int(line))
""")


@pytest.mark.parametrize("given", [b"7\n", b"boom\n"])
def test_stdio_argv_status_and_traceback_as_native(backend: str, tmp_path: Path, given: bytes) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    native = run_native(["prog.py", "a b", "c"], cwd=tmp_path, input=given)
    shim = run_shim(["prog.py", "a b", "c"], backend=backend, cwd=tmp_path, input=given)
    assert (shim.returncode, shim.stdout, shim.stderr) == (native.returncode, native.stdout, native.stderr)


def test_os_exit_status_is_the_runners(tmp_path: Path) -> None:
    r = run_shim(["-c", "import os; print('x', flush=True); os._exit(7)"], backend="process", cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (7, b"x\n", b"")


_spawned: list[subprocess.Popen] = []


def spawn(args: list[str], cwd: Path, backend: str = "process") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-m", "posix_shim", "--backend", backend, *args], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _spawned.append(p)
    return p


@pytest.fixture(autouse=True)
def _no_leftovers() -> object:
    """A failed test must not leave a runner or its enclave behind."""
    yield
    while _spawned:
        p = _spawned.pop()
        if p.poll() is None:
            for kid in children_of(p.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGKILL)
            p.kill()
        p.communicate(timeout=10)


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


WAITER = "import time\nprint('ready', flush=True)\nwhile True:\n    time.sleep(0.05)\n"


def test_ctrl_c_reaches_the_program_as_keyboard_interrupt(backend: str, tmp_path: Path) -> None:
    p = spawn(["-c", WAITER], tmp_path, backend)
    assert p.stdout.readline() == b"ready\n"
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 130
    assert err.startswith(b"Traceback (most recent call last):\n") and err.endswith(b"KeyboardInterrupt\n")
    assert b"ocall_bridge/enclave_channel.py" not in err and b"posix_shim/child.py" not in err


def test_sigterm_ends_the_program_as_natively(backend: str, tmp_path: Path) -> None:
    p = spawn(["-c", WAITER], tmp_path, backend)
    assert p.stdout.readline() == b"ready\n"
    kids = children_of(p.pid)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=20)
    assert p.returncode == -signal.SIGTERM
    time.sleep(0.1)
    assert all(not Path(f"/proc/{k}").exists() or "State:\tZ" in Path(f"/proc/{k}/status").read_text()
               for k in kids)


def test_a_killed_enclave_gives_128_plus_n_and_says_so(tmp_path: Path) -> None:
    p = spawn(["-c", WAITER], tmp_path)
    assert p.stdout.readline() == b"ready\n"
    (child,) = children_of(p.pid)
    os.kill(child, signal.SIGKILL)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 137
    assert b"was killed by SIGKILL" in err
    assert not Path(f"/proc/{child}").exists()  # reaped: no zombie


def test_a_killed_host_leaves_nothing_behind(tmp_path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the orphaned enclave becomes ours to reap and time
    try:
        p = spawn(["-c", "import os\nprint('ready', flush=True)\nwhile True:\n    os.stat('.')\n"], tmp_path)
        assert p.stdout.readline() == b"ready\n"
        (child,) = children_of(p.pid)
        time.sleep(0.2)
        p.kill()
        p.wait(10)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2:
            pid, _ = os.waitpid(child, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
        else:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            pytest.fail("the enclave outlived its host by more than 2 seconds")
        err = p.stderr.read()  # the orphan wrote its last words to the stderr it inherited
        assert b"posix_shim: the host of this enclave is gone" in err
    finally:
        libc.prctl(36, 0, 0, 0, 0)


# -- the library API -------------------------------------------------------------------------------------------


def test_two_enclaves_at_once_each_with_its_own_child_and_handles(tmp_path: Path) -> None:
    (tmp_path / "helper_mod.py").write_text(textwrap.dedent("""
        import os
        def pid_and_fd(path):
            fd = os.open(path, os.O_RDONLY)
            return os.getpid(), fd, os.read(fd, 5)
        def echo(*args):
            return args
        def fail():
            raise KeyError("nope")
    """))
    (tmp_path / "f.txt").write_bytes(b"hello world")
    fds_before = sorted(os.listdir("/proc/self/fd"))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        with Enclave(ALLOW_ALL, backend="process") as a, Enclave(ALLOW_ALL, backend="process") as b:
            pa = a._backend.pid
            pb = b._backend.pid
            assert pa != pb and os.getpid() not in (pa, pb)
            ra = a.call("helper_mod:pid_and_fd", str(tmp_path / "f.txt"))
            rb = b.call("helper_mod:pid_and_fd", str(tmp_path / "f.txt"))
            assert ra[1] == rb[1] == 3 and ra[2] == rb[2] == b"hello"
            assert len(a._backend.host.handles) != 0 and a._backend.host is not b._backend.host
            value = (1, [b"\x00", {"k": (None, 2.5)}], "s")
            assert a.call("helper_mod:echo", *value) == value
            with pytest.raises(EnclaveCallError) as info:
                b.call("helper_mod:fail")
            assert info.value.type_name == "KeyError" and "nope" in info.value.message
            assert "raise KeyError" in info.value.traceback_text
        with pytest.raises(EnclaveStateError):
            a.call("helper_mod:echo")
    finally:
        os.chdir(cwd)
        sys.path.remove(str(tmp_path))
    for pid in (pa, pb):
        assert not Path(f"/proc/{pid}").exists()  # reaped
    assert sorted(os.listdir("/proc/self/fd")) == fds_before  # the socketpair ends and host handles are gone


HANDLER = textwrap.dedent("""
    import os, signal, sys
    def on_int(signum, frame):
        sys.exit(3)
    signal.signal(signal.SIGINT, on_int)
    assert signal.getsignal(signal.SIGINT) is on_int
    print("ready", flush=True)
    while True:  # the main thread is inside ocalls nearly all the time: the handler must not cut a frame
        os.stat(".")
""")


def test_a_program_handler_that_raises_mid_ocall_exits_cleanly(backend: str, tmp_path: Path) -> None:
    for _ in range(3):
        p = spawn(["-c", HANDLER], tmp_path, backend)
        assert p.stdout.readline() == b"ready\n"
        time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=20)
        assert (p.returncode, err) == (3, b"")
