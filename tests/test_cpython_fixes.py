"""Behaviours CPython's own regression tests rely on, each fixed for issue 18 and pinned here on both backends:
what a program sees is what it sees natively."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from conftest import run_shim

UMASK_PROGRAM = """
import os, stat
os.umask(0o002)
os.mkdir("d", 0o777)
os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o666))
os.close(os.open("x", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
os.mkfifo("p", 0o666)
with open("f", "w") as f:  # an existing file: opened as is, its mode untouched
    f.write("again")
os.umask(0o077)
os.mkdir("private", 0o777)
"""


def test_only_the_enclave_umask_applies_to_what_it_creates(tmp_path: Path, backend: str) -> None:
    """The host's umask (022 here) no longer takes bits away on top of the enclave's (002)."""
    previous = os.umask(0o022)
    try:
        r = run_shim(["-c", UMASK_PROGRAM], backend=backend, cwd=tmp_path)
    finally:
        os.umask(previous)
    assert r.returncode == 0, r.stderr
    modes = {name: stat.S_IMODE(os.lstat(tmp_path / name).st_mode) for name in ("d", "f", "x", "p", "private")}
    assert modes == {"d": 0o775, "f": 0o664, "x": 0o664, "p": 0o664, "private": 0o700}
    assert (tmp_path / "f").read_text() == "again"


SIGNAL_PROGRAM = """
import os, signal
def handler(signum, frame):
    1 / 0
signal.signal(signal.SIGALRM, handler)
r, w = os.pipe()
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    while True:
        os.write(w, b"x" * 65536)  # the pipe fills, the write blocks, the alarm's handler raises
except ZeroDivisionError as exc:
    print("handler's exception:", type(exc).__name__)
"""


def test_a_signal_handlers_exception_during_a_blocked_call_is_raised_as_natively(tmp_path: Path,
                                                                                  backend: str) -> None:
    r = run_shim(["-c", SIGNAL_PROGRAM], backend=backend, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"handler's exception: ZeroDivisionError\n"
    assert b"Input/output error" not in r.stderr


ARGUMENTS_PROGRAM = """
import io, os
def show(f, *a):
    try:
        f(*a)
        print("ok")
    except Exception as e:
        print(type(e).__name__, getattr(e, "errno", None), e)
bad = 1000
show(os.fpathconf, bad, "PC_NAME_MAX")
show(os.tcgetpgrp, bad)
show(os.tcsetpgrp, bad, 0)
r, w = os.pipe()
show(os.tcgetpgrp, r)
show(io.FileIO, 2**31)
show(open, "missing", "r", -1, None, None, None, True, lambda path, flags: -1)
open("f", "w").close()
show(os.chown, "f", -1.0, -1)
show(os.chown, "f", -2, -1)
show(os.chown, "f", -1, -1)
class Blocked(io.FileIO):
    def __setattr__(self, name, value):
        if name == "name":
            raise KeyError("blocked")
        super().__setattr__(name, value)
fd = os.open("f", os.O_RDONLY)
show(Blocked, fd)
show(os.close, fd)  # still the caller's: the failed constructor did not close it
"""


def test_argument_errors_are_the_native_ones(tmp_path: Path, backend: str) -> None:
    native = subprocess.run([sys.executable, "-c", ARGUMENTS_PROGRAM], cwd=tmp_path, capture_output=True)
    assert native.returncode == 0, native.stderr
    for name in os.listdir(tmp_path):
        os.unlink(tmp_path / name)
    r = run_shim(["-c", ARGUMENTS_PROGRAM], backend=backend, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == native.stdout.decode().splitlines()
    assert r.stdout.decode().splitlines()[:3] == ["OSError 9 [Errno 9] Bad file descriptor"] * 3


ASYNCIO_SIGNAL_PROGRAM = """
import asyncio, os, signal
async def main():
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, "SIGUSR1")
    loop.call_later(0.2, os.kill, os.getpid(), signal.SIGUSR1)
    print("handled", await asyncio.wait_for(got, 30))
    loop.remove_signal_handler(signal.SIGUSR1)
asyncio.run(main())
try:
    signal.set_wakeup_fd(1000)
except OSError as e:
    print("bad fd:", e.errno)
"""


def test_asyncio_add_signal_handler_wakes_the_loop(tmp_path: Path, backend: str) -> None:
    """signal.set_wakeup_fd takes an enclave socket (a real descriptor of the enclave's process)."""
    r = run_shim(["-c", ASYNCIO_SIGNAL_PROGRAM], backend=backend, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"handled SIGUSR1\nbad fd: 9\n"


def test_a_lingering_close_blocks_only_its_own_thread(tmp_path: Path, backend: str) -> None:
    """close() of a socket with SO_LINGER waits for its unsent data (here up to 2 s, the peer never reads).  The
    close row is blocking, so on the process backend it runs on its own host thread: the program's other thread
    keeps making calls meanwhile (before, the host's reader thread served it inline and everything stopped)."""
    r = run_shim(["-c", LINGER_PROGRAM], backend=backend, cwd=tmp_path, options=["-A"], timeout=60)
    assert r.returncode == 0, r.stderr
    closed, ran = r.stdout.decode().split()
    assert float(closed) >= 1.0  # it did linger
    assert int(ran) > 0


LINGER_PROGRAM = """
import socket, struct, threading, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
c = socket.create_connection(srv.getsockname())
conn, _ = srv.accept()
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 2))
c.setblocking(False)
try:
    while True:
        c.send(b"x" * 65536)
except BlockingIOError:
    pass
c.setblocking(True)
ticks = []
started = threading.Event()
def tick():
    started.set()
    end = time.monotonic() + 4
    while time.monotonic() < end:
        time.sleep(0.05)
        ticks.append(time.monotonic())
t = threading.Thread(target=tick)
t.start()
started.wait()
t0 = time.monotonic()
c.close()
closed = time.monotonic() - t0
t.join()
print("%.1f" % closed, len([x for x in ticks if t0 < x < t0 + closed]))
"""


PATHS_PROGRAM = """
import gc, os, pickle, warnings
class FakePath:
    def __init__(self, p): self.p = p
    def __fspath__(self): return self.p
def show(f, *a):
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            r = f(*a)
        print("ok", [str(x.message) for x in w], type(r).__name__)
    except Exception as e:
        print(type(e).__name__, e)
os.mkdir("dd")
os.mkdir("dd/x")
show(os.stat, bytearray(b"dd"))
show(os.listdir, memoryview(b"dd"))
show(lambda p: [e.name for e in os.scandir(p)], bytearray(b"dd"))
show(os.stat, FakePath(1))
show(os.stat, 1.5)
show(os.chdir, bytearray(b"dd"))
os.mkdir("y")
it = os.scandir(".")
show(pickle.dumps, next(it))
show(pickle.dumps, it)
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    del it
    gc.collect()
print([x.category.__name__ for x in w])
"""


def test_path_arguments_and_scandir_behave_as_natively(tmp_path: Path, backend: str) -> None:
    """Bytes-like paths work with CPython's DeprecationWarning, a bad __fspath__ is os.fspath's TypeError, scandir
    objects refuse pickling and an abandoned iterator warns (ResourceWarning)."""
    (tmp_path / "native").mkdir()
    (tmp_path / "inside").mkdir()
    native = subprocess.run([sys.executable, "-c", PATHS_PROGRAM], cwd=tmp_path / "native", capture_output=True)
    assert native.returncode == 0, native.stderr
    r = run_shim(["-c", PATHS_PROGRAM], backend=backend, cwd=tmp_path / "inside")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == native.stdout.decode().splitlines()


def test_select_walks_a_list_as_natively(tmp_path: Path, backend: str) -> None:
    """A fileno() that shrinks the list being selected ends the walk early, as CPython's seq2set does."""
    program = ("import select, sys\na = []\nclass F:\n    def fileno(self):\n        del a[-1]\n"
               "        return sys.__stdout__.fileno()\na[:] = [F()] * 10\n"
               "print(select.select([], a, []) == ([], a[:5], []), len(a))\n")
    r = run_shim(["-c", program], backend=backend, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"True 5\n"
