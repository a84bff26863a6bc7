"""Extended attributes inside the enclave behave as natively, obey the policy, and a lying host is refused.

The xattr family was added as the proof of issue 19: table rows, one host function and one enclave function each.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, run_shim
from test_files import _both, _same


@pytest.fixture(autouse=True)
def _xattrs_supported(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            pytest.skip(f"the file system of {tmp_path} keeps no user.* extended attributes ({exc.strerror})")
        raise
    finally:
        probe.unlink()


PROGRAM = r'''
import errno, os, shutil

def show(*a):
    print(*a, flush=True)

def attempt(label, call):
    try:
        show(label, call())
    except OSError as e:
        show(label, errno.errorcode[e.errno], e.filename)
    except ValueError as e:
        show(label, "ValueError", e)

with open("f", "wb") as f:
    f.write(b"data")
os.symlink("f", "link")
show("empty", os.listxattr("f"))
os.setxattr("f", "user.colour", b"blue")
os.setxattr("f", b"user.size", b"x" * 2000)
show("get", os.getxattr("f", "user.colour"), len(os.getxattr("f", b"user.size")))
show("list", sorted(os.listxattr("f")), sorted(os.listxattr("link")))
attempt("missing", lambda: os.getxattr("f", "user.none"))
attempt("create", lambda: os.setxattr("f", "user.colour", b"red", os.XATTR_CREATE))
attempt("replace", lambda: os.setxattr("f", "user.new", b"v", os.XATTR_REPLACE))
attempt("no file", lambda: os.getxattr("nope", "user.colour"))
attempt("namespace", lambda: os.setxattr("f", "bogus.name", b"v"))
attempt("on the link", lambda: os.setxattr("link", "user.l", b"v", follow_symlinks=False))
show("through the link", os.getxattr("link", "user.colour"))
attempt("link itself", lambda: os.listxattr("link", follow_symlinks=False))
fd = os.open("f", os.O_RDWR)
show("fd get", os.getxattr(fd, "user.colour"))
os.setxattr(fd, "user.byfd", b"1")
os.removexattr(fd, "user.byfd")
show("fd list", sorted(os.listxattr(fd)))
attempt("fd nofollow", lambda: os.getxattr(fd, "user.colour", follow_symlinks=False))
os.close(fd)
try:
    os.getxattr(fd, "user.colour")
except OSError as e:
    show("bad fd", errno.errorcode[e.errno], e.filename == fd)  # the number itself differs on sim
os.removexattr("f", "user.size")
attempt("removed", lambda: os.removexattr("f", "user.size"))
shutil.copy2("f", "g")  # copystat copies the extended attributes too
show("copied", os.getxattr("g", "user.colour"), sorted(os.listxattr("g")))
'''


def test_extended_attributes_behave_as_natively(backend: str, tmp_path: Path) -> None:
    inside, native = _both(tmp_path, backend, PROGRAM)
    _same(inside, native, backend)
    # Bytes on disk: the attribute the enclave set is the host file's, readable natively.
    assert os.getxattr(tmp_path / "inside" / "f", "user.colour") == b"blue"
    assert b"missing ENODATA f" in inside.stdout and b"create EEXIST f" in inside.stdout


def test_setting_needs_a_write_grant_and_getting_a_read_grant(backend: str, tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "f").write_bytes(b"")
    os.setxattr(tmp_path / "ro" / "f", "user.k", b"v")
    code = textwrap.dedent("""
        import os
        print(os.getxattr("ro/f", "user.k"), os.listxattr("ro/f"), flush=True)
        os.setxattr("ro/f", "user.k", b"changed")
    """)
    r = run_shim(["-c", code], backend=backend, cwd=tmp_path, options=[f"--deny-write={tmp_path / 'ro'}"])
    assert r.stdout == b"b'v' ['user.k']\n"
    assert r.returncode == 1
    assert f"--deny-write={tmp_path / 'ro'}".encode() in r.stderr and b"setxattr" in r.stderr, r.stderr
    assert os.getxattr(tmp_path / "ro" / "f", "user.k") == b"v"  # unchanged on disk
    # No grant at all: the denial says which flag would allow it.
    r = run_shim(["-c", "import os; os.getxattr('/etc/hostname', 'user.k')"], backend=backend, cwd=tmp_path)
    assert r.returncode == 1 and b"--allow-read=/etc/hostname" in r.stderr, r.stderr


LIAR = """
from posix_shim import Enclave
from ocall_bridge.access import ALLOW_ALL
from ocall_bridge.host import files
from ocall_bridge.originals import os as real_os
if {lie}:
    # A lying host: a value longer than the size the enclave asked for.
    files.getxattr = lambda host, t, name, size, follow: b"v" * (size + 1)
with Enclave(ALLOW_ALL, backend={backend!r}) as enclave:
    print("status", enclave.run_code({program!r}))
"""

PROBE = """
import os
os.setxattr("f", "user.k", b"v")
try:
    print("value", os.getxattr("f", "user.k"))
except OSError as exc:
    print("refused", exc.errno)
"""


@pytest.mark.parametrize("lie", [True, False], ids=["lying-host", "control"])
def test_a_value_longer_than_asked_is_refused(backend: str, tmp_path: Path, lie: bool) -> None:
    (tmp_path / "f").write_bytes(b"")
    script = LIAR.format(lie=lie, backend=backend, program=PROBE)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    if lie:
        assert f"refused {errno.EIO}" in proc.stdout
        assert "host violation in getxattr: value is 129, more than size=128" in proc.stderr
    else:  # the same program against an honest host: the value, and no violation
        assert "value b'v'" in proc.stdout and "host violation" not in proc.stderr
