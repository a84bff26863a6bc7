"""Interposition in this very process (the sim backend): what is swapped while an enclave runs, and that every
swapped reference is put back afterwards - the host program embedding an enclave must get its real OS back.

These tests inspect the test process itself, so they use the sim backend only: on the process backend the
interposition happens in the child.
"""

from __future__ import annotations

import _io
import builtins
import io
import os
import posix
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from ocall_bridge.access import ALLOW_ALL, Access
from posix_shim import Enclave
from posix_shim.interpose import Interposer, all_replacements

CAPABILITY_SETS = ("supports_dir_fd", "supports_fd", "supports_follow_symlinks", "supports_effective_ids",
                   "supports_bytes_environ")


def _snapshot() -> dict[str, Any]:
    """Everything interposition touches that a host program can observe."""
    snap: dict[str, Any] = {
        "os.open": os.open, "os.stat": os.stat, "os.listdir": os.listdir, "os.scandir": os.scandir,
        "os.getcwd": os.getcwd, "os.fspath": os.fspath, "posix.open": posix.open, "posix.DirEntry": posix.DirEntry,
        "builtins.open": builtins.open, "io.open": io.open, "io.FileIO": io.FileIO, "io.open_code": io.open_code,
        "_io.open": _io.open, "_io.FileIO": _io.FileIO,
        "sys.stdin": sys.stdin, "sys.stdout": sys.stdout, "sys.stderr": sys.stderr,
        "sys.__stdout__": sys.__stdout__, "shutil.os": shutil.os,
    }
    for name in CAPABILITY_SETS:
        capability = getattr(os, name, None)
        if isinstance(capability, set):
            snap["os." + name] = set(capability)
    return snap


def _assert_restored(before: dict[str, Any]) -> None:
    after = _snapshot()
    for key, value in before.items():
        if isinstance(value, set):
            assert after[key] == value, f"{key} keeps {after[key] ^ value}"
        else:
            assert after[key] is value, f"{key} is still {after[key]!r}"
    # And the obvious identities, as a reader would check them.
    assert os.open is posix.open and builtins.open is io.open is _io.open and io.FileIO is _io.FileIO
    assert not getattr(os.stat, "__posix_shim__", False)


@pytest.fixture
def captured_module() -> types.ModuleType:
    """A module that captured os functions at import (`from os import stat, open as os_open`)."""
    mod = types.ModuleType("posix_shim_test_captured")
    exec("from os import stat, listdir\nfrom os import open as os_open\nfrom builtins import open as bopen\n"
         "import os as _os\nSTASH = {'stat': stat}\n", mod.__dict__)
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def test_everything_is_swapped_while_inside_and_restored_after(tmp_path: Path,
                                                                captured_module: types.ModuleType) -> None:
    before = _snapshot()
    seen: dict[str, Any] = {}

    def look() -> None:
        seen["os.open"] = os.open
        seen["posix.open"] = posix.open
        seen["builtins.open"] = builtins.open
        seen["io.FileIO"] = io.FileIO
        seen["captured.stat"] = captured_module.stat
        seen["captured.os_open"] = captured_module.os_open
        seen["captured.bopen"] = captured_module.bopen
        seen["stash"] = captured_module.STASH["stat"]  # inside a container: not a module global, not swapped
        seen["supports_dir_fd"] = set(os.supports_dir_fd)
        seen["stdout"] = sys.stdout

    replacements = all_replacements()
    with Enclave(ALLOW_ALL, backend="sim") as enclave:
        module = types.ModuleType("posix_shim_test_look")
        module.look = look
        sys.modules[module.__name__] = module
        try:
            enclave.call("posix_shim_test_look:look")
        finally:
            del sys.modules[module.__name__]
    assert seen["os.open"] is replacements[posix.open] is seen["posix.open"]
    assert seen["builtins.open"] is replacements[_io.open]
    assert seen["io.FileIO"] is replacements[_io.FileIO]
    assert seen["captured.stat"] is replacements[posix.stat]
    assert seen["captured.os_open"] is replacements[posix.open]
    assert seen["captured.bopen"] is replacements[_io.open]
    assert seen["stash"] is before["os.stat"]
    assert replacements[posix.stat] in seen["supports_dir_fd"]
    assert seen["stdout"] is not before["sys.stdout"]
    _assert_restored(before)
    assert captured_module.stat is posix.stat and captured_module.os_open is posix.open
    assert captured_module.bopen is io.open


def test_restored_after_a_program_that_fails(enclave: Enclave) -> None:
    before = _snapshot()
    assert enclave.run_code("raise RuntimeError('boom')") == 1
    assert enclave.run_code("import sys; sys.exit(4)") == 4
    with pytest.raises(Exception):  # noqa: B017 - any error: the point is what is left behind
        enclave.call("os:stat", "/definitely/not/here")
    _assert_restored(before)


def test_restored_after_many_enclaves_in_a_row(tmp_path: Path) -> None:
    before = _snapshot()
    for _ in range(3):
        with Enclave(ALLOW_ALL, backend="sim") as enclave:
            assert enclave.run_code(f"open({str(tmp_path / 'x')!r}, 'a').write('.')") == 0
    assert (tmp_path / "x").read_text() == "..."
    _assert_restored(before)


def test_an_interposer_installs_and_uninstalls_once() -> None:
    before = _snapshot()
    interposer = Interposer()
    interposer.install()
    try:
        interposer.install()  # idempotent
        assert os.open is not before["os.open"] and posix.open is os.open and os.open.__name__ == "open"
        assert getattr(os.open, "__posix_shim__", False)
        assert "os.open" in interposer.patched_names() and "builtins.open" in interposer.patched_names()
    finally:
        interposer.uninstall()
    interposer.uninstall()  # idempotent
    _assert_restored(before)


def test_the_host_keeps_its_own_real_functions(enclave: Enclave) -> None:
    """The runtime's own modules are never rewritten: the sim host must call the real OS."""
    from ocall_bridge import originals

    real_open, real_stat = posix.open, posix.stat
    module = types.ModuleType("posix_shim_test_host")
    module.check = lambda: [originals.os.open is real_open, originals.os.stat is real_stat, os.open is real_open]
    sys.modules[module.__name__] = module
    try:
        assert enclave.call("posix_shim_test_host:check") == [True, True, False]
    finally:
        del sys.modules[module.__name__]


class Recording(Access):
    """Allow everything, but remember every resource a call asked for (the policy sees every path)."""

    def __init__(self, deny: bytes | None = None) -> None:
        self.seen: list[tuple[str, str, Any]] = []
        self.deny = deny

    def check(self, call: str, kind: str, resource: Any) -> str | None:
        self.seen.append((call, kind, resource))
        if self.deny is not None and isinstance(resource, bytes) and resource.startswith(self.deny):
            return f"no {kind} access to {os.fsdecode(resource)}"
        return None


def _write_module(folder: Path, name: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text("import os\nVALUE = 42\ndef where():\n    return os.getcwd()\n")


def test_imports_after_install_go_through_enclave_file_calls(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib"
    _write_module(lib, "posix_shim_fresh_mod")
    # Second place: the runner sets sys.path[0] for each run, as python does.
    monkeypatch.setattr(sys, "path", [sys.path[0], str(lib), *sys.path[1:]])
    policy = Recording()
    try:
        with Enclave(policy=policy, backend="sim") as enclave:
            assert enclave.run_code("import posix_shim_fresh_mod; assert posix_shim_fresh_mod.VALUE == 42") == 0
        source = os.fsencode(lib / "posix_shim_fresh_mod.py")
        asked = {(call, resource) for call, _, resource in policy.seen}
        assert ("open", source) in asked  # read through the enclave's open ocall
        assert any(call in ("stat", "lstat") and r.startswith(os.fsencode(lib)) for call, r in asked
                   if isinstance(r, bytes))  # importlib's path finder stats through the enclave too
    finally:
        sys.modules.pop("posix_shim_fresh_mod", None)


def test_an_import_the_policy_forbids_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "secret"
    _write_module(lib, "posix_shim_secret_mod")
    # Second place: the runner sets sys.path[0] for each run, as python does.
    monkeypatch.setattr(sys, "path", [sys.path[0], str(lib), *sys.path[1:]])
    try:
        with Enclave(policy=Recording(deny=os.fsencode(lib)), backend="sim") as enclave:
            status = enclave.run_code("import posix_shim_secret_mod")
        assert status == 1
        err = capfd.readouterr().err
        assert "ModuleNotFoundError: No module named 'posix_shim_secret_mod'" in err, err
        assert "posix_shim_secret_mod" not in sys.modules
    finally:
        sys.modules.pop("posix_shim_secret_mod", None)


def test_modules_first_imported_inside_are_restored_too(tmp_path: Path) -> None:
    """A module imported during the run captures the enclave's functions (`from builtins import open`); once
    the enclave is gone, it must hold the real ones again, or it would call into a finalized enclave."""
    code = textwrap.dedent(f"""
        import builtins, io, os, posix, sys
        sys.path.insert(1, {str(tmp_path)!r})
        open({str(tmp_path / 'posix_shim_late.py')!r}, "w").write("from os import stat, listdir\\n")
        from posix_shim import Enclave
        from ocall_bridge.access import ALLOW_ALL
        assert "tarfile" not in sys.modules and "posix_shim_late" not in sys.modules
        with Enclave(ALLOW_ALL, backend="sim") as e:
            assert e.run_code("import tarfile, posix_shim_late") == 0
        import tarfile, posix_shim_late
        assert tarfile.bltn_open is io.open, tarfile.bltn_open
        assert posix_shim_late.stat is posix.stat and posix_shim_late.listdir is posix.listdir
        with tarfile.open({str(tmp_path / 'late.tar')!r}, "w") as t:  # outside the enclave, after it is gone
            t.add({str(tmp_path / 'posix_shim_late.py')!r}, "late.py")
        print(tarfile.open({str(tmp_path / 'late.tar')!r}).getnames(),
              sorted(posix_shim_late.listdir({str(tmp_path)!r})))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"['late.py'] ['late.tar', 'posix_shim_late.py']\n"


def test_stdio_inside_is_rebuilt_over_enclave_fds(capfd: pytest.CaptureFixture[str]) -> None:
    with Enclave(ALLOW_ALL, backend="sim") as enclave:
        code = ("import sys, io\n"
                "raw = getattr(sys.stdout.buffer, 'raw', sys.stdout.buffer)  # no buffer under PYTHONUNBUFFERED\n"
                "print('out', type(raw).__module__, sys.stdout.fileno())\n"
                "print('err', file=sys.stderr)\n"
                "sys.stdout.buffer.write(b'raw bytes\\n')\n")
        assert enclave.run_code(code) == 0
    out, err = capfd.readouterr()
    assert out == "out enclave_libc.io 1\nraw bytes\n"
    assert err == "err\n"


def test_shutil_uses_the_fd_based_rmtree_inside(enclave: Enclave, tmp_path: Path) -> None:
    """shutil decides at import whether its symlink-attack-safe rmtree can run (os.open, os.stat ... in
    os.supports_dir_fd); the enclave's functions support dir_fd, so the safe variant is used inside too."""
    tree = tmp_path / "t"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_text("x")
    os.symlink(tmp_path, tree / "a" / "loop")
    code = (f"import shutil, os\nassert shutil.rmtree.avoids_symlink_attacks\n"
            f"shutil.rmtree({str(tree)!r})\nassert not os.path.exists({str(tree)!r})\n")
    assert enclave.run_code(code) == 0  # the `enclave` fixture: a sim enclave, closed after the test
    assert not tree.exists() and tmp_path.exists()


CAPABILITIES = ("import os\n"
                "for name in ('supports_dir_fd', 'supports_fd', 'supports_follow_symlinks',\n"
                "             'supports_effective_ids'):\n"
                "    print(name, sorted(n for n in dir(os) if callable(getattr(os, n))\n"
                "                       and getattr(os, n) in getattr(os, name)))\n")


def test_capability_sets_answer_as_natively(tmp_path: Path) -> None:
    """`os.stat in os.supports_dir_fd` and friends: shutil, os.fwalk and pathlib choose their code paths by it."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    native = subprocess.run([sys.executable, "-c", CAPABILITIES], capture_output=True, timeout=60, cwd=tmp_path)
    inside = subprocess.run([sys.executable, "-m", "posix_shim", "-c", CAPABILITIES], capture_output=True,
                            timeout=60, cwd=tmp_path, env=env)
    assert inside.returncode == 0, inside.stderr.decode()
    assert inside.stdout == native.stdout
    assert b"'scandir'" in inside.stdout and b"'open'" in inside.stdout


def test_file_calls_with_no_ocall_are_served_or_refused_never_passed_through(tmp_path: Path) -> None:
    """A posix file call reaching the real kernel would use the enclave's fd number on a host descriptor."""
    code = textwrap.dedent("""
        import errno, mmap, os, shutil
        fd = os.open("f", os.O_RDWR | os.O_CREAT)
        os.write(fd, b"0123456789")
        a, b = bytearray(3), bytearray(4)
        print("preadv", os.preadv(fd, [a, b], 2), bytes(a), bytes(b))
        print("pwritev", os.pwritev(fd, [b"AB", b"CD"], 8), os.pread(fd, 20, 0))
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        os.posix_fallocate(fd, 0, 100)
        print("fallocate", os.fstat(fd).st_size)
        os.sync()
        for call in (lambda: os.listxattr("f"), lambda: os.getxattr("f", "user.x"), lambda: os.listxattr("nope"),
                     lambda: os.mknod("node"), lambda: os.copy_file_range(fd, fd, 1), lambda: os.ttyname(fd),
                     lambda: mmap.mmap(fd, 0), lambda: os.fpathconf(fd, "PC_NAME_MAX"), lambda: os.chroot(".")):
            try:
                call()
            except OSError as e:
                print(errno.errorcode[e.errno], e.filename)
        shutil.copy2("f", "g")  # copystat copies the extended attributes (real ocalls since issue 19: none here)
        print("copy2", os.path.getsize("g"))
        with mmap.mmap(-1, 16) as m:  # anonymous memory is just memory
            m[:5] = b"hello"
            print("anonymous", m[:5], isinstance(m, mmap.mmap))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "posix_shim", "-c", code], capture_output=True, timeout=60,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [
        "preadv 7 b'234' b'5678'",
        "pwritev 4 b'01234567ABCD'",
        "fallocate 100",
        "ENODATA f", "ENOENT nope",  # listxattr("f") answers [] (extended attributes are ocalls)
        "ENOSYS None", "ENOSYS None", "ENOTTY None", "ENOSYS None", "ENOSYS None", "ENOSYS None",
        "copy2 100",
        "anonymous b'hello' True",
    ]


def test_a_builtin_kept_as_a_class_staticmethod_is_swapped_and_restored(tmp_path: Path) -> None:
    # 3.13's glob keeps `scandir = staticmethod(os.scandir)` on a class: left alone, the real scandir runs inside
    # (refused by the sealed audit hook, so pathlib's glob silently found nothing).
    module = types.ModuleType("posix_shim_test_statics")

    class Globber:
        scandir = staticmethod(posix.scandir)

    Globber.__module__ = module.__name__
    module.Globber = Globber
    sys.modules[module.__name__] = module
    try:
        with Enclave(ALLOW_ALL, backend="sim") as enclave:
            from enclave_libc import dirs

            module.check = lambda: Globber.scandir is dirs.scandir  # the enclave's, as os.scandir is now
            assert enclave.call("posix_shim_test_statics:check") is True
        assert Globber.scandir is posix.scandir
    finally:
        del sys.modules[module.__name__]


# -- the index: one scan per process, then only what changed -------------------------------------------------


@pytest.fixture
def watched_module() -> Any:
    """A module whose globals a test rebinds between and during ecalls (same size: only a tag sees it)."""
    mod = types.ModuleType("posix_shim_test_watched")
    exec("SLOT = None\nLATE = None\n", mod.__dict__)

    real = posix.stat  # in a closure, which interposition does not rewrite
    replacement = all_replacements()[real]

    def look() -> list[bool]:
        return [mod.SLOT is replacement, mod.SLOT is real]

    def capture_inside() -> None:
        mod.LATE = os.stat  # the enclave's stat, stored into a module that was there before (no new key)

    mod.look, mod.capture_inside = look, capture_inside
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def test_a_capture_between_two_calls_is_swapped_at_the_next(watched_module: Any) -> None:
    with Enclave(ALLOW_ALL, backend="sim") as enclave:
        assert enclave.call("posix_shim_test_watched:look") == [False, False]
        watched_module.SLOT = posix.stat  # the host rebinds an existing global to an original: size unchanged
        assert enclave.call("posix_shim_test_watched:look") == [True, False]  # swapped, as os.stat is
        assert watched_module.SLOT is posix.stat  # and given back
        fresh = types.ModuleType("posix_shim_test_fresh")
        exec("from os import stat as SLOT\n", fresh.__dict__)
        replacement = all_replacements()[posix.stat]
        fresh.look = lambda: fresh.SLOT is replacement
        sys.modules[fresh.__name__] = fresh  # a module loaded between two calls
        try:
            assert enclave.call("posix_shim_test_fresh:look") is True
            assert fresh.SLOT is posix.stat
        finally:
            del sys.modules[fresh.__name__]


def test_control_without_change_detection_the_capture_stays_the_hosts(watched_module: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The negative control: a refresh that trusts the old plans (as a plain cache would) misses the rebinding,
    so the program would hold the host's real stat."""
    from posix_shim.interpose_index import Index

    with Enclave(ALLOW_ALL, backend="sim") as enclave:
        assert enclave.call("posix_shim_test_watched:look") == [False, False]
        monkeypatch.setattr(Index, "refresh", lambda self: 0)
        watched_module.SLOT = posix.stat
        assert enclave.call("posix_shim_test_watched:look") == [False, True]


def test_a_replacement_stored_inside_is_given_back(watched_module: Any) -> None:
    with Enclave(ALLOW_ALL, backend="sim") as enclave:
        enclave.call("posix_shim_test_watched:capture_inside")
        assert watched_module.LATE is posix.stat  # the host's own again, not the enclave's
        watched_module.LATE = None
        enclave.call("posix_shim_test_watched:capture_inside")
        assert watched_module.LATE is posix.stat


def test_the_index_reads_dict_version_tags_where_it_can() -> None:
    """On CPython 3.11-3.13 the tag reader passes its self-test (else every install is a full walk: slow)."""
    from posix_shim.interpose_index import tag_reader

    reader = tag_reader()
    if sys.implementation.name == "cpython" and (3, 11) <= sys.version_info[:2] <= (3, 13):
        assert reader is not None
        d: dict[str, Any] = {"k": 1}
        read = reader.many([d, sys.__dict__])
        before = read()
        d["k"] = 2
        after = read()
        assert after[0] != before[0] and after[1] == before[1] and after[0] == reader.one(d)
