"""A path outside everything the policy grants is absent from the enclave's view for metadata calls (ENOENT).

Programs probe for optional files by stat: pytest looks for pytest.ini, pyproject.toml, tox.ini and setup.cfg in
every folder above the one it runs in, and `Path.is_file()` / `Path.exists()` (before Python 3.13) raise on EACCES
and answer False only on ENOENT.  Under the default policy those probes used to end pytest with a traceback; now
they answer ENOENT, with the same message naming the flag that would grant the file.  Reads stay EACCES, and so
do metadata calls on a path an explicit deny rule covers.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import run_shim
from test_policy import build

from ocall_bridge import types as T
from ocall_bridge.access import Absent, denial_errno
from ocall_bridge.calls import BY_NAME
from ocall_bridge.host.runtime import Host
from posix_shim import Enclave
from posix_shim.policy import model

PROBE = """
import os, sys
from pathlib import Path
here = Path.cwd()
print([p.name for p in here.parents if (p / "pyproject.toml").is_file()])
print((here.parent / "no-such.cfg").exists())
try:
    os.stat(sys.argv[1])
except OSError as exc:
    print(type(exc).__name__, os.strerror(exc.errno), "--allow-read" in str(exc))
try:
    open(sys.argv[1]).read()
except OSError as exc:
    print(type(exc).__name__, os.strerror(exc.errno))
"""


def test_the_policy_says_which_denials_are_absences(tmp_path: Path) -> None:
    p = build(["--deny-read=" + str(tmp_path / "cfg")], cwd=tmp_path / "a" / "b")
    probe = p.check("stat", "stat", os.fsencode(tmp_path / "pyproject.toml"))  # a folder above the grant
    assert isinstance(probe, Absent) and denial_errno(probe) == errno.ENOENT
    assert "--allow-read=" in probe
    outside = p.check("stat", "stat", b"/etc/hostname")
    assert isinstance(outside, Absent)
    # Not absences: a read, and the metadata of a path a deny rule covers.
    read = p.check("open", "read", b"/etc/hostname")
    assert read and not isinstance(read, Absent) and denial_errno(read) == errno.EACCES
    hidden = p.check("stat", "stat", os.fsencode(tmp_path / "cfg"))
    assert hidden and not isinstance(hidden, Absent) and "hidden by --deny-read" in hidden


def test_the_host_answers_an_absence_with_enoent(tmp_path: Path) -> None:
    host = Host(build(cwd=tmp_path))
    stat = BY_NAME["stat"]
    with pytest.raises(OSError) as caught:
        host._check_resource(stat, "stat", (b"/etc/hostname",), 0, T.Path())
    assert caught.value.errno == errno.ENOENT and "--allow-read" in str(caught.value)
    with pytest.raises(OSError) as caught:
        host._check_resource(BY_NAME["open"], "read", (b"/etc/hostname", os.O_RDONLY, 0), 0, T.Path())
    assert caught.value.errno == errno.EACCES


def test_probes_above_the_program_answer_absent_on_every_backend(tmp_path: Path, backend: str) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # above the cwd: outside the grants
    work = tmp_path / "work"
    work.mkdir()
    (work / "probe.py").write_text(PROBE)
    r = run_shim(["probe.py", str(tmp_path / "pyproject.toml")], backend=backend, cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "[]",  # it exists on the host, but not in the enclave's view
        "False",
        "PolicyHidden No such file or directory True",
        "PolicyDenied Permission denied",
    ]


def test_pytest_runs_a_suite_without_its_own_config_under_the_default_policy(tmp_path: Path, backend: str) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_small.py").write_text("def test_adds():\n    assert 1 + 1 == 2\n")
    r = run_shim(["-m", "pytest", "-q", "-p", "no:cacheprovider"], backend=backend, cwd=suite, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert b"1 passed" in r.stdout
    assert b"warning" not in r.stdout.lower()  # no "cannot be rewritten" for the runtime's packages


def test_negative_control_without_absence_the_probe_crashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch off exactly the feature (the policy answers plain strings) and the 3.11-style probe raises."""
    monkeypatch.setattr(model, "Absent", str)
    work = tmp_path / "work"
    work.mkdir()
    outside = os.fsencode(tmp_path / "pyproject.toml")
    with Enclave(build(cwd=work), backend="sim") as enclave:
        enclave.call("os:getpid")  # started
        rt = enclave._backend.rt  # type: ignore[attr-defined]
        with pytest.raises(PermissionError):
            rt.ocall.stat(outside)
    monkeypatch.undo()
    with Enclave(build(cwd=work), backend="sim") as enclave:
        rt = enclave._backend.rt  # type: ignore[attr-defined]
        with pytest.raises(FileNotFoundError):
            rt.ocall.stat(outside)
