"""The pytest plugin, as a user runs it: a small project of their own, `pytest --enclave[=sim|process]` on it.

Each run is a real `python -m pytest` in a subprocess on a project built in tmp_path (a module, a test file, a
pyproject with [tool.posix_shim]).  The project's tests cover what the plugin promises - tmp_path, capsys,
monkeypatch, assertion rewriting, a grant from pyproject, marks that widen and narrow the policy, a library that
swallows the PermissionError - and one of them reads a file the policy does not grant.  The same project run
without --enclave is the negative control: there the ungranted read succeeds, so it is the enclave that fails
it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from posix_shim.pytest_plugin.process_session import RESTART_STATUS, inner_args

REPO = Path(__file__).resolve().parents[1]


def make_project(root: Path) -> Path:
    """A project as a user would have it, plus a secret outside it and a shared folder its policy grants."""
    secret = root / "outside" / "secret.txt"
    secret.parent.mkdir(parents=True)
    secret.write_text("s3cret\n")
    shared = root / "shared"
    shared.mkdir()
    (shared / "greeting.txt").write_text("hello from shared\n")
    proj = root / "proj"
    (proj / "tests").mkdir(parents=True)
    (proj / "pyproject.toml").write_text(textwrap.dedent("""\
        [tool.pytest.ini_options]
        testpaths = ["tests"]

        [tool.posix_shim]
        read.allow = ["../shared"]
        """))
    (proj / "mylib.py").write_text(textwrap.dedent(f"""\
        import os

        SECRET = {str(secret)!r}
        HERE = os.path.dirname(os.path.abspath(__file__))


        def count_words(path):
            with open(path) as f:
                return len(f.read().split())


        def greeting():
            with open(os.path.join(HERE, "..", "shared", "greeting.txt")) as f:
                return f.read().strip()


        def secret():
            with open(SECRET) as f:
                return f.read().strip()


        def secret_or_complain():
            try:
                return secret()
            except OSError:
                raise ValueError("the configuration could not be loaded") from None
        """))
    (proj / "tests" / "test_lib.py").write_text(textwrap.dedent("""\
        import os

        import pytest

        import mylib


        def test_words_in_tmp_path(tmp_path):
            p = tmp_path / "a.txt"
            p.write_text("one two three")
            assert mylib.count_words(p) == 3
            assert sorted(os.listdir(tmp_path)) == ["a.txt"]


        def test_capsys(capsys):
            print("to capsys")
            assert capsys.readouterr().out == "to capsys\\n"


        def test_monkeypatch(monkeypatch):
            monkeypatch.setattr(mylib, "SECRET", "patched")
            monkeypatch.setenv("MYLIB_MODE", "test")
            assert mylib.SECRET == "patched" and os.environ["MYLIB_MODE"] == "test"


        def test_shared_folder_granted_by_pyproject():
            assert mylib.greeting() == "hello from shared"


        def test_assertion_rewriting():
            assert mylib.count_words(__file__) == 1


        def test_reads_the_secret():
            assert mylib.secret() == "s3cret"


        def test_library_swallows_the_denial():
            assert mylib.secret_or_complain() == "s3cret"


        @pytest.mark.enclave(allow_read=[mylib.SECRET])
        def test_secret_granted_by_mark():
            assert mylib.secret() == "s3cret"


        @pytest.mark.enclave(deny_read=["mylib.py"])
        def test_mark_denies_a_file():
            with pytest.raises(PermissionError, match="denied by --deny-read="):
                mylib.count_words(mylib.__file__)


        @pytest.mark.enclave(backend="sim")
        def test_enclave_fixture(enclave, tmp_path):
            app = tmp_path / "app.py"
            app.write_text("import sys; print('from the app'); sys.exit(3)")
            assert enclave.run_path(str(app)) == 3
        """))
    return proj


def run_pytest(proj: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTEST_ADDOPTS", None)
    # -p: the plugin whether or not the pytest11 entry point is installed (its name is the module's, so an
    # installed one is not registered twice).
    cmd = [sys.executable, "-m", "pytest", "-p", "posix_shim.pytest_plugin", "-p", "no:cacheprovider",
           "-p", "no:fakefs", "-p", "no:benchmark", "-o", "console_output_style=classic", *args]
    return subprocess.run(cmd, cwd=proj, capture_output=True, text=True, env=env, timeout=timeout)


def outcomes(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """test name -> PASSED/FAILED/SKIPPED/ERROR, from `-rA`'s short summary."""
    found = {}
    for m in re.finditer(r"^(PASSED|FAILED|SKIPPED|ERROR) (?:\[\d+\] )?(?:(?:tests/)?test_\w+\.py(?::\d+)?(?:::)?)?"
                         r"(\w*)", proc.stdout, re.M):
        found[m.group(2) or m.group(0)] = m.group(1)
    return found


PASS_INSIDE = {"test_words_in_tmp_path", "test_capsys", "test_monkeypatch", "test_shared_folder_granted_by_pyproject",
               "test_secret_granted_by_mark", "test_mark_denies_a_file"}
FAIL_INSIDE = {"test_assertion_rewriting", "test_reads_the_secret", "test_library_swallows_the_denial"}


@pytest.mark.parametrize("backend", ["sim", "process"])
def test_sample_project_passes_inside_and_the_ungranted_read_names_the_flag(tmp_path: Path, backend: str) -> None:
    proj = make_project(tmp_path)
    traces = tmp_path / "traces"
    proc = run_pytest(proj, f"--enclave={backend}", f"--enclave-trace={traces}", "-rA")
    out = proc.stdout
    got = outcomes(proc)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert {t for t, o in got.items() if o == "PASSED"} >= PASS_INSIDE, out
    assert {t for t, o in got.items() if o == "FAILED"} == FAIL_INSIDE, out
    fixture = got.get("test_enclave_fixture")
    if backend == "sim":
        assert fixture == "PASSED", out
        assert re.search(r"3 failed, 7 passed in ", out), out
    else:
        # backend="sim" mark: skipped under --enclave=process, saying why
        assert "tests/test_lib.py:53: @pytest.mark.enclave(backend='sim'): runs with --enclave=sim" in out, out
        assert re.search(r"3 failed, 6 passed, 1 skipped in ", out), out
        # The mark's grant reached the host's bound through one restart, announced on stderr.
        assert "restarting the session with the grants of 2 @pytest.mark.enclave mark" in proc.stderr

    secret = str(tmp_path / "outside" / "secret.txt")
    denial = f"no read access to {secret} (allow with --allow-read={secret}, or add it to read.allow in " \
             f"{proj / 'pyproject.toml'})"
    # The failing test shows the policy's denial, naming the flag, at the library line that made the call
    # (the runtime's own frames are not in the traceback) ...
    assert f"PolicyDenied: posix_shim: open('{secret}') denied: {denial}" in out, out
    assert "mylib.py:18: PolicyDenied" in out, out
    assert "enclave_libc/" not in out.split("= FAILURES =")[1].split("short test summary")[0], out
    # ... and a report section says it again, for the test whose library turned it into a ValueError too.
    section = out.split("_ test_library_swallows_the_denial _")[1].split("short test summary")[0]
    assert "ValueError: the configuration could not be loaded" in section
    assert "posix_shim policy" in section and f"open() denied: {denial}" in section, section
    assert f"@pytest.mark.enclave(allow_read=['{secret}'])" in section, section
    # Assertion rewriting works as outside: the compared values are shown.
    assert "assert 21 == 1" in out or re.search(r"assert \d+ == 1", out), out
    # --enclave-trace: one trace per failing test, nothing for the passing ones.
    written = sorted(p.name for p in traces.iterdir())
    assert written == sorted(f"tests_test_lib.py_{t}.trace" for t in FAIL_INSIDE), written
    trace = (traces / "tests_test_lib.py_test_reads_the_secret.trace").read_text()
    assert f'open("{secret}", O_RDONLY|O_CLOEXEC' in trace and "EACCES" in trace, trace
    assert f"denied: {denial}" in trace, trace


def test_without_enclave_the_same_project_reads_the_secret(tmp_path: Path) -> None:
    """The negative control: no --enclave, no policy - the ungranted read succeeds and the marks change nothing."""
    proj = make_project(tmp_path)
    proc = run_pytest(proj, "-rA")
    got = outcomes(proc)
    assert got["test_reads_the_secret"] == "PASSED" and got["test_library_swallows_the_denial"] == "PASSED", proc.stdout
    assert got["test_mark_denies_a_file"] == "FAILED", proc.stdout  # no enclave: nothing denies
    assert got["test_enclave_fixture"] == "PASSED", proc.stdout  # the fixture works without --enclave too
    assert "posix_shim policy" not in proc.stdout


def test_enclave_policy_file_replaces_the_pyproject_table(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    secret = tmp_path / "outside" / "secret.txt"
    policy = tmp_path / "tests-policy.toml"
    policy.write_text(f'[read]\nallow = ["{secret}"]\n')
    proc = run_pytest(proj, "--enclave", f"--enclave-policy={policy}", "-rA", "-k", "secret or shared")
    got = outcomes(proc)
    assert got["test_reads_the_secret"] == "PASSED", proc.stdout
    assert got["test_shared_folder_granted_by_pyproject"] == "FAILED", proc.stdout  # the pyproject table is not used
    assert "no read access to" in proc.stdout and "shared/greeting.txt" in proc.stdout


@pytest.mark.parametrize("backend", ["sim", "process"])
def test_a_test_body_cannot_start_a_sim_enclave_inside_the_session(tmp_path: Path, backend: str) -> None:
    """A sim enclave started inside another would run its host inside it, and leaving it would take the
    interposition away from the session's enclave (every later test unconfined): it is refused, the test says why,
    and the session goes on confined.  A test using the `enclave` fixture is not wrapped on sim."""
    # A readable file outside the project (not /etc/passwd: the default policy grants libc's configuration)
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret\n")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "test_nest.py").write_text(textwrap.dedent(f"""\
        import pytest
        from posix_shim import Enclave

        @pytest.mark.enclave(backend="sim")
        def test_fixture(enclave):
            assert enclave.run_code("pass") == 0

        def test_direct_nested():
            with Enclave(backend="sim") as e:
                assert e.run_code("pass") == 0

        def test_still_confined_after():
            with pytest.raises(PermissionError):
                open({str(secret)!r})
        """))
    proc = run_pytest(proj, f"--enclave={backend}", "-rA")
    got = outcomes(proc)
    assert got["test_direct_nested"] == "FAILED" and got["test_still_confined_after"] == "PASSED", proc.stdout
    assert got.get("test_fixture", "SKIPPED") == ("PASSED" if backend == "sim" else "SKIPPED"), proc.stdout
    assert "EnclaveStateError: a sim enclave cannot be started by code running inside an enclave" in proc.stdout


def test_a_sim_enclave_starts_outside_and_not_inside_another() -> None:
    import types

    from posix_shim import Enclave, EnclaveCallError

    module = types.ModuleType("posix_shim_test_nested")

    def start() -> str:
        with Enclave(backend="sim") as inner:
            return inner.state

    module.start = start  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        assert start() == "running"  # the control: outside any enclave it starts
        with Enclave(backend="sim") as outer, pytest.raises(EnclaveCallError) as info:
            outer.call("posix_shim_test_nested:start")
        assert info.value.type_name == "EnclaveStateError" and "inside an enclave" in info.value.message
    finally:
        del sys.modules[module.__name__]


def test_inner_arguments_drop_only_the_outer_options() -> None:
    args = ["--enclave", "process", "-q", "--enclave-policy", "p.toml", "--enclave-trace=t", "tests/x.py",
            "--enclave=process", "-k", "enclave", "--enclave", "tests/y.py"]
    assert inner_args(args) == ["-q", "tests/x.py", "-k", "enclave", "tests/y.py"]


def test_marks_are_validated(tmp_path: Path) -> None:
    (tmp_path / "test_bad.py").write_text(textwrap.dedent("""\
        import pytest

        @pytest.mark.enclave(allow_reed=["x"])
        def test_typo():
            pass
        """))
    proc = run_pytest(tmp_path, "--enclave=sim")
    assert proc.returncode != 0
    assert "unknown argument 'allow_reed' (known: allow_read," in proc.stdout + proc.stderr


def test_an_unusable_policy_stops_the_session_as_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.posix_shim]\nread.alow = ["data"]\n')
    (tmp_path / "test_a.py").write_text("def test_a():\n    pass\n")
    proc = run_pytest(tmp_path, "--enclave")
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "tool.posix_shim.read: unknown key 'alow' (did you mean 'allow'?)" in proc.stderr


def test_restart_status_is_not_one_of_pytests_own() -> None:
    assert RESTART_STATUS not in {int(code) for code in pytest.ExitCode}
