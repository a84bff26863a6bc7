"""The native-call supervisor, end to end: a real child under a real seccomp filter, a real Host and policy.

Each test spawns a Python child that installs a small filter of its own (arch check, USER_NOTIF for the
forwarded syscalls, allow the rest - the process backend's real filter is stricter, but what is forwarded is
the same), sends its listener to the test over a socketpair and then runs a snippet that makes the syscalls
natively through the `posix` module.  The test serves them with `Supervisor` over a `Host` with a built policy;
the snippet's results (values or errnos) come back on the child's stdout as JSON.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import program

from ocall_bridge import native as N
from ocall_bridge.access import ALLOW_ALL, Access
from ocall_bridge.host import supervisor as S
from ocall_bridge.host.runtime import Host
from ocall_bridge.host.supervisor import Supervisor
from posix_shim import policy

pytestmark = pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64",
                                reason="seccomp user notification, x86_64 syscall numbers")

# The child: a filter, the listener to the parent, then the snippet (argv[2]) with helpers `res` and `err`.
CHILD = program("supervisor_child.py")


def build(flags: list[str], cwd: Path) -> policy.Policy:
    parser = argparse.ArgumentParser()
    policy.add_arguments(parser)
    return policy.build(parser.parse_args(flags), "code", None, cwd=str(cwd))


REPO = Path(__file__).resolve().parent.parent
ALL = ",".join(str(n.nr) for n in N.NATIVE)


class Run:
    def __init__(self, result: dict[str, Any], host: Host, sup: Supervisor, proc: subprocess.CompletedProcess):
        self.result, self.host, self.sup, self.proc = result, host, sup, proc


def run(body: str, access: Access, cwd: bytes = b"/", *, forward: str = ALL, host: Host | None = None,
        timeout: float = 30, confine: bool = False,
        started: Callable[[socket.socket, Supervisor], None] | None = None) -> Run:
    a, b = socket.socketpair()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, *([] if confine else ["-S"]), "-c", CHILD, str(b.fileno()), body, forward,
                             *(["confine"] if confine else [])],
                            pass_fds=[b.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    b.close()
    sup = None
    try:
        a.settimeout(timeout)
        _, fds, _, _ = socket.recv_fds(a, 16, 1)
        if len(fds) != 1:
            proc.kill()
            raise AssertionError(f"the child did not send its listener: {proc.communicate()[1].decode()}")
        host = host or Host(access)
        sup = Supervisor(host, fds[0], proc.pid, lambda: cwd)
        if started is not None:
            started(a, sup)
        sup.start()
        out, errs = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if sup is not None:
            sup.close()
        a.close()
    assert proc.returncode == 0, errs.decode()
    return Run(json.loads(out), host, sup, subprocess.CompletedProcess(proc.args, proc.returncode, out, errs))


@pytest.fixture
def grant(tmp_path: Path) -> Iterator[tuple[Path, Path, policy.Policy]]:
    """A granted folder and a denied one beside it, with the policy that grants only the first."""
    granted, denied = tmp_path / "granted", tmp_path / "denied"
    granted.mkdir()
    denied.mkdir()
    (denied / "secret").write_bytes(b"top secret")
    # The default policy grants the current directory: it is the granted folder here.
    yield granted, denied, build([f"--allow-read={granted}", f"--allow-write={granted}"], granted)


@pytest.fixture
def host_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    h = Keep(logging.WARNING)
    logger = logging.getLogger("posix_shim.host")
    # Programs run earlier in this process (sim, in-process tools) may have changed logging's global state:
    # logging.config's disable_existing_loggers, logging.disable(), a level on the logger.  Undo it for this test.
    saved = (logger.disabled, logger.level, logging.root.manager.disable)
    logger.disabled = False
    logger.setLevel(logging.WARNING)
    logging.disable(logging.NOTSET)
    logger.addHandler(h)
    yield records
    logger.removeHandler(h)
    logger.disabled, _, disabled_level = saved
    logger.setLevel(saved[1])
    logging.disable(disabled_level)


# ------------------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------------------


def test_native_file_calls_inside_the_grant_are_served(grant: tuple) -> None:
    granted, _, access = grant
    body = f"""
g = {str(granted)!r}
fd = os.open(g + "/new", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
res["fd"] = fd
res["cloexec"] = not os.get_inheritable(fd)
res["written"] = os.write(fd, b"written natively")
os.close(fd)
st = os.stat(g + "/new")
res["size"], res["mode"] = st.st_size, st.st_mode & 0o777
res["lstat_size"] = os.lstat(g + "/new").st_size
os.mkdir(g + "/sub", 0o755)
os.rename(g + "/new", g + "/sub/moved")
os.symlink("moved", g + "/sub/link")
res["readlink"] = os.readlink(g + "/sub/link")
res["access"] = os.access(g + "/sub/moved", os.R_OK)
os.chmod(g + "/sub/moved", 0o600)
os.truncate(g + "/sub/moved", 7)
os.utime(g + "/sub/moved", ns=(1_000_000_000, 2_000_000_000))
st = os.stat(g + "/sub/moved")
res["times"] = [st.st_atime_ns, st.st_mtime_ns]
os.link(g + "/sub/moved", g + "/hard")
fd = os.open(g + "/hard", os.O_RDONLY)
res["read"] = os.read(fd, 100).decode()
res["fstat_size"] = os.fstat(fd).st_size
os.close(fd)
os.unlink(g + "/hard")
os.unlink(g + "/sub/link")
fd = ctypes.CDLL(None).open((g + "/sub/moved").encode(), os.O_RDONLY)  # os.open always adds O_CLOEXEC
res["no_cloexec"] = fcntl.fcntl(fd, fcntl.F_GETFD) == 0
"""
    r = run(body, access)
    res = r.result
    assert res["fd"] >= 3 and res["cloexec"] is True and res["no_cloexec"] is True
    assert res["written"] == 16 and res["size"] == 16 and res["lstat_size"] == 16 and res["mode"] == 0o640 & ~0o022
    assert res["readlink"] == "moved" and res["access"] is True
    assert res["read"] == "written" and res["fstat_size"] == 7
    moved = granted / "sub" / "moved"
    assert moved.read_bytes() == b"written"  # bytes on disk, written by the child into the installed fd
    assert oct(moved.stat().st_mode & 0o777) == oct(0o600)
    assert res["times"] == [1_000_000_000, 2_000_000_000] and moved.stat().st_mtime_ns == 2_000_000_000
    assert not (granted / "new").exists() and not (granted / "hard").exists()
    assert not (granted / "sub" / "link").is_symlink()
    assert len(r.host.handles) == 0  # every handle went to the child or was given back
    assert r.sup.sync_wakeup  # 6.6+: this machine has it


def test_native_calls_outside_the_grant_are_refused_and_logged(grant: tuple, host_log: list) -> None:
    granted, denied, access = grant
    body = f"""
d = {str(denied)!r}
res["open"] = err(os.open, d + "/secret", os.O_RDONLY)
res["create"] = err(os.open, d + "/new", os.O_WRONLY | os.O_CREAT, 0o600)
res["stat"] = err(os.stat, d + "/secret")
res["unlink"] = err(os.unlink, d + "/secret")
res["rename_out"] = err(os.rename, {str(granted)!r} + "/x", d + "/x")
res["mkdir"] = err(os.mkdir, d + "/dir")
"""
    res = run(body, access).result
    # The metadata of a path outside every grant is absent (ENOENT, access.Absent) for C code as for Python code.
    assert res == {"open": -errno.EACCES, "create": -errno.EACCES, "stat": -errno.ENOENT,
                   "unlink": -errno.EACCES, "rename_out": -errno.EACCES, "mkdir": -errno.EACCES}
    assert (denied / "secret").read_bytes() == b"top secret" and not (denied / "new").exists()
    messages = [r.getMessage() for r in host_log]
    # The same logger and text as a Python-level denial (Host._check_resource), with the flag that allows it.
    assert f"host refused open: no read access to {denied}/secret (allow with --allow-read={denied}/secret)" \
        in messages


def test_negative_control_allow_all_supervisor_lets_the_same_open_through(grant: tuple) -> None:
    """The refusal above is the supervisor's policy re-check: with an allow-all Access it succeeds."""
    _, denied, _ = grant
    body = f"""
fd = os.open({str(denied)!r} + "/secret", os.O_RDONLY)
res["read"] = os.read(fd, 100).decode()
"""
    assert run(body, ALLOW_ALL).result == {"read": "top secret"}


def test_relative_and_dirfd_relative_paths(grant: tuple, tmp_path: Path) -> None:
    granted, denied, access = grant
    (granted / "here").write_bytes(b"relative")
    (granted / "sub").mkdir()
    (granted / "sub" / "inner").write_bytes(b"by dirfd")
    body = f"""
fd = os.open("here", os.O_RDONLY)
res["relative"] = os.read(fd, 100).decode()
d = os.open({str(granted)!r} + "/sub", os.O_RDONLY | os.O_DIRECTORY)
fd = os.open("inner", os.O_RDONLY, dir_fd=d)
res["dirfd"] = os.read(fd, 100).decode()
res["dirfd_stat"] = os.stat("inner", dir_fd=d).st_size
res["escape"] = err(os.open, "../../denied/secret", os.O_RDONLY, dir_fd=d)
res["not_dir"] = err(os.open, "x", os.O_RDONLY, dir_fd=fd)
res["bad_fd"] = err(os.stat, "x", dir_fd=999)
res["empty"] = err(os.stat, "")
res["too_long"] = err(os.stat, "a" * 5000)
os.mkdir("made")
"""
    res = run(body, access, cwd=os.fsencode(granted)).result
    assert res["relative"] == "relative" and res["dirfd"] == "by dirfd" and res["dirfd_stat"] == 8
    assert res["escape"] == -errno.EACCES and res["not_dir"] == -errno.ENOTDIR and res["bad_fd"] == -errno.EBADF
    assert res["empty"] == -errno.ENOENT and res["too_long"] == -errno.ENAMETOOLONG
    assert (granted / "made").is_dir()


SWAP = """
buf = ctypes.create_string_buffer(512)
buf.value = {granted!r}
chan.send(struct.pack("<Q", ctypes.addressof(buf)))
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.open(buf, os.O_RDONLY)
res["read"] = os.read(fd, 100).decode() if fd >= 0 else -ctypes.get_errno()
"""


def _swap_after_check(host: Host, denied: bytes) -> Callable[[socket.socket, Supervisor], None]:
    """After the host checked the granted path, the child's memory is made to name the denied file: what a
    second thread of the child would do, made deterministic by doing it from the host at the worst moment."""
    state: dict[str, Any] = {}

    def started(chan: socket.socket, sup: Supervisor) -> None:
        state["chan"], state["sup"] = chan, sup

    def swap(entry: Any, args: tuple) -> None:
        if entry.name == "open" and "done" not in state:
            state["done"] = True
            (addr,) = struct.unpack("<Q", state["chan"].recv(8))
            sup = state["sup"]
            sup.memory.write(sup.pid, addr, denied + b"\0")
        return None

    host.before.append(swap)
    return started


def test_the_path_is_read_once_a_change_after_the_check_has_no_effect(grant: tuple) -> None:
    granted, denied, access = grant
    (granted / "f").write_bytes(b"granted")
    host = Host(access)
    started = _swap_after_check(host, os.fsencode(denied / "secret"))
    res = run(SWAP.format(granted=os.fsencode(granted / "f")), access, host=host, started=started).result
    assert res == {"read": "granted"}  # the host opened what it checked, whatever the memory says now


def test_negative_control_continue_after_the_check_lets_the_swap_through(grant: tuple,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The classic bug the supervisor avoids: check, then let the child's own syscall run (FLAG_CONTINUE); the
    kernel reads the path again, after the swap, and opens the denied file."""
    granted, denied, access = grant
    (granted / "f").write_bytes(b"granted")

    def continue_instead(self: Supervisor, call: Any, answer: Any, handle: int) -> None:
        os.close(self.host.handles.pop(handle).fd)
        S.fcntl.ioctl(self.listener, S.IOCTL_SEND, bytearray(S._RESP.pack(call.id, 0, 0, 1)))  # FLAG_CONTINUE

    monkeypatch.setitem(S._ANSWERS, N.NewFd, continue_instead)
    host = Host(access)
    started = _swap_after_check(host, os.fsencode(denied / "secret"))
    res = run(SWAP.format(granted=os.fsencode(granted / "f")), access, host=host, started=started).result
    assert res == {"read": "top secret"}


def test_o_path_open_is_served_as_a_read_only_open(grant: tuple) -> None:
    granted, _, access = grant
    (granted / "f").write_bytes(b"x")
    body = f"""
fd = os.open({str(granted)!r}, os.O_PATH | os.O_DIRECTORY)
res["flags"] = fcntl.fcntl(fd, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_PATH)
res["size"] = os.stat("f", dir_fd=fd).st_size
"""
    res = run(body, access).result
    assert res == {"flags": os.O_RDONLY, "size": 1}


def test_fstat_of_a_child_descriptor_and_statx(grant: tuple) -> None:
    granted, _, access = grant
    (granted / "f").write_bytes(b"12345")
    body = f"""
r, w = os.pipe()
res["pipe_is_fifo"] = stat.S_ISFIFO(os.fstat(r).st_mode)
# statx(dirfd, path, flags, mask, buf) through ctypes: CPython itself does not call it.
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(256)
rc = libc.syscall(332, -100, {str(granted / "f").encode()!r}, 0, 0x7ff, buf)
res["statx"] = [rc, struct.unpack_from("<I", buf, 0)[0], struct.unpack_from("<Q", buf, 40)[0]]
"""
    res = run(body, access).result
    assert res["pipe_is_fifo"] is True
    assert res["statx"] == [0, 0x7FF, 5]


def test_at_variants_omit_times_and_unix_sockets(grant: tuple) -> None:
    granted, denied, access = grant
    (granted / "t").write_bytes(b"t")
    os.utime(granted / "t", ns=(5_000_000_000, 6_000_000_000))
    body = f"""
g = {str(granted)!r}
d = os.open(g, os.O_RDONLY | os.O_DIRECTORY)
os.mkdir("sub", dir_fd=d)
fd = os.open("sub/f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=d)
os.close(fd)
os.rename("sub/f", "sub/g", src_dir_fd=d, dst_dir_fd=d)
os.symlink("g", "sub/l", dir_fd=d)
res["readlinkat"] = os.readlink("sub/l", dir_fd=d)
res["lstat_is_link"] = stat.S_ISLNK(os.stat("sub/l", dir_fd=d, follow_symlinks=False).st_mode)
os.unlink("sub/l", dir_fd=d)
os.unlink("sub/g", dir_fd=d)
os.rmdir("sub", dir_fd=d)                      # unlinkat(AT_REMOVEDIR)
res["gone"] = err(os.stat, g + "/sub")
# utimensat with UTIME_OMIT for atime: the host keeps it, as the kernel would.
libc = ctypes.CDLL(None, use_errno=True)
times = struct.pack("<qqqq", 0, (1 << 30) - 2, 9, 0)
res["omit"] = libc.utimensat(-100, (g + "/t").encode(), times, 0)
st = os.stat(g + "/t")
res["times"] = [st.st_atime_ns, st.st_mtime_ns]
u = socket.socket(socket.AF_UNIX)
res["bind_in"] = err(u.bind, g + "/sock")
v = socket.socket(socket.AF_UNIX)
res["bind_out"] = err(v.bind, {str(denied)!r} + "/sock")
w = socket.socket(socket.AF_UNIX)
res["connect_unix"] = err(w.connect, g + "/sock")
rc = libc.connect(w.fileno(), b"\\x02\\x00", 1)
res["bad_len"] = -ctypes.get_errno() if rc < 0 else rc
"""
    res = run(body, access).result
    assert res["readlinkat"] == "g" and res["lstat_is_link"] is True and res["gone"] == -errno.ENOENT
    assert res["omit"] == 0 and res["times"] == [5_000_000_000, 9_000_000_000]
    assert res["bind_in"] is None and res["bind_out"] == -errno.EACCES
    assert res["connect_unix"] == -errno.ECONNREFUSED  # the socket exists but nobody listens
    assert res["bad_len"] == -errno.EINVAL
    assert (granted / "sock").is_socket() and not (denied / "sock").exists()


# ------------------------------------------------------------------------------------------------------------
# Sockets
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    yield s
    s.close()


CONNECT = """
s = socket.socket()
res["connect"] = err(s.connect, ("127.0.0.1", {port}))
if res["connect"] is None:
    s.sendall(b"native hello")
s.close()
"""


def test_connect_is_refused_without_a_net_grant(listener: socket.socket, tmp_path: Path, host_log: list) -> None:
    port = listener.getsockname()[1]
    res = run(CONNECT.format(port=port), build([], tmp_path)).result
    assert res["connect"] == -errno.EACCES
    assert any(f"no permission to connect to 127.0.0.1:{port} (allow with --allow-net=127.0.0.1:{port}"
               in r.getMessage() for r in host_log)


def test_connect_works_with_a_net_grant(listener: socket.socket, tmp_path: Path) -> None:
    port = listener.getsockname()[1]
    got: list[bytes] = []

    def accept() -> None:
        conn, _ = listener.accept()
        got.append(conn.recv(100))
        conn.close()

    t = threading.Thread(target=accept)
    t.start()
    res = run(CONNECT.format(port=port), build([f"--allow-net=127.0.0.1:{port}"], tmp_path)).result
    t.join(10)
    assert res["connect"] is None and got == [b"native hello"]


def test_udp_sendto_with_an_address_is_checked(tmp_path: Path) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(10)
    port = rx.getsockname()[1]
    body = f"""
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
res["sent"] = err(s.sendto, b"datagram", ("127.0.0.1", {port}))
res["sendmsg"] = err(s.sendmsg, [b"via ", b"sendmsg"], [], 0, ("127.0.0.1", {port}))
"""
    try:
        assert run(body, build([], tmp_path)).result == {"sent": -errno.EACCES, "sendmsg": -errno.EACCES}
        res = run(body, build([f"--allow-net=127.0.0.1:{port}"], tmp_path)).result
        assert res == {"sent": 8, "sendmsg": 11}
        assert rx.recv(100) == b"datagram" and rx.recv(100) == b"via sendmsg"
    finally:
        rx.close()


# ------------------------------------------------------------------------------------------------------------
# Robustness
# ------------------------------------------------------------------------------------------------------------


def test_a_bad_pointer_is_efault_and_an_unknown_syscall_enosys(grant: tuple) -> None:
    _, _, access = grant
    body = """
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def raw(*a):
    rc = libc.syscall(*a)
    return -ctypes.get_errno() if rc < 0 else rc
res["null_path"] = raw(257, -100, None, 0, 0)
res["wild_path"] = raw(257, -100, ctypes.c_void_p(0xdead0000), 0, 0)
res["wild_stat_buf"] = raw(4, b"/", ctypes.c_void_p(0xdead0000))
res["getpid"] = raw(39)
"""
    # getpid (39) forwarded by this filter although the supervisor has no row for it: ENOSYS, not a hang.
    res = run(body, access, forward=ALL + ",39").result
    assert res == {"null_path": -errno.EFAULT, "wild_path": -errno.EFAULT, "wild_stat_buf": -errno.EFAULT,
                   "getpid": -errno.ENOSYS}


def test_close_stops_the_thread_promptly_and_a_dead_child_ends_it(grant: tuple) -> None:
    _, _, access = grant
    r = run("pass", access)
    assert not r.sup.alive  # child exited: the loop ended by itself (POLLHUP) or close() stopped it
    # close() while the child is alive and idle:
    a, b = socket.socketpair()
    proc = subprocess.Popen([sys.executable, "-S", "-c", CHILD, str(b.fileno()), "time.sleep(30)", ALL],
                            pass_fds=[b.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    b.close()
    try:
        _, fds, _, _ = socket.recv_fds(a, 16, 1)
        sup = Supervisor(Host(access), fds[0], proc.pid, lambda: b"/")
        sup.start()
        t0 = time.monotonic()
        sup.close()
        assert time.monotonic() - t0 < 2 and not sup.alive
    finally:
        proc.kill()
        proc.wait()
        a.close()


def test_the_child_killed_while_its_call_waits_does_not_break_the_supervisor(grant: tuple) -> None:
    """A notification whose thread died before the answer (ENOENT from SEND/ADDFD) is skipped quietly."""
    granted, _, access = grant
    (granted / "f").write_bytes(b"x")
    host = Host(access)
    gate = threading.Event()
    entered = threading.Event()

    def stall(entry: Any, args: tuple) -> None:
        if entry.name == "open":
            entered.set()
            gate.wait(10)
        return None

    host.before.append(stall)
    a, b = socket.socketpair()
    body = f"os.open({str(granted / 'f')!r}, os.O_RDONLY)"
    proc = subprocess.Popen([sys.executable, "-S", "-c", CHILD, str(b.fileno()), body, ALL],
                            pass_fds=[b.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    b.close()
    try:
        _, fds, _, _ = socket.recv_fds(a, 16, 1)
        sup = Supervisor(host, fds[0], proc.pid, lambda: b"/")
        sup.start()
        assert entered.wait(10)
        proc.kill()
        proc.wait()
        gate.set()
        deadline = time.monotonic() + 5
        while sup.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not sup.alive and len(host.handles) == 0
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        a.close()


# ------------------------------------------------------------------------------------------------------------
# Cost (reported, not a timed assertion beyond a generous sanity bound: the machine is shared)
# ------------------------------------------------------------------------------------------------------------

ROUND_TRIP = """
p = {path!r}
def median(fn, n=400):
    out = []
    for _ in range(n):
        t = time.perf_counter_ns(); fn(); out.append(time.perf_counter_ns() - t)
    return statistics.median(out) / 1000
res["open_close_us"] = median(lambda: os.close(os.open(p, os.O_RDONLY)))
res["stat_us"] = median(lambda: os.stat(p))
"""


def test_round_trip_of_a_forwarded_call(grant: tuple, capsys: pytest.CaptureFixture[str]) -> None:
    granted, _, access = grant
    f = granted / "f"
    f.write_bytes(b"x")
    forwarded = run(ROUND_TRIP.format(path=str(f)), access).result
    native = run(ROUND_TRIP.format(path=str(f)), access, forward="39").result  # nothing of interest forwarded
    with capsys.disabled():
        print(f"\nforwarded open+close {forwarded['open_close_us']:.1f} us, stat {forwarded['stat_us']:.1f} us; "
              f"native {native['open_close_us']:.1f} / {native['stat_us']:.1f} us")
    assert forwarded["stat_us"] < 2000  # sanity only; the budget is reported by benchmarks


# ------------------------------------------------------------------------------------------------------------
# End to end under the process backend's real confinement (posix_shim.confine)
# ------------------------------------------------------------------------------------------------------------

try:
    from posix_shim import confine
except ImportError:  # pragma: no cover - a build without the confinement package
    confine = None


def _needs_confine() -> None:
    if confine is None:
        pytest.skip("posix_shim.confine is not in this build")
    if confine.probe():
        pytest.skip(f"kernel lacks: {confine.probe()}")


def test_under_the_real_filter_native_calls_are_forwarded_and_checked(grant: tuple, listener: socket.socket,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _needs_confine()
    granted, denied, access = grant
    port = listener.getsockname()[1]
    body = f"""
g = {str(granted)!r}
fd = os.open(g + "/data", os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"under the real filter")
os.close(fd)
res["size"] = os.stat(g + "/data").st_size
res["denied"] = err(os.open, {str(denied)!r} + "/secret", os.O_RDONLY)
s = socket.socket()
res["connect"] = err(s.connect, ("127.0.0.1", {port}))
s.close()
""" + ROUND_TRIP.format(path=str(granted / "data"))
    res = run(body, access, confine=True).result
    assert (granted / "data").read_bytes() == b"under the real filter"
    assert res["size"] == 21 and res["denied"] == -errno.EACCES and res["connect"] == -errno.EACCES
    with capsys.disabled():
        print(f"\nunder posix_shim.confine: forwarded open+close {res['open_close_us']:.1f} us, "
              f"stat {res['stat_us']:.1f} us")


def test_forwarded_calls_show_in_the_trace_marked_native(grant: tuple) -> None:
    from posix_shim import wiring

    granted, denied, access = grant
    (granted / "f").write_bytes(b"x")
    events: list = []
    host = wiring.make_host(access, {"trace": events.append})
    body = f"""
os.close(os.open({str(granted / "f")!r}, os.O_RDONLY))
res["denied"] = err(os.stat, {str(denied / "secret")!r})
res["pid"] = os.getpid()
"""
    r = run(body, access, host=host)
    opened = [e for e in events if e.call == "open"]
    stat = [e for e in events if e.call == "stat"]
    assert len(opened) == 1 and opened[0].marks == ("native openat",) and opened[0].thread == r.result["pid"]
    assert opened[0].args == (os.fsencode(granted / "f"), os.O_RDONLY | os.O_CLOEXEC, 0)
    line = opened[0].line()
    assert f'open("{granted}/f", O_RDONLY|O_CLOEXEC, 0) = ' in line and "(native openat)" in line
    assert stat[0].errno == errno.ENOENT and stat[0].marks[0] == "native newfstatat"  # absent: outside every grant
    assert f"denied by host: no read access to {denied}/secret (allow with --allow-read=" in stat[0].marks[1]


@pytest.mark.parametrize("off_thread", [True, False], ids=["served-off-thread", "negative-control-inline"])
def test_a_blocked_connect_does_not_stall_other_native_calls(grant: tuple, listener: socket.socket,
                                                             monkeypatch: pytest.MonkeyPatch, off_thread: bool) -> None:
    granted, _, _ = grant
    if not off_thread:  # the defence switched off: connect served on the supervisor's own thread
        monkeypatch.setattr(S, "_OFF_THREAD", frozenset())
    port = listener.getsockname()[1]
    access = build([f"--allow-net=127.0.0.1:{port}", f"--allow-read={granted}"], granted)
    host = Host(access)
    release, waiting = threading.Event(), threading.Event()
    seen: list[str] = []

    def hook(entry: Any, args: tuple) -> None:
        if entry.name == "connect":
            seen.append("connect waits")
            waiting.set()
            release.wait(3)  # a connect to a silent peer, as far as the supervisor can tell
            waiting.clear()
        elif entry.name == "stat" and args[0] == os.fsencode(granted):
            seen.append("stat served" + (" while connect waits" if waiting.is_set() else ""))
            release.set()
        return None

    host.before.append(hook)
    body = f"""
s = socket.socket()
t = threading.Thread(target=lambda: res.__setitem__("connect", err(s.connect, ("127.0.0.1", {port}))))
t.start()
time.sleep(0.3)
res["stat"] = os.stat({str(granted)!r}).st_mode != 0
t.join()
"""
    res = run(body, access, host=host).result
    assert res == {"connect": None, "stat": True}
    if off_thread:
        assert seen == ["connect waits", "stat served while connect waits"]
    else:  # the stat waited for the connect to give up
        assert seen == ["connect waits", "stat served"]


def test_the_forwarded_call_benchmark_runs() -> None:
    _needs_confine()
    from benchmarks import forwarded

    r = forwarded.measure(50)
    assert set(r) == {"native", "forwarded"} and all(v > 0 for f in r.values() for v in f.values())


def test_child_memory_prebuilt_ffi_matches_the_cdef(tmp_path: Path) -> None:
    """child_memory.py carries cffi's pre-parsed form of its cdef (the host no longer imports cffi and pycparser at
    start); it must be exactly what cffi makes of _CDEF, and bind the same two functions."""
    cffi = pytest.importorskip("cffi")
    from ocall_bridge.host import child_memory, preparsed_ffi

    generated = preparsed_ffi.regenerate("_posix_shim_child_memory", child_memory._CDEF, tmp_path)
    assert generated == child_memory._PREPARSED
    ffi = cffi.FFI()
    ffi.cdef(child_memory._CDEF)
    prebuilt, lib = child_memory._bind()
    assert prebuilt.typeof(lib.process_vm_writev) == ffi.typeof("ssize_t(*)(int, uint64_t *, unsigned long, "
                                                                 "uint64_t *, unsigned long, unsigned long)")
