"""Host programs, only by name: `--allow-run=git,ls` and the policy key `allow_run` (docs/policy.md).

The host runs exactly the named executables (resolved on its PATH when the policy is loaded), with the enclave's
pipes as their standard streams and a clean environment from the policy; anything else stays refused, naming
the call, the program and the flag.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import printed_in_sim, run_shim

from ocall_bridge.host import children as host_children
from posix_shim import policy

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed here")


def _run(backend: str, tmp_path: Path, code: str, *options: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(code))
    return run_shim([str(script)], backend=backend, cwd=tmp_path, options=list(options), env=env, timeout=120)


RUN_GIT = """
    import subprocess
    try:
        r = subprocess.run(["git", "--version"], capture_output=True, text=True)
    except OSError as exc:
        print("refused", exc.errno, exc)
    else:
        print(r.returncode, r.stdout.strip())
    """


@needs_git
def test_a_named_program_runs_with_the_enclaves_pipes(backend: str, tmp_path: Path) -> None:
    r = _run(backend, tmp_path, RUN_GIT, "--allow-run=git")
    assert r.returncode == 0, r.stderr
    native = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    assert r.stdout.decode().strip() == f"0 {native}"


@needs_git
def test_without_the_flag_it_is_refused_naming_call_program_and_flag(backend: str, tmp_path: Path) -> None:
    r = _run(backend, tmp_path, RUN_GIT)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode().strip()
    assert out.startswith(f"refused {errno.ENOSYS} "), out
    assert "subprocess.Popen()" in out and "'git'" in out and "--allow-run=git" in out, out


@needs_git
def test_one_name_allows_that_program_only(backend: str, tmp_path: Path) -> None:
    r = _run(backend, tmp_path, """
        import os, subprocess
        for cmd in (["ls"], ["/bin/sh", "-c", "true"]):
            try:
                subprocess.run(cmd)
            except OSError as exc:
                print("refused", exc.errno)
        try:
            os.system("true")
        except OSError as exc:
            print("refused", exc.errno)
        """, "--allow-run=git")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split("\n")[:3] == [f"refused {errno.ENOSYS}"] * 3


def test_the_program_gets_a_clean_environment_from_the_policy(backend: str, tmp_path: Path) -> None:
    r = _run(backend, tmp_path, """
        import subprocess
        print(subprocess.run(["env"], capture_output=True, text=True).stdout, end="")
        """, "--allow-run=env", "--allow-env=MYAPP_MODE", env={"MYAPP_MODE": "on", "MYAPP_TOKEN": "hunter2"})
    assert r.returncode == 0, r.stderr
    names = {line.split("=", 1)[0] for line in r.stdout.decode().splitlines()}
    assert "MYAPP_MODE=on" in r.stdout.decode().splitlines()
    assert "MYAPP_TOKEN" not in names and "PYTHONPATH" not in names and "PATH" not in names, names


def test_the_program_runs_in_the_enclaves_working_directory(backend: str, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    r = _run(backend, tmp_path, """
        import os, subprocess
        os.chdir("sub")
        print(subprocess.run(["pwd"], capture_output=True, text=True).stdout, end="")
        """, "--allow-run=pwd")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == str(tmp_path / "sub")


# -- the host decides (sim, in this process), with its negative control -------------------------------------

def _ask_host_for(program: str, capfd: pytest.CaptureFixture[str], tmp_path: Path) -> str:
    """From inside a sim enclave allowed to run `true` only, ask the host directly for `program`."""
    code = textwrap.dedent(f"""
        from enclave_libc import runtime
        rt = runtime.RT
        try:
            pid = rt.ocall.run_program({program!r}, b"{program}", rt.cwd, -1, rt.fds.get(1).handle, -1)
        except OSError as exc:
            print("refused", exc.errno)
        else:
            print("ran, status", rt.ocall.waitchild(pid, False)[1])
        """)
    access = policy.parse(["--allow-run=true"], "code", None, cwd=str(tmp_path))
    return printed_in_sim(access, code, capfd)


def test_the_host_runs_only_what_its_policy_names(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _ask_host_for("true", capfd, tmp_path).strip() == "ran, status 0"
    assert _ask_host_for("pwd", capfd, tmp_path).strip() == f"refused {errno.EACCES}"


def test_control_without_the_hosts_lookup_any_program_runs(capfd: pytest.CaptureFixture[str], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The defence switched off: the host runs whatever it finds on its PATH (looked up now: on sim, a lookup
    # during the run would see the enclave's interposed os functions).
    found = {name: shutil.which(name) for name in ("true", "pwd")}
    monkeypatch.setattr(host_children, "allowed_program", lambda host, name: found.get(name))
    out = _ask_host_for("pwd", capfd, tmp_path)
    assert out.splitlines() == [os.getcwd(), "ran, status 0"], out


# -- the policy key --------------------------------------------------------------------------------------------

def test_the_policy_key_names_programs_resolved_at_load(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text('allow_run = ["true", "env"]\n')
    p = policy.parse([f"--policy={tmp_path / 'p.toml'}"], cwd=str(tmp_path))
    assert p.run_programs() == {"true": os.path.abspath(shutil.which("true")),
                                "env": os.path.abspath(shutil.which("env"))}
    again = policy.from_data(p.to_data())  # what the process backend's child and a child enclave get
    assert again.run_programs() == p.run_programs()
    shown = subprocess.run([os.sys.executable, "-m", "posix_shim", "policy", "check", str(tmp_path / "p.toml")],
                           capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert "host programs (run outside the enclave):" in shown.stdout, shown.stdout + shown.stderr
    assert f"  true{' ' * 25}{shutil.which('true')}" in shown.stdout.replace(os.path.abspath(shutil.which("true")),
                                                                             shutil.which("true"))


@pytest.mark.parametrize(("value", "problem"), [
    ('"git"', "allow_run: must be a list, not str 'git'"),
    ("[1]", "allow_run[0]: must be a string, not int 1"),
    ('["/bin/ls"]', "allow_run[0]: '/bin/ls' is not a program name"),
    ('["no-such-program-posix-shim"]',
     "allow_run[0]: 'no-such-program-posix-shim' is not a program on the host's PATH"),
])
def test_a_malformed_allow_run_names_file_key_and_problem(tmp_path: Path, value: str, problem: str) -> None:
    file = tmp_path / "p.toml"
    file.write_text(f"allow_run = {value}\n")
    with pytest.raises(policy.PolicyError) as caught:
        policy.parse([f"--policy={file}"], cwd=str(tmp_path))
    assert str(caught.value).startswith(f"{file}: {problem}"), str(caught.value)


def test_an_unknown_program_on_the_command_line_stops_the_run(tmp_path: Path) -> None:
    r = run_shim(["--allow-run=no-such-program-posix-shim", "-c", "print('ran')"], cwd=tmp_path)
    assert r.returncode == 2 and b"ran" not in r.stdout
    assert b"--allow-run: 'no-such-program-posix-shim' is not a program on the host's PATH" in r.stderr
