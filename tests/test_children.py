"""Python children as new enclaves (enclave_libc/children.py, ocall_bridge/host/children.py, docs/policy.md).

`subprocess.run([sys.executable, ...])` inside an enclave starts a new enclave of the same backend and policy,
with the enclave's pipes as its standard streams; anything but the interpreter stays refused (test_escapes.py);
the host lets no word of the enclave's choosing become a runner option, and waits for or signals only the
children it started.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, printed_in_sim, run_shim

from ocall_bridge.host import children as host_children
from posix_shim import policy


def _run(backend: str, tmp_path: Path, code: str, *options: str) -> subprocess.CompletedProcess:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(code))
    return run_shim([str(script)], backend=backend, cwd=tmp_path, options=list(options), timeout=120)


def test_subprocess_of_the_interpreter_runs_as_a_child_enclave(backend: str, tmp_path: Path) -> None:
    r = _run(backend, tmp_path, """
        import subprocess, sys
        r = subprocess.run([sys.executable, "-c", "import sys; data = sys.stdin.read();"
                            "print('out', data.upper()); sys.stderr.write('err\\\\n'); sys.exit(3)"],
                           input=b"hello", capture_output=True)
        print(r.returncode, r.stdout, r.stderr)
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "3 b'out HELLO\\n' b'err\\n'"


def test_the_child_obeys_the_parents_policy(backend: str, tmp_path: Path) -> None:
    """A path the parent may read, the child may; one the parent may not, the child may not either."""
    granted = tmp_path / "granted"
    granted.mkdir()
    (granted / "data.txt").write_text("granted data")
    secret = tmp_path.parent / f"{tmp_path.name}-secret.txt"
    secret.write_text("secret")
    try:
        child = (f"import pathlib\nprint(pathlib.Path({str(granted / 'data.txt')!r}).read_text())\n"
                 f"try:\n    open({str(secret)!r})\nexcept PermissionError as exc:\n    print('denied', exc.errno)\n")
        work = tmp_path / "work"
        work.mkdir()
        r = _run(backend, work, f"""
            import subprocess, sys
            r = subprocess.run([sys.executable, "-c", {child!r}], capture_output=True, text=True)
            print(r.stdout, end="")
            print(r.stderr, end="")
            """, f"--allow-read={granted}")
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().splitlines() == ["granted data", f"denied {errno.EACCES}"]
    finally:
        secret.unlink()


def test_the_child_starts_in_the_enclaves_working_directory_or_cwd(backend: str, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    r = _run(backend, tmp_path, """
        import os, subprocess, sys
        os.chdir("sub")
        here = subprocess.run([sys.executable, "-c", "import os; print(os.getcwd())"], capture_output=True, text=True)
        up = subprocess.run([sys.executable, "-c", "import os; print(os.getcwd())"], cwd="..", capture_output=True,
                            text=True)
        print(here.stdout.strip(), up.stdout.strip())
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == [str(tmp_path / "sub"), str(tmp_path)]


def test_what_a_child_enclave_cannot_be_given_is_refused_by_name(backend: str, tmp_path: Path) -> None:
    r = _run(backend, tmp_path, """
        import subprocess, sys
        for kwargs in ({"env": {"A": "1"}}, {"preexec_fn": print}, {"start_new_session": True}):
            try:
                subprocess.run([sys.executable, "-c", "1"], **kwargs)
            except OSError as exc:
                print(exc.errno, exc)
        """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines] == [str(errno.ENOSYS)] * 3
    for line, name in zip(lines, ("env=", "preexec_fn=", "start_new_session=True"), strict=True):
        assert "subprocess.Popen()" in line and name in line, line


def test_a_child_can_be_signalled_and_waited_for(backend: str, tmp_path: Path) -> None:
    r = _run(backend, tmp_path, """
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(p.poll())
        p.terminate()
        print(p.wait())
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["None", str(-signal.SIGTERM)]


def test_a_runner_option_in_the_command_line_is_refused(backend: str, tmp_path: Path) -> None:
    r = _run(backend, tmp_path, """
        import subprocess, sys
        try:
            subprocess.run([sys.executable, "--allow-read=/", "-c", "1"])
        except PermissionError as exc:
            print(exc.errno, exc)
        """)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith(f"{errno.EACCES} ") and "'--allow-read=/'" in out, out


# -- the host's checks, with their negative controls (sim, in this process) ---------------------------------

@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("the host's secret")
    return path


def _wide_child(secret: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """From inside a sim enclave that may not read `secret`, ask the host directly (skipping the enclave's own
    check) for a child whose command line carries a runner option granting every read."""
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = textwrap.dedent(f"""
        import os, sys
        from enclave_libc import runtime
        rt = runtime.RT
        words = [sys.executable, "--allow-read", "-c", "print(open({str(secret)!r}).read())"]
        try:
            pid = rt.ocall.spawn(os.fsencode(sys.executable), b"\\0".join(map(os.fsencode, words)), rt.cwd,
                                 -1, rt.fds.get(1).handle, rt.fds.get(2).handle, [])
        except OSError as exc:
            print("refused", exc.errno)
        else:
            print("child status", rt.ocall.waitchild(pid, False)[1])
        """)
    access = policy.parse([], "code", None, cwd=str(secret.parent / "elsewhere"))
    (secret.parent / "elsewhere").mkdir(exist_ok=True)
    return printed_in_sim(access, code, capfd)


def test_the_host_refuses_a_child_command_line_that_would_widen_its_policy(
        secret: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    out = _wide_child(secret, capfd, monkeypatch)
    assert out.splitlines() == [f"refused {errno.EACCES}"]


def test_control_without_the_hosts_check_the_child_gets_a_wider_policy(
        secret: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_children, "python_command", lambda words: words)
    out = _wide_child(secret, capfd, monkeypatch)
    assert "the host's secret" in out and "child status 0" in out, out


def test_the_host_refuses_any_executable_but_its_interpreter() -> None:
    launcher = host_children.Launcher(sys.executable, "sim")
    with pytest.raises(PermissionError, match="only .* may be started as a child enclave"):
        host_children.checked_program(launcher, b"/bin/sh", [b"sh", b"-c", b"true"])
    assert host_children.checked_program(launcher, os.fsencode(sys.executable), [b"python", b"-B", b"-c", b"1"]) \
        == ["-c", "1"]
    assert launcher.command(["-c", "1"], 7) == [sys.executable, "-m", "posix_shim", "--backend=sim", "--spawned=7",
                                                "-c", "1"]


def _signal_other(pid: int, capfd: pytest.CaptureFixture[str]) -> str:
    code = textwrap.dedent(f"""
        from enclave_libc import runtime
        try:
            runtime.RT.ocall.signalchild({pid}, 15)
        except OSError as exc:
            print("refused", exc.errno)
        else:
            print("signalled")
        """)
    return printed_in_sim(policy.parse([], "code", None), code, capfd).strip()


def test_the_host_signals_only_its_own_children(capfd: pytest.CaptureFixture[str]) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _signal_other(other.pid, capfd) == f"refused {errno.ESRCH}"
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_control_without_the_membership_check_another_process_is_signalled(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pidfd = os.pidfd_open(other.pid)
    try:
        # The defence switched off: the host's table of its children claims the other process as one.
        monkeypatch.setattr(host_children, "_state", lambda host: (host_children.threading.Lock(), {other.pid: pidfd}))
        assert _signal_other(other.pid, capfd) == "signalled"
        assert other.wait(30) == -signal.SIGTERM
    finally:
        os.close(pidfd)
        if other.poll() is None:
            other.kill()
            other.wait()


# -- multiprocessing: spawn by default, workers are child enclaves, semaphores held by the hosts ------------

def test_multiprocessing_pool_and_process_pool_executor_work(backend: str, tmp_path: Path) -> None:
    secret = tmp_path.parent / f"{tmp_path.name}-secret.txt"
    secret.write_text("secret")
    try:
        r = _run(backend, tmp_path, f"""
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            def square(x):
                return x * x

            def peek(path):
                try:
                    open(path)
                except PermissionError as exc:
                    return exc.errno
                return "read"

            def main():
                print(multiprocessing.get_start_method())
                with multiprocessing.Pool(2) as pool:
                    print(pool.map(square, range(10)))
                    print(pool.apply_async(peek, ({str(secret)!r},)).get(60))
                with ProcessPoolExecutor(2) as executor:
                    print(list(executor.map(square, range(5))))
                lock = multiprocessing.Lock()
                p = multiprocessing.Process(target=square, args=(3,))
                with lock:
                    p.start()
                p.join(60)
                print(p.exitcode)

            if __name__ == "__main__":
                main()
            """)
    finally:
        secret.unlink()
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["spawn", str([x * x for x in range(10)]), str(errno.EACCES),
                                              str([x * x for x in range(5)]), "0"]


def test_an_explicit_fork_start_method_is_still_refused(backend: str, tmp_path: Path) -> None:
    r = _run(backend, tmp_path, """
        import multiprocessing
        try:
            multiprocessing.get_context("fork").Process(target=print).start()
        except OSError as exc:
            print(exc.errno, exc)
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith(f"{errno.ENOSYS} posix_shim: multiprocessing()"), r.stdout


def _open_foreign(name: str, capfd: pytest.CaptureFixture[str]) -> str:
    code = textwrap.dedent(f"""
        from enclave_libc import runtime
        try:
            runtime.RT.ocall.sem_open(1, 0, 1, {name!r}, False)
        except OSError as exc:
            print("refused", exc.errno)
        else:
            print("opened")
        """)
    return printed_in_sim(policy.parse([], "code", None), code, capfd).strip()


@pytest.fixture
def foreign_semaphore() -> str:
    """A named semaphore some other program on the host made (not through an enclave)."""
    import _multiprocessing

    name = f"/posix-shim-test-foreign-{os.getpid()}"
    sem = _multiprocessing.SemLock(1, 1, 1, name, False)
    yield name
    del sem
    _multiprocessing.sem_unlink(name)


def test_an_enclave_reaches_only_semaphores_enclaves_made(foreign_semaphore: str,
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    assert _open_foreign(foreign_semaphore, capfd) == f"refused {errno.ENOENT}"


def test_control_without_the_hosts_name_prefix_another_programs_semaphore_opens(
        foreign_semaphore: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from ocall_bridge.host import semaphores

    monkeypatch.setattr(semaphores, "real_name", lambda name: name)
    assert _open_foreign(foreign_semaphore, capfd) == "opened"


def test_os_posix_spawn_of_the_interpreter_is_a_child_enclave_too(backend: str, tmp_path: Path) -> None:
    """subprocess takes the posix_spawn path with close_fds=False (3.11/3.12) and with close_fds (3.13)."""
    r = _run(backend, tmp_path, """
        import os, subprocess, sys
        r = subprocess.run([sys.executable, "-c", "print('via posix_spawn')"], close_fds=False, capture_output=True)
        print(r.returncode, r.stdout)
        rd, wr = os.pipe()
        pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "print('direct')"], os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, wr, 1)])
        os.close(wr)
        got = b""
        while chunk := os.read(rd, 100):
            got += chunk
        print(got, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        try:
            os.posix_spawn("/bin/sh", ["sh", "-c", "true"], os.environ)
        except OSError as exc:
            print("refused", exc.errno)
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["0 b'via posix_spawn\\n'", "b'direct\\n' 0", f"refused {errno.ENOSYS}"]
