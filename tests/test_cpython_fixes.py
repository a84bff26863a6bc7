"""Behaviours CPython's own regression tests rely on, each fixed for issue 18 and pinned here on both backends:
what a program sees is what it sees natively."""

from __future__ import annotations

import os
import stat
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
