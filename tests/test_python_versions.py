"""What differs between the Pythons we support (3.11, 3.12, 3.13): see docs/python-versions.md.

Functions a newer Python adds to `os` must be served or refused inside the enclave, never passed through to the
host's C function (tests/test_compat.py checks the whole support table; this runs the calls for real).
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_native, run_shim

# name -> (Python that added it, the arguments of one call)
NEW_OS_FUNCTIONS = {
    "setns": ((3, 12), "(0, 0)"),
    "unshare": ((3, 12), "(0,)"),  # natively a no-op that succeeds
    "posix_openpt": ((3, 13), "(os.O_RDWR | os.O_NOCTTY,)"),  # natively a new host terminal descriptor
    "grantpt": ((3, 13), "(-1,)"),
    "unlockpt": ((3, 13), "(-1,)"),
    "ptsname": ((3, 13), "(-1,)"),
    "timerfd_create": ((3, 13), "(time.CLOCK_MONOTONIC,)"),  # natively a new host descriptor
    "timerfd_settime": ((3, 13), "(-1, initial=1.0)"),
    "timerfd_settime_ns": ((3, 13), "(-1, initial=1)"),
    "timerfd_gettime": ((3, 13), "(-1,)"),
    "timerfd_gettime_ns": ((3, 13), "(-1,)"),
}

PRESENT = sorted(n for n, (since, _) in NEW_OS_FUNCTIONS.items() if sys.version_info >= since and hasattr(os, n))

PROGRAM = textwrap.dedent("""\
    import errno, os, time
    for name, args in CALLS:
        try:
            result = eval("os." + name + args)
            print(name, "ran")
        except OSError as e:
            print(name, errno.errorcode.get(e.errno), name + "()" in str(e))
        except ValueError:  # natively: a negative descriptor
            print(name, "ValueError")
    """)


def test_every_new_name_is_really_new() -> None:
    """The list is the versions' own: a name there exists exactly from the Python it says (on Linux)."""
    for name, (since, _) in NEW_OS_FUNCTIONS.items():
        if sys.version_info < since:
            assert not hasattr(os, name), name


@pytest.mark.skipif(not PRESENT, reason="this Python has none of the os functions added in 3.12 and 3.13")
def test_os_functions_new_in_312_and_313_are_refused_inside(backend: str, tmp_path: Path) -> None:
    calls = [(n, NEW_OS_FUNCTIONS[n][1]) for n in PRESENT]
    program = f"CALLS = {calls!r}\n" + PROGRAM
    inside = run_shim(["-c", program], backend=backend, cwd=tmp_path)
    assert inside.returncode == 0, inside.stderr.decode()
    assert inside.stdout.decode().splitlines() == [f"{n} ENOSYS True" for n in PRESENT]
    # Negative control: the same calls natively reach the host kernel (a no-op unshare succeeds, a timerfd is
    # made); only the refusal keeps them from the host.
    native = run_native(["-c", program], cwd=tmp_path)
    assert native.returncode == 0, native.stderr.decode()
    answers = dict(line.split(" ", 1) for line in native.stdout.decode().splitlines())
    assert not any(a.startswith("ENOSYS") for a in answers.values()), answers
    assert answers.get("unshare", "ran") == "ran"
    assert answers.get("timerfd_create", "ran") == "ran"
