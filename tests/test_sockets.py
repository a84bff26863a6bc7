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
from conftest import REPO, run_native, run_shim

from enclave_libc import runtime
from enclave_libc import sockets as esock
from enclave_libc.errors import HostViolation
from enclave_libc.runtime import EnclaveRuntime
from ocall_bridge.calls import BY_NAME
from ocall_bridge.client import OcallClient
from ocall_bridge.host.runtime import Host
from ocall_bridge.transport import SimTransport

SEMANTICS = r'''import errno, os, select, socket, threading

def show(label, fn):
    try:
        r = fn()
        print(label, "->", repr(r))
    except Exception as e:
        print(label, "!!", type(e).__name__, getattr(e, "errno", None), str(e))

s = socket.socket()
u = socket.socket(socket.AF_UNIX)
show("inet connect str", lambda: s.connect("x"))
show("inet connect 1-tuple", lambda: s.connect(("a",)))
show("inet port str", lambda: s.connect(("127.0.0.1", "80")))
show("inet host int", lambda: s.connect((1, 2)))
show("inet port range", lambda: s.connect(("127.0.0.1", 70000)))
show("inet6 shape", lambda: socket.socket(socket.AF_INET6).connect(("::1",)))
show("unix tuple", lambda: u.connect(("a", 1)))
show("unix too long", lambda: u.connect("x" * 200))
show("unix missing", lambda: u.connect("no-such.sock"))
show("family bogus", lambda: socket.socket(12345))
show("type bogus", lambda: socket.socket(socket.AF_INET, 999))
show("negative fileno", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, fileno=-5))
show("closed fileno", lambda: socket.socket(fileno=987))
show("recv negative", lambda: s.recv(-1))
show("recv_into bytes", lambda: s.recv_into(b"xx"))
show("recv_into small", lambda: s.recv_into(bytearray(2), 5))
show("send str", lambda: s.send("x"))
show("sendto 1 arg", lambda: s.sendto(b"x"))
show("settimeout neg", lambda: s.settimeout(-1))
show("settimeout str", lambda: s.settimeout("x"))
show("getsockopt buflen", lambda: s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 2000))
show("recv unconnected", lambda: s.recv(1))
show("shutdown bad how", lambda: s.shutdown(5))
show("getpeername unconnected", lambda: s.getpeername())
show("gai host int", lambda: socket.getaddrinfo(1, 2))
show("gai port float", lambda: socket.getaddrinfo("x", 1.5))
show("gai empty", lambda: socket.getaddrinfo("", 80))
show("gai numeric", lambda: socket.getaddrinfo("127.0.0.1", 80, socket.AF_INET, socket.SOCK_STREAM))
show("gai bad numeric", lambda: socket.getaddrinfo("999.1.1.1", 80, flags=socket.AI_NUMERICHOST))
show("gni not tuple", lambda: socket.getnameinfo("x", 0))
show("gni name", lambda: socket.getnameinfo(("localhost", 80), 0))
show("gni numeric", lambda: socket.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV))
show("gethostbyname", lambda: socket.gethostbyname("127.0.0.1"))
show("gethostbyname empty", lambda: socket.gethostbyname(""))
show("select negative", lambda: select.select([-1], [], [], 0))
show("select timeout", lambda: select.select([], [], [], -1))
show("select bad obj", lambda: select.select(["x"], [], [], 0))
_cfd = os.dup(0); os.close(_cfd)
show("select closed", lambda: select.select([_cfd], [], [], 0))
p = select.poll()
show("poll unregister", lambda: p.unregister(5))
show("poll modify", lambda: p.modify(5, 1))
p.register(987, select.POLLIN)
show("poll closed fd", lambda: p.poll(0))
ep = select.epoll()
show("epoll closed fd", lambda: ep.register(987))
f = open(__file__)
show("epoll file", lambda: ep.register(f))
a, b = socket.socketpair()
ep.register(a)
show("epoll twice", lambda: ep.register(a))
show("epoll maxevents", lambda: ep.poll(0, 0))
show("epoll unregister unknown", lambda: ep.unregister(b))
ep.close()
show("epoll closed", lambda: ep.poll(0))
show("select file ready", lambda: select.select([f], [f], [], 0) == ([f], [f], []))
show("poll file ready", lambda: [ev & 5 for _, ev in (lambda q: (q.register(f), q.poll(0))[1])(select.poll())])
f.close()

# modes
a.settimeout(0.05)
show("timeout recv", lambda: a.recv(1))
print("timeout value", a.gettimeout(), a.getblocking())
a.setblocking(False)
show("nonblocking recv", lambda: a.recv(1))
print("nonblocking", a.gettimeout(), a.getblocking())
a.setblocking(True)
print("blocking", a.gettimeout(), a.getblocking())
b.sendall(b"x" * 10)
show("peek", lambda: a.recv(4, socket.MSG_PEEK))
show("recv", lambda: a.recv(100))
big = os.urandom(3 << 20)
got = []
t = threading.Thread(target=lambda: got.append(b"".join(iter(lambda: a.recv(65536), b""))))
t.start()
b.settimeout(5)
b.sendall(big)
b.shutdown(socket.SHUT_WR)
t.join(10)
print("sendall 3 MiB intact:", got and got[0] == big)
show("recv after shutdown", lambda: a.recv(10))
b.close()
show("send after peer close", lambda: [a.send(b"x") for _ in range(3)])

c, d = socket.socketpair()
e = c.dup()
print("dup:", e.fileno() != c.fileno(), e.family == c.family, e.type == c.type)
fd = e.detach()
print("detach:", e.fileno(), fd >= 0)
g = socket.socket(fileno=fd)
print("fromfd:", g.family, g.type, isinstance(g, socket.socket), isinstance(g, socket.SocketType))
g.sendall(b"via fromfd")
print(d.recv(100))
h = socket.fromfd(d.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
c.sendall(b"line1\nline2\n")
c.shutdown(socket.SHUT_WR)
with h.makefile("rb") as rf:
    print("makefile:", rf.readline(), rf.read())
for x in (c, d, g, h):
    x.close()
print("closed repr:", repr(c))

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
print("reuseaddr:", srv.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0)
srv.bind(("127.0.0.1", 0))
port = srv.getsockname()[1]
srv.close()
show("refused", lambda: socket.create_connection(("127.0.0.1", port), timeout=2))
n = socket.socket()
n.setblocking(False)
show("connect_ex refused nonblocking first",
     lambda: n.connect_ex(("127.0.0.1", port)) in (errno.EINPROGRESS, errno.ECONNREFUSED))
n.close()
srv = socket.create_server(("127.0.0.1", 0))
port = srv.getsockname()[1]
n = socket.socket()
n.setblocking(False)
show("nonblocking connect", lambda: n.connect(("127.0.0.1", port)))
select.select([], [n], [], 5)
print("SO_ERROR:", n.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
conn, addr = srv.accept()
print("accepted from loopback:", addr[0], conn.gettimeout())
srv.settimeout(0.05)
show("accept timeout", lambda: srv.accept())
for x in (n, conn, srv, s, u):
    x.close()
dg1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dg1.bind(("127.0.0.1", 0))
dg2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dg2.sendto(b"0123456789", dg1.getsockname())
data, anc, flags, addr = dg1.recvmsg(4)
print("recvmsg truncated:", data, anc, bool(flags & socket.MSG_TRUNC), addr[0])
dg2.sendmsg([b"ab", b"cd"], [], 0, dg1.getsockname())
buf = bytearray(10)
print("recvfrom_into:", dg1.recvfrom_into(buf)[0], bytes(buf[:4]))
dg1.close(); dg2.close()
sa, sb = socket.socketpair()
with open("payload.bin", "wb") as pf:
    pf.write(bytes(range(256)) * 1000)
chunks = []
st = threading.Thread(target=lambda: chunks.append(b"".join(iter(lambda: sb.recv(65536), b""))))
st.start()
with open("payload.bin", "rb") as pf:
    print("sendfile:", sa.sendfile(pf))
sa.close(); st.join(5); sb.close(); os.unlink("payload.bin")
print("sendfile intact:", chunks == [bytes(range(256)) * 1000])
import selectors, socketserver
print("selectors use the interposed calls:", socketserver._ServerSelector._selector_cls is select.poll,
      selectors.DefaultSelector._selector_cls is select.epoll,
      selectors.SelectSelector._select is getattr(select.select, "__func__", select.select))
print("done")
'''

ASYNCIO_50 = r'''import asyncio

async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(b"echo " + line)
        await writer.drain()
    writer.close()
    await writer.wait_closed()

async def client(port, i):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    for j in range(3):
        writer.write(f"{i}-{j}\n".encode())
        await writer.drain()
        replies.append((await reader.readline()).decode().strip())
    writer.close()
    await writer.wait_closed()
    return replies == [f"echo {i}-{j}" for j in range(3)]

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        results = await asyncio.wait_for(asyncio.gather(*(client(port, i) for i in range(50))), 20)
    print("clients ok:", sum(results), "of", len(results))
    loop = asyncio.get_running_loop()
    print("executor:", await asyncio.wait_for(loop.run_in_executor(None, sum, range(10)), 5))

asyncio.run(main())
'''

THREADING_TCP_20 = r'''import socket, socketserver, threading

class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line.upper())

socketserver.ThreadingTCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo) as server:
    port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    results = {}
    def client(i):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            f = c.makefile("rwb")
            ok = True
            for j in range(5):
                f.write(f"client {i} line {j}\n".encode()); f.flush()
                ok &= f.readline() == f"CLIENT {i} LINE {j}\n".encode()
            results[i] = ok
    clients = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for c in clients: c.start()
    for c in clients: c.join(20)
    server.shutdown()
    t.join(10)
print("threads ok:", sum(results.values()), "of 20; server stopped:", not t.is_alive())
'''

UDP_AND_UNIX = r'''import os, socket, threading
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind(("127.0.0.1", 0))
srv.settimeout(5)
def echo():
    for _ in range(3):
        data, addr = srv.recvfrom(2048)
        srv.sendto(data[::-1], addr)
t = threading.Thread(target=echo); t.start()
cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
cli.settimeout(5)
for msg in (b"abc", b"x" * 1500, b""):
    cli.sendto(msg, srv.getsockname())
    data, addr = cli.recvfrom(2048)
    print("udp echo:", data == msg[::-1], addr == srv.getsockname())
t.join(5)
a, b = socket.socketpair()
a.settimeout(5); b.settimeout(5)
a.sendall(b"ping"); print("pair:", b.recv(10))
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
u.bind("s.sock"); u.listen(); u.settimeout(5)
print("unix name:", u.getsockname(), sorted(os.listdir(".")))
def serve():
    c, _ = u.accept()
    with c: c.sendall(b"hi " + c.recv(100))
t = threading.Thread(target=serve); t.start()
with socket.socket(socket.AF_UNIX) as c:
    c.settimeout(5); c.connect("s.sock"); c.sendall(b"there"); print("unix:", c.recv(100))
t.join(5); u.close(); os.unlink("s.sock")
'''

THREADS_NOT_BLOCKED = r'''
import os, socket, threading, time
srv = socket.create_server(("127.0.0.1", 0))
port = srv.getsockname()[1]
a, b = socket.socketpair()
accepted, received = [], []
t1 = threading.Thread(target=lambda: accepted.append(srv.accept()))       # blocks: no timeout
t2 = threading.Thread(target=lambda: received.append(a.recv(10)))         # blocks: no timeout
t1.start(); t2.start()
time.sleep(0.2)
t0 = time.monotonic()
for i in range(100):                  # other threads' ocalls go on meanwhile
    with open(f"f{i}.txt", "w") as f:
        f.write("x")
    os.stat(f"f{i}.txt")
    os.unlink(f"f{i}.txt")
c, d = socket.socketpair()
c.sendall(b"ok"); d.recv(2)
print("others ran while blocked:", time.monotonic() - t0 < 5, t1.is_alive(), t2.is_alive())
socket.create_connection(("127.0.0.1", port), timeout=5).close()
b.sendall(b"wake")
t1.join(5); t2.join(5)
print("blocked calls completed:", len(accepted) == 1, received == [b"wake"])
'''


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
