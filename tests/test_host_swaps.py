"""The host's path confinement against a program that rearranges the folders it may write.

Each attack uses only what the policy grants: creating a symlink where a granted folder will be, a symlink to
`.` beside a --deny-write file, a symlink to a read-only file in a writable folder.  Each is refused, and a
negative control switches off exactly the defence that refuses it and shows the attack then succeeds.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ocall_bridge import calls as K
from ocall_bridge.host import confine
from ocall_bridge.host import files as host_files
from ocall_bridge.host.runtime import Host
from posix_shim import Enclave
from posix_shim.policy import parse


def _follow_roots(self: confine.Confiner, real: bytes) -> int:
    """The defence switched off: a root opened by whatever its path leads to now."""
    return confine.os.open(real, confine.O_PATH | confine.O_DIRECTORY | confine.O_CLOEXEC)


# -- a granted folder that does not exist yet ----------------------------------------------------------------


def _root_swap(tmp_path: Path, backend: str, capfd: pytest.CaptureFixture[str]) -> list[str]:
    granted, outside = tmp_path / "w" / "new", tmp_path / "outside"
    granted.parent.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"SECRET")
    (tmp_path / "cwd").mkdir()
    code = f"""
import os
def attempt(label, f):
    try:
        print(label, f())
    except OSError as exc:
        print(label, exc.errno)
attempt("direct", lambda: open({str(outside / 'secret')!r}).read())
os.symlink({str(outside)!r}, {str(granted)!r})  # the granted folder's own name: allowed to create
attempt("through the granted name", lambda: open({str(granted / 'secret')!r}).read())
attempt("write through it", lambda: open({str(granted / 'planted')!r}, "w").write("x"))
"""
    access = parse([f"--allow-write={granted}", f"--allow-read={granted}"], cwd=str(tmp_path / "cwd"))
    with Enclave(policy=access, backend=backend) as enclave:
        capfd.readouterr()
        status = enclave.run_code(code)
        out, err = capfd.readouterr()
    assert status == 0, err
    return out.splitlines()


def test_a_granted_folder_created_as_a_symlink_leads_nowhere(tmp_path: Path, backend: str,
                                                              capfd: pytest.CaptureFixture[str]) -> None:
    assert _root_swap(tmp_path, backend, capfd) == ["direct 13", "through the granted name 13",
                                                    "write through it 13"]
    assert not (tmp_path / "outside" / "planted").exists()


def test_control_roots_that_follow_what_their_path_leads_to_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    # On the process backend: the runner serving it is this test process, where the patch applies, and its own
    # code may call the OS (on sim, the tripwires would refuse this test module's direct os.open).
    monkeypatch.setattr(confine.Confiner, "_open_fixed", _follow_roots)
    assert _root_swap(tmp_path, "process", capfd) == ["direct 13", "through the granted name SECRET",
                                                  "write through it 1"]
    assert (tmp_path / "outside" / "planted").read_bytes() == b"x"


# -- a --deny-write file beside a symlink to its own folder --------------------------------------------------


def _through_dir_link(tmp_path: Path) -> dict[str, object]:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("secret", "secret2", "secret3"):
        (data / name).write_bytes(b"s")
        (data / name).chmod(0o644)
    denied = ",".join(str(data / n) for n in ("secret", "secret2", "secret3"))
    host = Host(parse([f"--allow-read={data}", f"--allow-write={data}", f"--deny-write={denied}"],
                      cwd=str(tmp_path)))

    def call(name: str, *args: object) -> object:
        try:
            return host.perform(host.entries[K.BY_NAME[name].number], args)
        except OSError as exc:
            return errno.errorcode[exc.errno or 0]

    here = os.fsencode(data / "here")
    out = {"direct unlink": call("unlink", os.fsencode(data / "secret")),
           "link": call("symlink", b".", here),
           "unlink": call("unlink", here + b"/secret"),
           "rename": call("rename", here + b"/secret2", os.fsencode(data / "moved")),
           "chmod": call("chmod", here + b"/secret3", 0o600, False)}
    out["left"] = sorted(os.listdir(data))
    out["mode"] = oct((data / "secret3").stat().st_mode & 0o777)
    return out


def test_a_denied_file_cannot_be_reached_through_a_symlink_to_its_folder(tmp_path: Path) -> None:
    assert _through_dir_link(tmp_path) == {
        "direct unlink": "EACCES", "link": None, "unlink": "EACCES", "rename": "EACCES", "chmod": "EACCES",
        "left": ["here", "secret", "secret2", "secret3"], "mode": "0o644"}


def test_control_entries_judged_by_the_name_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(confine.Confiner, "_judge_entry", lambda self, path, parent_norm, d, name, kinds: None)
    assert _through_dir_link(tmp_path) == {
        "direct unlink": "EACCES", "link": None, "unlink": None, "rename": None, "chmod": None,
        "left": ["here", "moved", "secret3"], "mode": "0o600"}


# -- an fd opened read-only through a symlink in a writable folder -------------------------------------------


def _fd_forms(tmp_path: Path, backend: str, capfd: pytest.CaptureFixture[str]) -> tuple[list[str], Path]:
    data, out = tmp_path / "data", tmp_path / "data" / "out"
    out.mkdir(parents=True)
    secret = data / "secret.txt"
    secret.write_bytes(b"read only")
    secret.chmod(0o644)
    code = f"""
import os
os.symlink("../secret.txt", {str(out / 'x')!r})
def attempt(label, f):
    try:
        f()
        print(label, "ok")
    except OSError as exc:
        print(label, exc.errno)
attempt("chmod by path", lambda: os.chmod({str(out / 'x')!r}, 0o600))
fd = os.open({str(out / 'x')!r}, os.O_RDONLY)  # reading it is granted
attempt("fchmod", lambda: os.fchmod(fd, 0o600))
attempt("fsetxattr", lambda: os.setxattr(fd, "user.planted", b"1"))
"""
    access = parse([f"--allow-read={data}", f"--allow-write={out}"], cwd=str(out))
    with Enclave(policy=access, backend=backend) as enclave:
        capfd.readouterr()
        status = enclave.run_code(code)
        printed, err = capfd.readouterr()
    assert status == 0, err
    return printed.splitlines(), secret


def _xattrs_work_here(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError:
        return False
    return True


def test_fd_forms_need_the_grant_of_the_file_behind_the_descriptor(tmp_path: Path, backend: str,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    lines, secret = _fd_forms(tmp_path, backend, capfd)
    assert lines[:2] == ["chmod by path 13", "fchmod 13"]
    assert lines[2] == "fsetxattr 13" or not _xattrs_work_here(tmp_path)
    assert oct(secret.stat().st_mode & 0o777) == "0o644" and os.listxattr(secret) == []


def test_control_fd_forms_judged_by_the_opened_name_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(host_files, "real_path_of", lambda h: None)
    lines, secret = _fd_forms(tmp_path, "sim", capfd)
    assert lines[:2] == ["chmod by path 13", "fchmod ok"]
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
