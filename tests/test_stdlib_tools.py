"""Real standard-library tools inside the enclave give the bytes they give natively.

Each test runs the same command twice - `python -m posix_shim ...` and `python ...` - on identical copies of
its input, and compares what a user keeps: the output files and what was printed.  Inputs carry a fixed mtime,
so archives and .pyc files (which record it) are comparable byte for byte.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, run_native, run_shim

FIXED_MTIME = 1_600_000_000  # 2020-09-13: any fixed time works; "now" would differ between the two runs


def _tree(root: Path) -> Path:
    """A small input tree with text, binary, an empty file and a nested folder, all at FIXED_MTIME."""
    src = root / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "hello.txt").write_text("hello, enclave\n" * 3)
    (src / "sub" / "data.bin").write_bytes(bytes(range(256)) * 40)
    (src / "sub" / "deeper" / "empty").write_bytes(b"")
    (src / "sub" / "mod.py").write_text("def f(x):\n    return x * 2\n")
    for path in sorted(src.rglob("*"), reverse=True) + [src]:
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))
    return src


def _twins(tmp_path: Path) -> tuple[Path, Path]:
    """Two identical working directories: one for the enclave run, one for the native run."""
    inside, native = tmp_path / "inside", tmp_path / "native"
    for d in (inside, native):
        d.mkdir()
        _tree(d)
    return inside, native


def _ok(result, what: str) -> None:  # a CompletedProcess
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stderr.decode(errors='replace')}"


def test_json_tool(backend: str, tmp_path: Path) -> None:
    doc = tmp_path / "in.json"
    doc.write_text('{"b": [1, 2.5, {"c": "d\\u00e9"}], "a": null, "z": true}')
    for extra in (["--sort-keys", "--indent", "2"],):
        inside = run_shim(["-m", "json.tool", *extra, str(doc)], backend=backend, cwd=tmp_path)
        native = run_native(["-m", "json.tool", *extra, str(doc)], cwd=tmp_path)
        _ok(inside, "json.tool")
        assert inside.stdout == native.stdout and inside.stdout
    # Writing to an output file, and reading from stdin.
    inside = run_shim(["-m", "json.tool", str(doc), "out-inside.json"], backend=backend, cwd=tmp_path)
    native = run_native(["-m", "json.tool", str(doc), "out-native.json"], cwd=tmp_path)
    _ok(inside, "json.tool")
    assert (tmp_path / "out-inside.json").read_bytes() == (tmp_path / "out-native.json").read_bytes()
    inside = run_shim(["-m", "json.tool"], backend=backend, cwd=tmp_path, input=doc.read_bytes())
    assert inside.stdout == run_native(["-m", "json.tool"], cwd=tmp_path, input=doc.read_bytes()).stdout
    # A syntax error is reported the same way, with the same status.
    doc.write_text('{"a": }')
    inside = run_shim(["-m", "json.tool", str(doc)], backend=backend, cwd=tmp_path)
    native = run_native(["-m", "json.tool", str(doc)], cwd=tmp_path)
    assert (inside.returncode, inside.stderr) == (native.returncode, native.stderr) != (0, b"")


def test_zipfile_create_list_extract(backend: str, tmp_path: Path) -> None:
    inside, native = _twins(tmp_path)
    _ok(run_shim(["-m", "zipfile", "-c", "out.zip", "src"], backend=backend, cwd=inside), "zipfile -c")
    _ok(run_native(["-m", "zipfile", "-c", "out.zip", "src"], cwd=native), "zipfile -c")
    made = (inside / "out.zip").read_bytes()
    assert made == (native / "out.zip").read_bytes()
    with zipfile.ZipFile(io.BytesIO(made)) as z:
        assert z.read("src/sub/data.bin") == bytes(range(256)) * 40
        assert sorted(z.namelist()) == ["src/", "src/hello.txt", "src/sub/", "src/sub/data.bin",
                                        "src/sub/deeper/", "src/sub/deeper/empty", "src/sub/mod.py"]
    listing = run_shim(["-m", "zipfile", "-l", "out.zip"], backend=backend, cwd=inside)
    assert listing.stdout == run_native(["-m", "zipfile", "-l", "out.zip"], cwd=native).stdout
    _ok(run_shim(["-m", "zipfile", "-e", "out.zip", "x"], backend=backend, cwd=inside), "zipfile -e")
    assert (inside / "x" / "src" / "sub" / "data.bin").read_bytes() == bytes(range(256)) * 40
    assert (inside / "x" / "src" / "sub" / "deeper" / "empty").read_bytes() == b""


def test_tarfile_create_list_extract(backend: str, tmp_path: Path) -> None:
    inside, native = _twins(tmp_path)
    for name in ("out.tar", "out.tar.gz"):
        _ok(run_shim(["-m", "tarfile", "-c", name, "src"], backend=backend, cwd=inside), "tarfile -c")
        _ok(run_native(["-m", "tarfile", "-c", name, "src"], cwd=native), "tarfile -c")
    # Everything deterministic agrees: member names, types, modes, sizes, mtimes and contents.  (The whole
    # archive is compared too: with fixed mtimes and the same owner even uname/gname and the gzip header agree.)
    def members(path: Path) -> list[tuple]:
        with tarfile.open(path) as t:
            return [(m.name, m.type, m.mode, m.size, m.mtime, m.uname,
                     t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]

    assert members(inside / "out.tar") == members(native / "out.tar")
    assert members(inside / "out.tar")[0][0] == "src"
    assert (inside / "out.tar").read_bytes() == (native / "out.tar").read_bytes()
    assert members(inside / "out.tar.gz") == members(native / "out.tar")
    listing = run_shim(["-m", "tarfile", "-l", "out.tar"], backend=backend, cwd=inside)
    assert listing.stdout == run_native(["-m", "tarfile", "-l", "out.tar"], cwd=native).stdout
    _ok(run_shim(["-m", "tarfile", "-e", "out.tar.gz", "x"], backend=backend, cwd=inside), "tarfile -e")
    assert (inside / "x" / "src" / "hello.txt").read_text() == "hello, enclave\n" * 3
    assert (inside / "x" / "src" / "sub").stat().st_mtime == FIXED_MTIME


def test_compileall_writes_the_same_pyc(backend: str, tmp_path: Path) -> None:
    inside, native = _twins(tmp_path)
    inside_run = run_shim(["-m", "compileall", "src"], backend=backend, cwd=inside)
    native_run = run_native(["-m", "compileall", "src"], cwd=native)
    _ok(inside_run, "compileall")
    assert inside_run.stdout == native_run.stdout
    pyc = sorted(p.relative_to(inside) for p in inside.rglob("*.pyc"))
    assert pyc == sorted(p.relative_to(native) for p in native.rglob("*.pyc")) != []
    for rel in pyc:
        assert (inside / rel).read_bytes() == (native / rel).read_bytes(), rel
    # A second run finds everything up to date and rewrites nothing.
    again = run_shim(["-m", "compileall", "-q", "src"], backend=backend, cwd=inside)
    _ok(again, "compileall again")
    assert again.stdout == b""


def test_pydoc_writes_the_same_html(backend: str, tmp_path: Path) -> None:
    inside, native = tmp_path / "inside", tmp_path / "native"
    inside.mkdir()
    native.mkdir()
    inside_run = run_shim(["-m", "pydoc", "-w", "json"], backend=backend, cwd=inside)
    native_run = run_native(["-m", "pydoc", "-w", "json"], cwd=native)
    _ok(inside_run, "pydoc -w")
    assert inside_run.stdout == native_run.stdout == b"wrote json.html\n"
    # pydoc prints default values' reprs, which hold memory addresses: those differ between any two runs.
    addresses = re.compile(rb"0x[0-9a-f]+")
    html = addresses.sub(b"0x?", (inside / "json.html").read_bytes())
    assert html == addresses.sub(b"0x?", (native / "json.html").read_bytes())
    assert b"JSONDecoder" in html


def test_pytest_suite_with_tmp_path_passes_inside(backend: str, tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_small.py").write_text(
        "import os, shutil\n"
        "import pytest\n\n"
        "def test_files(tmp_path):\n"
        "    p = tmp_path / 'a.txt'\n"
        "    p.write_text('hello')\n"
        "    assert p.read_text() == 'hello'\n"
        "    assert os.listdir(tmp_path) == ['a.txt']\n\n"
        "def test_tree(tmp_path):\n"
        "    (tmp_path / 'd' / 'e').mkdir(parents=True)\n"
        "    shutil.copytree(tmp_path / 'd', tmp_path / 'c')\n"
        "    assert sorted(x.name for x in tmp_path.iterdir()) == ['c', 'd']\n\n"
        "@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_param(n, tmp_path_factory):\n"
        "    assert tmp_path_factory.mktemp('x').is_dir()\n\n"
        "def test_fails_on_purpose():\n"
        "    assert 1 + 1 == 3\n"
    )
    # An ini file in the suite's folder: pytest looks for its configuration from there upwards, and the default
    # policy only lets the program see the current directory (a stat above it is denied, not "not found").
    (suite / "pytest.ini").write_text("[pytest]\n")
    base = suite / "basetemp"
    # pyfakefs' plugin imports ctypes, whose import opens the running process with dlopen(NULL); the enclave's
    # tripwires refuse that without --allow-ffi, so the plugin (which this suite does not use) is left out.
    plugins = ["-p", "no:cacheprovider", "-p", "no:fakefs"]
    result = run_shim(["-m", "pytest", "-q", *plugins, "--basetemp", str(base), "test_small.py"],
                      backend=backend, cwd=suite)
    out = result.stdout.decode()
    assert "4 passed" in out and "1 failed" in out, out + result.stderr.decode()
    assert "assert (1 + 1) == 3" in out
    assert result.returncode == 1  # pytest's own status for "some tests failed"
    assert (base / "test_files0" / "a.txt").read_text() == "hello"  # tmp_path really is on the host disk


def test_pip_list_lists_the_same_packages(backend: str, tmp_path: Path) -> None:
    env = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    # run_shim puts the repository on PYTHONPATH (where a posix_shim.egg-info may lie): the same for native.
    native_env = dict(env, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    native = run_native(["-m", "pip", "list"], cwd=tmp_path, env=native_env)
    inside = run_shim(["-m", "pip", "list"], backend=backend, cwd=tmp_path, env=env)
    _ok(inside, "pip list")

    def packages(out: bytes) -> list[list[bytes]]:
        return [line.split()[:2] for line in out.splitlines()[2:]]

    # The same packages and versions.  (Only the "Editable project location" column may be missing: under the
    # default policy an editable install's project folder can lie outside what the program may see.)
    assert packages(inside.stdout) == packages(native.stdout)
    assert [b"pytest"] == [p[0] for p in packages(inside.stdout) if p[0] == b"pytest"]
    assert any(p[0].replace(b"-", b"_") == b"posix_shim" for p in packages(inside.stdout))
    # (`pip freeze` is not compared: for an editable install it runs `git`/`hg`, and starting a process is
    # refused inside the enclave unless the policy allows it.)


@pytest.mark.parametrize("tool", [["-m", "zipfile", "-c", "a.zip"], ["-m", "tarfile", "-c", "a.tar"],
                                  ["-m", "json.tool", "missing.json"]])
def test_a_missing_input_is_handled_like_native(backend: str, tmp_path: Path, tool: list[str]) -> None:
    """zipfile -c skips a missing file silently, tarfile -c fails with a traceback: either way, as natively."""
    inside_dir, native_dir = tmp_path / "i", tmp_path / "n"
    inside_dir.mkdir()
    native_dir.mkdir()
    inside = run_shim([*tool, "missing"], backend=backend, cwd=inside_dir)
    native = run_native([*tool, "missing"], cwd=native_dir)
    assert inside.returncode == native.returncode
    assert inside.stdout == native.stdout
    assert inside.stderr.splitlines()[-1:] == native.stderr.splitlines()[-1:]
    assert sorted(p.name for p in inside_dir.iterdir()) == sorted(p.name for p in native_dir.iterdir())


def test_shutil_make_archive_round_trip(backend: str, tmp_path: Path) -> None:
    _tree(tmp_path)
    code = ("import shutil, filecmp\n"
            "for fmt in ('zip', 'gztar', 'bztar', 'xztar'):\n"
            "    name = shutil.make_archive('arch-' + fmt, fmt, root_dir='.', base_dir='src')\n"
            "    shutil.unpack_archive(name, 'out-' + fmt)\n"
            "    c = filecmp.dircmp('src', 'out-' + fmt + '/src')\n"
            "    print(fmt, sorted(c.common), c.diff_files, c.left_only, c.right_only)\n")
    inside = run_shim(["-c", code], backend=backend, cwd=tmp_path)
    _ok(inside, "make_archive")
    shutil.rmtree(tmp_path / "native", ignore_errors=True)
    native_dir = tmp_path / "native"
    native_dir.mkdir()
    _tree(native_dir)
    assert inside.stdout == run_native(["-c", code], cwd=native_dir).stdout
    assert inside.stdout.count(b"[] [] []") == 4
