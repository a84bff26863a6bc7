"""Behaviours CPython's own regression tests rely on, each fixed for issue 18 and pinned here on both backends:
what a program sees is what it sees natively."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from conftest import program, run_shim

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


SIGNAL_PROGRAM = program("cpython_fixes_signal_program.py")


def test_a_signal_handlers_exception_during_a_blocked_call_is_raised_as_natively(tmp_path: Path,
                                                                                  backend: str) -> None:
    r = run_shim(["-c", SIGNAL_PROGRAM], backend=backend, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"handler's exception: ZeroDivisionError\n"
    assert b"Input/output error" not in r.stderr


ARGUMENTS_PROGRAM = program("cpython_fixes_arguments_program.py")


def test_argument_errors_are_the_native_ones(tmp_path: Path, backend: str) -> None:
    native = subprocess.run([sys.executable, "-c", ARGUMENTS_PROGRAM], cwd=tmp_path, capture_output=True)
    assert native.returncode == 0, native.stderr
    for name in os.listdir(tmp_path):
        os.unlink(tmp_path / name)
    r = run_shim(["-c", ARGUMENTS_PROGRAM], backend=backend, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == native.stdout.decode().splitlines()
    assert r.stdout.decode().splitlines()[:3] == ["OSError 9 [Errno 9] Bad file descriptor"] * 3


ASYNCIO_SIGNAL_PROGRAM = program("cpython_fixes_asyncio_signal_program.py")


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


LINGER_PROGRAM = program("cpython_fixes_linger_program.py")


PATHS_PROGRAM = program("cpython_fixes_paths_program.py")


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
