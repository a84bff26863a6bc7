"""Sockets, readiness and name resolution inside the enclave (issue 4), on every backend.

The end-to-end tests run real servers and clients through the command line; `SEMANTICS` runs a long list of
calls, bad inputs and modes natively and inside and requires the same output, line for line (exception type,
errno and message included).  The unit tests at the end check both sides of the boundary on their own: the
enclave refuses a host that lies about addresses, the host refuses an enclave that asks for what the subset
leaves out.
"""

from __future__ import annotations

import errno
import hashlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, program, run_native, run_shim

from enclave_libc import runtime
from enclave_libc import sockets as esock
from enclave_libc.errors import HostViolation
from enclave_libc.runtime import EnclaveRuntime
from ocall_bridge.calls import BY_NAME
from ocall_bridge.client import OcallClient
from ocall_bridge.host.runtime import Host
from ocall_bridge.transport import SimTransport

SEMANTICS = program("sockets_semantics.py")

ASYNCIO_50 = program("sockets_asyncio_50.py")

THREADING_TCP_20 = program("sockets_threading_tcp_20.py")

UDP_AND_UNIX = program("sockets_udp_and_unix.py")

THREADS_NOT_BLOCKED = program("sockets_threads_not_blocked.py")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_same_semantics_as_native(backend: str, tmp_path: Path) -> None:
    _write(tmp_path, "semantics.py", SEMANTICS)
    native = run_native(["semantics.py"], cwd=tmp_path, timeout=60)
    assert native.returncode == 0, native.stderr
    inside = run_shim(["semantics.py"], backend=backend, cwd=tmp_path, options=["-A"], timeout=60)
    assert inside.returncode == 0, inside.stderr.decode()
    assert inside.stdout.decode().splitlines() == native.stdout.decode().splitlines()
    assert b"done" in inside.stdout


def test_asyncio_server_with_50_clients(backend: str, tmp_path: Path) -> None:
    _write(tmp_path, "prog.py", ASYNCIO_50)
    result = run_shim(["prog.py"], backend=backend, cwd=tmp_path, options=["--allow-net=127.0.0.1"], timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == ["clients ok: 50 of 50", "executor: 45"]


def test_threading_tcp_server_with_20_client_threads(backend: str, tmp_path: Path) -> None:
    _write(tmp_path, "prog.py", THREADING_TCP_20)
    result = run_shim(["prog.py"], backend=backend, cwd=tmp_path, options=["--allow-net=127.0.0.1"], timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "threads ok: 20 of 20; server stopped: True"


def test_udp_echo_and_unix_stream(backend: str, tmp_path: Path) -> None:
    _write(tmp_path, "prog.py", UDP_AND_UNIX)
    native = run_native(["prog.py"], cwd=tmp_path, timeout=60)
    assert native.returncode == 0, native.stderr
    inside = run_shim(["prog.py"], backend=backend, cwd=tmp_path, options=["-A"], timeout=60)
    assert inside.returncode == 0, inside.stderr.decode()
    assert inside.stdout == native.stdout
    assert b"unix: b'hi there'" in inside.stdout and inside.stdout.count(b"udp echo: True True") == 3
    assert not (tmp_path / "s.sock").exists()


def test_blocked_accept_and_recv_do_not_block_other_threads(backend: str, tmp_path: Path) -> None:
    _write(tmp_path, "prog.py", THREADS_NOT_BLOCKED)
    result = run_shim(["prog.py"], backend=backend, cwd=tmp_path, options=["-A"], timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == ["others ran while blocked: True True True",
                                                   "blocked calls completed: True True"]


def test_http_server_serves_a_native_client_and_stops_on_ctrl_c(backend: str, tmp_path: Path) -> None:
    payload = os.urandom(200 * 1024)
    (tmp_path / "big.bin").write_bytes(payload)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "posix_shim", "--backend", backend, f"--allow-net=127.0.0.1:{port}",
           "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/big.bin", timeout=5) as r:
                    body = r.read()
                    status = r.status
                break
            except (ConnectionRefusedError, urllib.error.URLError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert status == 200
        assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest() and len(body) == len(payload)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"Keyboard interrupt received, exiting." in out
    assert b'"GET /big.bin HTTP/1.1" 200' in err


def test_urllib_inside_fetches_from_a_native_server(backend: str, tmp_path: Path) -> None:
    payload = os.urandom(150 * 1024)
    served = tmp_path / "www"
    served.mkdir()
    (served / "data.bin").write_bytes(payload)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(served), **kwargs)  # type: ignore[misc]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        _write(tmp_path, "fetch.py", f"""
import hashlib, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
with opener.open("http://127.0.0.1:{port}/data.bin", timeout=10) as r:
    body = r.read()
    print(r.status, len(body), hashlib.sha256(body).hexdigest())
""")
        result = run_shim(["fetch.py"], backend=backend, cwd=tmp_path, options=[f"--allow-net=127.0.0.1:{port}"],
                          timeout=60)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["200", str(len(payload)), hashlib.sha256(payload).hexdigest()]


def test_connect_outside_the_policy_is_denied(tmp_path: Path) -> None:
    _write(tmp_path, "prog.py", """
import socket
try:
    socket.create_connection(("127.0.0.1", 9), timeout=2)
except PermissionError as e:
    print("denied", e.errno, "--allow-net" in str(e))
""")
    result = run_shim(["prog.py"], cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == f"denied {errno.EACCES} True"


def test_outside_the_subset_is_enosys_naming_the_call(tmp_path: Path) -> None:
    _write(tmp_path, "prog.py", """
import select, socket
def show(fn):
    try:
        fn()
        print("served")
    except OSError as e:
        print(e.errno, str(e).split("(")[0])
show(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
show(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW))
s = socket.socket()
show(lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo"))
a, b = socket.socketpair()
show(lambda: socket.socketpair(socket.AF_UNIX, socket.SOCK_RAW))
show(lambda: a.sendmsg([b"x"], [(socket.IPPROTO_IP, socket.IP_RETOPTS, b"")]))
show(lambda: socket.if_nameindex())
show(lambda: select.epoll().register(a, select.EPOLLIN | select.EPOLLET))
""")
    result = run_shim(["prog.py"], cwd=tmp_path, options=["-A"], timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines == [f"{errno.ENOSYS} posix_shim: {name}" for name in
                     ("socket", "socket", "setsockopt", "socketpair", "sendmsg", "if_nameindex",
                      "epoll.register")]


# -- the boundary itself, in process -----------------------------------------------------------------------


@pytest.fixture()
def enclave() -> Iterator[tuple[Host, EnclaveRuntime]]:
    host = Host()
    rt = EnclaveRuntime(OcallClient(SimTransport(host)))
    previous = runtime.activate(rt)
    try:
        yield host, rt
    finally:
        runtime.activate(previous)
        host.close()


def _lie(host: Host, call: str, answer: object) -> None:
    host.entries[BY_NAME[call].number].fn = lambda *args: answer


def test_enclave_refuses_a_lying_resolver(enclave: tuple[Host, EnclaveRuntime]) -> None:
    host, rt = enclave
    _lie(host, "getaddrinfo", [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (socket.AF_INET, "10.9.9.9", 80, 0, 0,
                                                                             b""))])
    with pytest.raises(HostViolation, match="numeric host"):
        esock.getaddrinfo("127.0.0.1", 80)
    _lie(host, "getaddrinfo", [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (socket.AF_INET6, "::1", 80, 0, 0,
                                                                              b""))])
    with pytest.raises(HostViolation, match="family"):
        esock.getaddrinfo("localhost", 80, socket.AF_INET)
    _lie(host, "getaddrinfo", [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (socket.AF_INET, "evil.example", 80, 0,
                                                                             0, b""))])
    with pytest.raises(HostViolation, match="not a numeric address"):
        esock.getaddrinfo("localhost", 80)
    assert len(rt.client.violations) == 3


def test_enclave_refuses_lying_addresses_and_poll_answers(enclave: tuple[Host, EnclaveRuntime]) -> None:
    host, rt = enclave
    a, b = esock.socketpair()
    _lie(host, "getpeername", (socket.AF_INET, "127.0.0.1", 80, 0, 0, b""))
    with pytest.raises(HostViolation, match="family"):
        a.getpeername()
    _lie(host, "poll", [(5, 1)])
    a.settimeout(1)
    with pytest.raises(HostViolation, match="index"):
        a.recv(1)
    a.close()
    b.close()


def test_host_refuses_what_the_subset_leaves_out() -> None:
    host = Host()
    stubs = OcallClient(SimTransport(host)).stubs
    try:
        with pytest.raises(OSError) as info:
            stubs.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        assert info.value.errno == errno.EAFNOSUPPORT
        fd = stubs.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        with pytest.raises(OSError) as info:  # a name would be resolved by the host, unchecked by the policy
            stubs.connect(fd, (socket.AF_INET, "localhost", 9, 0, 0, b""))
        assert info.value.errno == errno.EINVAL
        with pytest.raises(OSError) as info:
            stubs.setsockopt(fd, socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 0, b"lo", True)
        assert info.value.errno == errno.ENOPROTOOPT
        with pytest.raises(OSError) as info:  # an AF_INET6 address for an AF_INET socket
            stubs.bind(fd, (socket.AF_INET6, "::1", 0, 0, 0, b""))
        assert info.value.errno == errno.EINVAL
        t0 = time.monotonic()
        ready = stubs.poll([(fd, 4), (999, 1)], 5000)
        assert time.monotonic() - t0 < 2  # an unknown handle is ready at once (POLLNVAL), as poll(2) answers
        assert [i for i, _ in ready] == [0, 1] and ready[1][1] == 32
    finally:
        host.close()



def test_connect_ex_lets_an_oserror_without_errno_propagate(enclave: tuple[Host, EnclaveRuntime],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """connect_ex answers an errno; an OSError that carries none (a signal handler's own exception raised inside
    the connect) is not an outcome to return: it propagates, as CPython's connect_ex lets it.  Before, connect_ex
    returned None."""
    _, rt = enclave

    def interrupted(*args: object) -> None:
        raise OSError("raised by the program's signal handler")

    s = esock.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        monkeypatch.setattr(rt.ocall, "connect", interrupted)
        with pytest.raises(OSError, match="signal handler") as info:
            s.connect_ex(("127.0.0.1", 9))
        assert info.value.errno is None
    finally:
        monkeypatch.undo()
        s.close()
