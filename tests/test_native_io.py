"""One fd space: C extensions that do their own I/O on an enclave file write the same bytes as natively.

Before, `fileno()` named the enclave's bookkeeping number, and C code wrote to whatever real descriptor had
it: numpy.save put the array on the host's stdout, a Pillow JPEG went to the terminal or over an open sqlite
database.  Now an enclave fd is a real descriptor of the same open file (enclave_libc/fdtable.py), or
`fileno()` refuses.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from conftest import REPO, run_native, run_shim

PROGRAM = REPO / "tests" / "programs" / "native_io.py"
pytest.importorskip("numpy")
pytest.importorskip("PIL")

OUTPUTS = ("a.npy", "b.npy", "c.bin", "d.bin", "p.png", "p.jpg", "q.png")


def _tree(d: Path) -> dict[str, str]:
    return {name: hashlib.sha256((d / name).read_bytes()).hexdigest() for name in OUTPUTS}


def test_c_extension_files_are_byte_identical_to_native(backend: str, tmp_path: Path) -> None:
    inside_dir, native_dir = tmp_path / "inside", tmp_path / "native"
    for d in (inside_dir, native_dir):
        d.mkdir()
        shutil.copy(PROGRAM, d / "native_io.py")
    native = run_native(["native_io.py"], cwd=native_dir, timeout=120)
    assert native.returncode == 0, native.stderr.decode()
    inside = run_shim(["native_io.py"], backend=backend, cwd=inside_dir, timeout=180)
    assert inside.returncode == 0, inside.stderr.decode()
    # Same report (checksums, sizes, sqlite rows) and nothing else on stdout: no file bytes leaked there.
    assert inside.stdout == native.stdout
    assert _tree(inside_dir) == _tree(native_dir)
    assert b"numpy True" in inside.stdout and b"pillow True" in inside.stdout and b"sqlite (200," in inside.stdout


def test_fileno_is_the_real_descriptor_of_the_same_file(backend: str, tmp_path: Path) -> None:
    # Python-level writes go through ocalls, native ones straight to the descriptor: one open file, one offset.
    program = (
        "import os, ctypes\n"
        "f = open('x.bin', 'wb', buffering=0)\n"
        "f.write(b'python;')\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "n = libc.write(f.fileno(), b'native;', 7)\n"
        "f.write(b'python again')\n"
        "print(n, f.tell(), os.lseek(f.fileno(), 0, os.SEEK_CUR))\n"
        "f.close()\n"
        "print(open('x.bin', 'rb').read())\n"
    )
    inside = run_shim(["--allow-ffi", "-c", program], backend=backend, cwd=tmp_path)
    assert inside.returncode == 0, inside.stderr.decode()
    assert inside.stdout == b"7 26 26\nb'python;native;python again'\n"
