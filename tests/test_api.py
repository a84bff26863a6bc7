"""The two front doors: the `Enclave` library API, and the runner that runs programs the way `python` does.

Runner tests compare against `python` itself: sys.argv, sys.path[0], __file__, __name__, tracebacks, exit
statuses and messages must be what a user gets natively, byte for byte.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_native, run_shim

from ocall_bridge.access import ALLOW_ALL
from posix_shim import Enclave, EnclaveCallError, EnclaveStateError

# -- the library API ----------------------------------------------------------------------------------------


@pytest.fixture
def ecall_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module the enclave imports by name for its ecalls (importable in this process and in a child)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "posix_shim_ecalls.py").write_text(textwrap.dedent("""
        import os

        def add(a, b):
            return a + b

        def echo(*args, **kwargs):
            return list(args)

        def summarize(path):
            with open(path, "rb") as f:
                data = f.read()
            return {"size": len(data), "lines": data.count(b"\\n"), "head": data[:5], "ok": True, "none": None,
                    "ratio": 0.5, "nested": [1, (2, 3), {"k": "v"}]}

        def write(path, text):
            with open(path, "w") as f:
                f.write(text)
            return os.path.getsize(path)

        def fail():
            raise ValueError("no good: " + "x" * 3)

        def not_plain():
            return {"fn": os.stat}

        def bad_key():
            return {1: "one"}

        def cwd():
            return os.getcwd()

        class Namespace:
            @staticmethod
            def inner(x):
                return x * 2
    """))
    # Second on sys.path: the runner sets sys.path[0] for each run, as python does.
    monkeypatch.setattr(sys, "path", [sys.path[0], str(lib), *sys.path[1:]])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(lib), os.environ.get("PYTHONPATH", "")]))
    yield "posix_shim_ecalls"
    sys.modules.pop("posix_shim_ecalls", None)


def test_lifecycle_created_running_finalized(backend: str) -> None:
    enclave = Enclave(ALLOW_ALL, backend=backend)
    assert enclave.state == "created" and "created" in repr(enclave)
    with enclave as entered:
        assert entered is enclave and enclave.state == "running"
        assert enclave.run_code("pass") == 0
    assert enclave.state == "finalized"
    for attempt in (lambda: enclave.run_code("pass"), lambda: enclave.run_path("x.py"),
                    lambda: enclave.run_module("json.tool"), lambda: enclave.call("os:getcwd"),
                    lambda: enclave.start(), lambda: enclave.__enter__()):
        with pytest.raises(EnclaveStateError, match="finalized"):
            attempt()
    enclave.close()  # closing twice is harmless
    assert enclave.state == "finalized"


def test_start_and_close_without_a_with_block(backend: str) -> None:
    enclave = Enclave(ALLOW_ALL, backend=backend).start()
    try:
        assert enclave.state == "running"
        assert enclave.start() is enclave  # already running: nothing happens
        assert enclave.run_code("import sys; sys.exit(0)") == 0
    finally:
        enclave.close()
    assert enclave.state == "finalized"
    with pytest.raises(EnclaveStateError):
        enclave.run_code("pass")


def test_a_created_enclave_starts_on_first_use(backend: str) -> None:
    enclave = Enclave(ALLOW_ALL, backend=backend)
    try:
        assert enclave.run_code("pass") == 0
        assert enclave.state == "running"
    finally:
        enclave.close()


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        Enclave(backend="sgx-hardware")


@pytest.mark.parametrize(("code", "status"), [
    ("pass", 0), ("import sys; sys.exit()", 0), ("import sys; sys.exit(None)", 0), ("import sys; sys.exit(3)", 3),
    ("raise SystemExit(256 + 7)", 7), ("import sys; sys.exit(-1)", 255), ("import sys; sys.exit(True)", 1),
    ("import sys; sys.exit('message')", 1), ("raise ValueError('x')", 1), ("1/0", 1),
])
def test_run_code_exit_statuses(backend: str, code: str, status: int) -> None:
    with Enclave(ALLOW_ALL, backend=backend) as enclave:
        assert enclave.run_code(code) == status


def test_run_path_and_run_module_statuses_and_arguments(backend: str, tmp_path: Path,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "prog.py"
    out = tmp_path / "out.txt"
    script.write_text(f"import sys\nopen({str(out)!r}, 'w').write(repr(sys.argv))\nsys.exit(len(sys.argv))\n")
    with Enclave(ALLOW_ALL, backend=backend) as enclave:
        assert enclave.run_path(str(script), ["a", "b"]) == 3
        assert out.read_text() == repr([str(script), "a", "b"])
        assert enclave.run_path(script) == 1  # a Path works too
        assert enclave.run_module("json.tool", ["--help"]) == 0
        assert enclave.run_module("posix_shim_no_such_module_xyz") == 1
        assert enclave.run_code("import sys; print('args', sys.argv)", ["x"]) == 0
    out_text, err_text = capfd.readouterr()
    assert "usage:" in out_text and "args ['-c', 'x']" in out_text
    assert "No module named posix_shim_no_such_module_xyz" in err_text


def test_state_persists_between_runs_of_one_enclave(backend: str, tmp_path: Path) -> None:
    """One enclave is one process image: its cwd and fds outlive a run; the host's cwd is never changed."""
    (tmp_path / "sub").mkdir()
    host_cwd = os.getcwd()
    with Enclave(ALLOW_ALL, backend=backend) as enclave:
        assert enclave.run_code(f"import os; os.chdir({str(tmp_path / 'sub')!r})") == 0
        assert enclave.run_code("import os; open('made-here', 'w').close()") == 0
    assert (tmp_path / "sub" / "made-here").exists()
    assert os.getcwd() == host_cwd


def test_call_returns_plain_data(backend: str, ecall_module: str, tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_bytes(b"one\ntwo\nthree\n")
    with Enclave(ALLOW_ALL, backend=backend) as enclave:
        assert enclave.call(f"{ecall_module}:add", 2, 3) == 5
        assert enclave.call(f"{ecall_module}:add", "en", "clave") == "enclave"
        assert enclave.call(f"{ecall_module}:echo", None, True, 1.5, b"\x00\xff", [1, [2]], {"a": {"b": 1}}) == [
            None, True, 1.5, b"\x00\xff", [1, [2]], {"a": {"b": 1}}]
        summary = enclave.call(f"{ecall_module}:summarize", str(data))
        assert summary["size"] == 14 and summary["lines"] == 3 and summary["head"] == b"one\nt"
        assert summary["nested"][2] == {"k": "v"} and summary["none"] is None
        assert enclave.call(f"{ecall_module}:write", str(tmp_path / "w.txt"), "written inside") == 14
        assert enclave.call(f"{ecall_module}:Namespace.inner", 21) == 42
    assert (tmp_path / "w.txt").read_text() == "written inside"


def test_call_refuses_what_is_not_plain_data(backend: str, ecall_module: str) -> None:
    with Enclave(ALLOW_ALL, backend=backend) as enclave:
        for bad in (object(), {1: "int key"}, [set()], (lambda: 0), os.stat):
            with pytest.raises(TypeError, match="plain data|keys must be str"):
                enclave.call(f"{ecall_module}:echo", bad)
        for target in ("not_plain", "bad_key"):
            with pytest.raises(EnclaveCallError) as info:
                enclave.call(f"{ecall_module}:{target}")
            assert info.value.type_name == "TypeError"
        # The enclave is still usable after a refusal.
        assert enclave.call(f"{ecall_module}:add", 1, 1) == 2


def test_call_reports_exceptions_raised_inside(backend: str, ecall_module: str) -> None:
    with Enclave(ALLOW_ALL, backend=backend) as enclave:
        with pytest.raises(EnclaveCallError) as info:
            enclave.call(f"{ecall_module}:fail")
        err = info.value
        assert (err.type_name, err.message) == ("ValueError", "no good: xxx")
        assert str(err) == "ValueError: no good: xxx"
        assert "in fail" in err.traceback_text and "ValueError: no good: xxx" in err.traceback_text
        with pytest.raises(EnclaveCallError) as info:
            enclave.call("posix_shim_no_such_module_xyz:f")
        assert info.value.type_name == "ModuleNotFoundError"
        with pytest.raises(EnclaveCallError) as info:
            enclave.call(f"{ecall_module}:no_such_function")
        assert info.value.type_name == "AttributeError"


@pytest.mark.parametrize("target", ["no_colon", ":f", "m:", ""])
def test_call_target_must_name_module_and_function(backend: str, target: str) -> None:
    with Enclave(ALLOW_ALL, backend=backend) as enclave:
        with pytest.raises((ValueError, EnclaveCallError), match="module:function"):
            enclave.call(target)


def test_call_runs_inside_the_enclave(backend: str, ecall_module: str, tmp_path: Path) -> None:
    with Enclave(ALLOW_ALL, backend=backend) as enclave:
        enclave.run_code(f"import os; os.chdir({str(tmp_path)!r})")
        assert enclave.call(f"{ecall_module}:cwd") == str(tmp_path)


# -- the runner: as python runs things ---------------------------------------------------------------------

SHOW = ("import sys\n"
        "g = globals()\n"
        "print(repr(sys.argv), repr(sys.path[0]), repr(g.get('__file__')), __name__, repr(__package__),\n"
        "      repr(__spec__ and __spec__.name), repr(g.get('__cached__')), type(__loader__).__name__,\n"
        "      type(__builtins__).__name__, sorted(k for k in g if k.startswith('__')),\n"
        "      sys.modules['__main__'].__dict__ is g, __doc__)\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with a script, a package with __main__, a module in a package and a runnable directory."""
    (tmp_path / "show.py").write_text('"""Doc of show."""\n' + SHOW)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(SHOW)
    (pkg / "mod.py").write_text(SHOW)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text(SHOW)
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "show.py", tmp_path / "sub" / "linked.py")
    return tmp_path


RUNS = [
    ["show.py", "a", "b c"], ["./show.py"], ["sub/../show.py"], ["sub/linked.py", "-x"], ["-m", "pkg.mod", "z"],
    ["-m", "pkg", "--flag"], ["-m", "pkg.__main__"], ["app"], ["./app/"], ["-c", SHOW, "1", "2"], ["-c", SHOW],
]


@pytest.mark.parametrize("args", RUNS, ids=lambda a: " ".join(a)[:30])
def test_argv_path_file_and_name_are_native(backend: str, project: Path, args: list[str]) -> None:
    inside = run_shim(args, backend=backend, cwd=project)
    native = run_native(args, cwd=project)
    assert inside.stderr == native.stderr
    assert inside.stdout == native.stdout and inside.stdout
    assert inside.returncode == native.returncode == 0


def test_absolute_script_path_is_native(backend: str, project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = [str(project / "show.py"), "arg"]
    inside, native = run_shim(args, backend=backend, cwd=elsewhere), run_native(args, cwd=elsewhere)
    assert (inside.stdout, inside.stderr) == (native.stdout, native.stderr)


TRACEBACKS = {
    "chained": ("def f():\n    raise ValueError('boom')\ntry:\n    f()\nexcept ValueError as e:\n"
                "    raise KeyError(1) from e\n"),
    "context": "try:\n    {}['k']\nexcept KeyError:\n    int('x')\n",
    "syntax": "x = (\n",
    "indent": "def f():\nreturn 1\n",
    "os error": "import os\nos.listdir('missing-dir')\n",
    "open error": "open('missing-file')\n",
    "via opener": "def opener(p, f):\n    raise RuntimeError('from the opener')\nopen('x', 'w', opener=opener)\n",
    "deep": "import json\njson.loads('{')\n",
    "group": "raise ExceptionGroup('many', [ValueError(1), TypeError(2)])\n",
    "notes": "e = ValueError('v')\ne.add_note('a note')\nraise e\n",
    "keyboard": "raise KeyboardInterrupt\n",
    "exit message": "raise SystemExit('bye now')\n",
    "excepthook": ("import sys\n"
                   "sys.excepthook = lambda t, v, tb: print('hook', t.__name__, v, tb.tb_frame.f_code.co_name)\n"
                   "raise LookupError('seen by the hook')\n"),
    "syntax multiline": "x = [1,\n     2,\n",
    "syntax unicode": "é = 1 +\n",
    "syntax string": "s = 'abc\n",
    "syntax character": "x = 1 \u00a7 2\n",
    "syntax call": "print 'hello'\n",
    "tab error": "if True:\n\tx = 1\n        y = 2\n",
    "thread": ("import threading\ndef work():\n    raise ValueError('in a thread')\n"
               "t = threading.Thread(target=work, name='worker')\nt.start()\nt.join()\nprint('main goes on')\n"),
    "unraisable": ("class C:\n    def __del__(self):\n        raise RuntimeError('in __del__')\n"
                   "c = C()\ndel c\nprint('after')\n"),
    "hook is default": "import sys, threading\nprint(sys.excepthook is sys.__excepthook__, "
                       "threading.excepthook is threading.__excepthook__)\nraise OSError(2, 'x', 'y')\n",
    "recursion": "import sys\nprint(sys.getrecursionlimit())\ndef r(n):\n    return r(n + 1)\nr(0)\n",
}


# Every program as a script; the ways the runner's own frames sit differently (-m goes through runpy, -c has no
# source file) on a representative few.
CASES = [(name, "script") for name in sorted(TRACEBACKS)] + [
    (name, how) for how in ("module", "code") for name in ("chained", "syntax", "thread", "recursion")]


@pytest.mark.parametrize(("name", "how"), CASES)
def test_uncaught_exceptions_print_the_native_traceback(backend: str, tmp_path: Path, name: str, how: str) -> None:
    (tmp_path / "prog.py").write_text(TRACEBACKS[name])
    args = {"script": ["prog.py"], "module": ["-m", "prog"], "code": ["-c", TRACEBACKS[name]]}[how]
    inside, native = run_shim(args, backend=backend, cwd=tmp_path), run_native(args, cwd=tmp_path)
    if name == "keyboard":
        # Natively the interpreter re-raises SIGINT on itself (status -2); the runner reports 130 = 128 + SIGINT,
        # what a shell shows for it.  The traceback is the same.
        assert native.returncode in (-2, 130) and inside.returncode in (-2, 130)
    else:
        assert inside.returncode == native.returncode
        assert inside.returncode != 0 or name in ("excepthook", "thread", "unraisable")
    addresses = re.compile(r"0x[0-9a-f]+")  # object reprs differ between any two runs
    assert addresses.sub("0x?", inside.stderr.decode()) == addresses.sub("0x?", native.stderr.decode())
    assert inside.stdout == native.stdout


def test_stdin_flows_in(backend: str, tmp_path: Path) -> None:
    code = "import sys; data = sys.stdin.read(); print(len(data), data.upper(), end='')"
    inside = run_shim(["-c", code], backend=backend, cwd=tmp_path, input=b"data from a pipe\n")
    assert inside.returncode == 0 and inside.stdout == b"17 DATA FROM A PIPE\n"
    binary = bytes(range(256)) * 1000
    code = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])"
    inside = run_shim(["-c", code], backend=backend, cwd=tmp_path, input=binary)
    assert inside.stdout == binary[::-1]
    lines = "import sys\nfor line in sys.stdin:\n    print(line.strip()[::-1])\n"
    inside = run_shim(["-c", lines], backend=backend, cwd=tmp_path, input=b"abc\ndef\n")
    assert inside.stdout == b"cba\nfed\n"
    inside = run_shim(["-c", "print(input('> '))"], backend=backend, cwd=tmp_path, input=b"typed\n")
    assert inside.stdout == run_native(["-c", "print(input('> '))"], cwd=tmp_path, input=b"typed\n").stdout


def test_program_text_from_stdin_runs_as_python_dash(backend: str, tmp_path: Path) -> None:
    prog = (SHOW + "raise ValueError('from stdin')\n").encode()
    inside = run_shim(["-", "a", "b"], backend=backend, cwd=tmp_path, input=prog)
    native = run_native(["-", "a", "b"], cwd=tmp_path, input=prog)
    assert (inside.returncode, inside.stdout, inside.stderr) == (native.returncode, native.stdout, native.stderr)
    assert inside.stdout.startswith(b"['-', 'a', 'b'] ''") and b'File "<stdin>", line' in inside.stderr


def test_a_missing_script_is_cpython_s_message_and_status_2(backend: str, tmp_path: Path) -> None:
    for name in ("missing.py", "./missing.py", "sub/../missing.py", str(tmp_path / "nope.py")):
        inside, native = run_shim([name], backend=backend, cwd=tmp_path), run_native([name], cwd=tmp_path)
        assert inside.returncode == native.returncode == 2
        assert inside.stderr == native.stderr
        assert b"can't open file" in inside.stderr


def test_a_missing_module_is_cpython_s_message(backend: str, tmp_path: Path) -> None:
    for args in (["-m", "posix_shim_nope_xyz"], ["-m", "json.nope_xyz"], ["-m", "json"]):
        inside, native = run_shim(args, backend=backend, cwd=tmp_path), run_native(args, cwd=tmp_path)
        assert (inside.returncode, inside.stderr) == (native.returncode, native.stderr)
        assert inside.returncode == 1


def test_a_directory_without_main_is_cpython_s_message(backend: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    inside, native = run_shim(["empty"], backend=backend, cwd=tmp_path), run_native(["empty"], cwd=tmp_path)
    assert (inside.returncode, inside.stderr) == (native.returncode, native.stderr)


def test_non_daemon_threads_finish_before_exit(backend: str, tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import threading, time
        def late():
            time.sleep(0.3)
            with open("late.txt", "w") as f:
                f.write("written by a thread after main returned")
            print("thread done", flush=True)
        threading.Thread(target=late).start()
        print("main done", flush=True)
    """)
    inside = run_shim(["-c", code], backend=backend, cwd=tmp_path)
    assert inside.returncode == 0, inside.stderr.decode()
    assert inside.stdout == b"main done\nthread done\n"
    assert (tmp_path / "late.txt").read_text() == "written by a thread after main returned"


def test_future_imports_of_the_runner_do_not_leak_into_programs(backend: str, tmp_path: Path) -> None:
    code = "def f(a: int) -> str: pass\nprint(f.__annotations__)\n"
    (tmp_path / "ann.py").write_text(code)
    for args in (["-c", code], ["ann.py"], ["-m", "ann"]):
        inside = run_shim(args, backend=backend, cwd=tmp_path)
        assert inside.stdout == b"{'a': <class 'int'>, 'return': <class 'str'>}\n", inside.stderr


def test_output_order_of_stdout_and_stderr_is_kept(backend: str, tmp_path: Path) -> None:
    code = "import sys\nprint('one')\nsys.stdout.flush()\nprint('two', file=sys.stderr)\nprint('three')\n"
    inside = run_shim(["-c", code], backend=backend, cwd=tmp_path)
    assert (inside.stdout, inside.stderr) == (b"one\nthree\n", b"two\n")


def test_options_come_before_the_program_and_its_arguments_pass_through(backend: str, tmp_path: Path) -> None:
    code = "import sys; print(sys.argv)"
    inside = run_shim(["-A", "-c", code, "-A", "--backend", "x", "-m", "y"], backend=backend, cwd=tmp_path)
    assert inside.stdout == b"['-c', '-A', '--backend', 'x', '-m', 'y']\n"
    inside = run_shim(["--allow-all", "-c", code], backend=backend, cwd=tmp_path)
    assert inside.returncode == 0


def test_the_console_script_is_the_same_command(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("posix-shim")
    if not exe.exists():
        pytest.skip("the posix-shim console script is not installed next to this interpreter")
    import subprocess

    done = subprocess.run([str(exe), "-c", "import sys; print(sys.argv)", "x"], capture_output=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == b"['-c', 'x']\n"


def test_nothing_to_run_is_a_usage_error(tmp_path: Path) -> None:
    done = run_shim([], cwd=tmp_path)
    assert done.returncode == 2 and b"usage:" in done.stderr


def test_the_default_enclave_is_confined_and_gets_the_default_policy(tmp_path: Path) -> None:
    # Secure by default: no backend named -> the kernel-confined process backend; no policy -> the command
    # line's default policy (the current directory, the Python installation), never allow-all.
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the enclave")
    with Enclave() as enclave:
        assert enclave.backend_name == "process"
        with pytest.raises(EnclaveCallError) as err:
            enclave.call("builtins:open", str(outside))
    assert err.value.type_name == "PolicyDenied" and "--allow-read" in err.value.message


def test_the_trusted_runtime_used_with_no_enclave_says_so() -> None:
    """enclave_libc called outside any enclave fails with a message naming the cause, not 'NoneType has no ...'."""
    from enclave_libc import files, runtime

    assert not runtime.active()
    with pytest.raises(runtime.NoEnclave, match=r"no enclave is active \(enclave_libc\.runtime\.RT\.\w+ used"):
        files.open(b"/etc/hostname", os.O_RDONLY)
    # An AttributeError still, as when "no enclave" was None: getattr with a default keeps working.
    assert getattr(runtime.RT, "access", "default") == "default"
