"""What a start does not do: no cryptography in a process-backend run that never attests or seals, no cffi or
pycparser in its enclave process (the confinement's syscalls go through ctypes).  And what the laziness must not
give up: a sim host, which shares the program's interpreter, still imports the platform's signing code before
any program code runs, so a program cannot hand the host an import of its own choosing (shown with a negative
control that switches exactly that preload off).

No timing is asserted here (benchmarks/startup.py measures it; docs/performance.md has the numbers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(tmp_path), env.get("PYTHONPATH", "")])
    env["POSIX_SHIM_PLATFORM_KEY"] = str(tmp_path / "keys" / "platform-key.pem")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_process_run_imports_no_cryptography_and_its_enclave_no_pycparser(tmp_path: Path) -> None:
    (tmp_path / "mods.py").write_text("import sys\n\ndef loaded(*prefixes):\n"
                                      "    return sorted(m for m in sys.modules if m.startswith(prefixes))\n")
    got = _run("""
        import json, sys
        from posix_shim import Enclave
        from ocall_bridge.access import ALLOW_ALL
        with Enclave(policy=ALLOW_ALL, backend="process").start() as enc:
            status = enc.run_code("pass", [])
            inside = enc.call("mods:loaded", "cryptography", "pycparser", "cffi")
        print(json.dumps({"status": status, "inside": inside,
                          "host": sorted(m for m in sys.modules if m.startswith("cryptography"))}))
    """, tmp_path)
    assert got == {"status": 0, "inside": [], "host": []}


def test_process_host_still_signs_a_quote_when_asked(tmp_path: Path) -> None:
    (tmp_path / "quoting.py").write_text("def quote():\n    from enclave_libc.attest import report\n"
                                         "    return len(report(b'nonce'))\n")
    got = _run("""
        import json
        from posix_shim import Enclave
        from ocall_bridge.access import ALLOW_ALL
        with Enclave(policy=ALLOW_ALL, backend="process").start() as enc:
            print(json.dumps({"quote": enc.call("quoting:quote")}))
    """, tmp_path)
    assert got["quote"] > 64


# A program inside a sim enclave puts a finder first on sys.meta_path that sees (and could replace) every module
# imported from then on, then asks for a quote: the host serves it in this interpreter.
SPY = """
import sys

class Spy:
    seen = []

    def find_spec(self, name, path=None, target=None):
        if name.startswith("cryptography"):
            Spy.seen.append(name)
        return None

def quote_under_spy():
    from enclave_libc.attest import report
    sys.meta_path.insert(0, Spy())
    try:
        report(b"nonce")
    finally:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, Spy)]
    return Spy.seen
"""

SIM_QUOTE = """
    import json, sys
    assert not any(m.startswith("cryptography") for m in sys.modules)
    {switch_off}
    from posix_shim import Enclave
    from ocall_bridge.access import ALLOW_ALL
    with Enclave(policy=ALLOW_ALL, backend="sim").start() as enc:
        print(json.dumps({{"seen": enc.call("spy:quote_under_spy")}}))
"""


def test_sim_host_loads_its_signing_code_before_the_program_runs(tmp_path: Path) -> None:
    (tmp_path / "spy.py").write_text(SPY)
    assert _run(SIM_QUOTE.format(switch_off=""), tmp_path) == {"seen": []}


def test_negative_control_without_the_preload_the_program_sees_the_hosts_import(tmp_path: Path) -> None:
    # Exactly the defence switched off: the in-process host does not preload, so its first quote imports
    # cryptography while the program's finder is installed - the finder could have supplied the module.
    (tmp_path / "spy.py").write_text(SPY)
    off = "import ocall_bridge.host.attest as a; a.preload = lambda: False"
    seen = _run(SIM_QUOTE.format(switch_off=off), tmp_path)["seen"]
    assert any(m.endswith("asymmetric.ed25519") for m in seen), seen


def test_process_enclave_loads_no_native_library_after_confining_itself(tmp_path: Path) -> None:
    # What the runtime needs is loaded before the filter: a library opened later is a native open forwarded to
    # the host (slower, and counted by --inject open:when=N as if the program had made it).
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "posix_shim", "--backend", "process", "--trace", "-c", "pass"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    native_opens = [line for line in done.stderr.splitlines() if "(native openat)" in line]
    assert not [line for line in native_opens if ".so" in line], native_opens


def test_a_host_that_cannot_be_made_leaves_no_enclave_process_behind(tmp_path: Path) -> None:
    # The process backend makes its host while the child boots: when that fails, the child is killed and reaped.
    got = _run("""
        import glob, json
        from posix_shim import Enclave
        from ocall_bridge.access import ALLOW_ALL
        try:
            Enclave(policy=ALLOW_ALL, backend="process", inject=["open:bogus"]).start()
            error = None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        children = [c for f in glob.glob("/proc/self/task/*/children") for c in open(f).read().split()]
        print(json.dumps({"error": error, "children": children}))
    """, tmp_path)
    assert got["error"] and "bogus" in got["error"], got
    assert got["children"] == [], got


def test_frozen_records_behave_as_the_frozen_dataclasses_they_replace() -> None:
    # ocall_bridge/frozen.py stands in for @dataclass(frozen=True) where classes are built at import (start-up
    # cost); whatever the table and the supervisor relied on must hold the same.
    import dataclasses

    import pytest

    from ocall_bridge.frozen import Frozen

    @dataclasses.dataclass(frozen=True)
    class D:
        arg: int
        kind: str = "i32"
        extra: tuple = ()

    class F(Frozen):
        arg: int
        kind: str = "i32"
        extra: tuple = ()

    class G(F):
        more: int = 0

    for args, kwargs in (((1,), {}), ((1, "u32"), {}), ((1,), {"extra": (2,)}), ((), {"arg": 3, "kind": "id"})):
        d, f = D(*args, **kwargs), F(*args, **kwargs)
        assert repr(f).split(".")[-1].replace("F(", "D(", 1) == repr(d).split(".")[-1]  # qualname, then fields
        assert hash(f) == hash(d) and f == F(*args, **kwargs) and vars(f) == vars(d)
    assert F(1) != D(1) and F(1) != G(1) and G(1, "x", (), 5).more == 5 and G.__match_args__ == ("arg", "kind",
                                                                                                 "extra", "more")
    with pytest.raises(dataclasses.FrozenInstanceError):
        F(1).arg = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del F(1).arg  # type: ignore[misc]
    for bad in (lambda: F(), lambda: F(1, kind="x", arg=2), lambda: F(1, nope=2), lambda: F(1, "a", (), 4)):
        with pytest.raises(TypeError):
            bad()
    match F(7, "mode"):
        case F(n, k):
            assert (n, k) == (7, "mode")


# -- the enclave process started early (posix_shim/prestart.py) ------------------------------------------------
EARLY = """
import json, sys
from posix_shim import prestart
prestart.start_early(sys.argv[1:])
early = prestart._early
taken = []
real_take = prestart.take
def take(*args):
    got = real_take(*args)
    taken.append(got is not None)
    return got
prestart.take = take
from posix_shim.cli import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "started": early is not None, "taken": taken,
                  "early_exit": None if early is None else early.proc.poll()}))
"""

GETENV = ("import ctypes; libc = ctypes.CDLL(None); libc.getenv.restype = ctypes.c_char_p; "
          "print(libc.getenv(b'POSIX_SHIM_T_LANG_LIKE'), libc.getenv(b'T_GRANTED'), libc.getenv(b'LC_T_SAFE'))")


def _early_run(tmp_path: Path, *argv: str, extra_env: dict[str, str] | None = None) -> tuple[dict, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra_env or {})
    done = subprocess.run([sys.executable, "-c", EARLY, *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1])


def test_a_default_run_uses_the_enclave_process_started_early(tmp_path: Path) -> None:
    got, out = _early_run(tmp_path, "--allow-ffi", "-c", GETENV,
                          extra_env={"T_GRANTED": "no", "LC_T_SAFE": "yes", "POSIX_SHIM_T_LANG_LIKE": "x"})
    assert got["status"] == 0 and got["started"] and got["taken"] == [True], got
    # Its real environment is the one the policy gives: the runtime's and the default-safe names, not T_GRANTED.
    assert out == "b'x' None b'yes'"


def test_a_run_whose_policy_grants_more_environment_starts_a_fresh_process(tmp_path: Path) -> None:
    # The early process was started with the default environment: it must not serve a policy granting more (its
    # real environment would lack T_GRANTED) - it is killed and reaped, and a process with the right one runs.
    got, out = _early_run(tmp_path, "--allow-ffi", "--allow-env=T_GRANTED", "-c", GETENV,
                          extra_env={"T_GRANTED": "yes", "LC_T_SAFE": "yes", "POSIX_SHIM_T_LANG_LIKE": "x"})
    assert got["status"] == 0 and got["started"] and got["taken"] == [False], got
    assert got["early_exit"] is not None  # reaped, not left behind
    assert out == "b'x' b'yes' b'yes'"


def test_negative_control_the_early_process_taken_regardless_lacks_the_granted_variable(tmp_path: Path) -> None:
    # Exactly the environment comparison switched off: the early process serves the run, and the variable the
    # policy grants is missing from its real environment - what the comparison prevents.
    script = EARLY.replace("got = real_take(*args)", "got = real_take(args[0], prestart._early.env, args[2])")
    env = dict(os.environ, T_GRANTED="yes", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", script, "--allow-ffi", "--allow-env=T_GRANTED", "-c", GETENV],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[-1])["taken"] == [True]
    assert lines[0].split()[1] == "None"


def test_runs_that_need_no_enclave_process_leave_none_behind(tmp_path: Path) -> None:
    for argv in (["--version"], ["--allow-read", "/nonexistent-dir-xyz", "-c", "pass"], ["/nonexistent-script.py"],
                 ["--backend", "sim", "-c", "pass"], ["policy", "check"]):
        script = ("import glob, json, sys\nfrom posix_shim import prestart\nprestart.start_early(sys.argv[1:])\n"
                  "from posix_shim.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
                  "prestart._discard()\n"
                  "kids = [c for f in glob.glob('/proc/self/task/*/children') for c in open(f).read().split()]\n"
                  "print(json.dumps(kids))\n")
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        done = subprocess.run([sys.executable, "-c", script, *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert json.loads(done.stdout.strip().splitlines()[-1]) == [], (argv, done.stdout, done.stderr)


def test_which_command_lines_start_early() -> None:
    from posix_shim.prestart import wanted

    for argv in (["-c", "pass"], ["app.py"], ["-"], ["--allow-read=/x", "-m", "json.tool"], ["--backend", "process",
                                                                                              "app.py"]):
        assert wanted(argv), argv
    for argv in ([], ["policy", "check"], ["compat"], ["keygen", "-o", "k"], ["--backend", "sim", "-c", "pass"],
                 ["--backend=sim", "app.py"], ["--help"], ["--version"], ["--manifest=m.json", "app.py"]):
        assert not wanted(argv), argv
    from posix_shim.prestart import program_run

    # Both backends' program runs pause the collector for their start-up (resumed before the program runs).
    assert program_run(["--backend", "sim", "-c", "pass"]) == "sim" and program_run(["app.py"]) == "process"
    assert program_run(["policy", "check"]) is None and program_run(["--help"]) is None


def test_the_program_runs_with_the_collector_on_in_both_backends(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for backend in ("sim", "process"):
        done = subprocess.run([sys.executable, "-m", "posix_shim", "--backend", backend, "-c",
                               "import gc; print(gc.isenabled())"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert (done.returncode, done.stdout) == (0, "True\n"), (backend, done.stderr)


# -- what a plain run does not load --------------------------------------------------------------------------
HEAVY = ("cryptography", "tomllib", "difflib", "cffi", "pycparser", "argparse", "ssl", "inspect", "logging")
# What each process needs anyway, and so is not asserted absent there: the runner parses its command line
# (argparse) and the table's dataclasses import inspect; the enclave process's TLS family is ssl.
NEEDED = {"host": {"argparse", "inspect", "logging", "ssl"}, "enclave": {"ssl", "inspect", "logging"}}
LOADED = """
import json, sys
from posix_shim.cli import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "host": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)}))
""".replace("HEAVY", repr(HEAVY))
INSIDE = f"import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"


def _loaded(tmp_path: Path, program: str, extra_path: str = "") -> tuple[set[str], set[str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, str(REPO), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run([sys.executable, "-c", LOADED, "-c", program], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    inside, outside = done.stdout.strip().splitlines()[-2:]
    got = json.loads(outside)
    assert got["status"] == 0
    return set(got["host"]), set(json.loads(inside))


def test_a_plain_process_run_loads_none_of_the_heavy_modules_in_either_process(tmp_path: Path) -> None:
    # tmp_path has no pyproject.toml and no policy file: nothing to parse, so no tomllib either.
    host, enclave = _loaded(tmp_path, INSIDE)
    assert not {m.split(".")[0] for m in host} - NEEDED["host"], host
    assert not {m.split(".")[0] for m in enclave} - NEEDED["enclave"], enclave


def test_negative_control_an_eager_import_shows_up_in_both_processes(tmp_path: Path) -> None:
    # The same check sees a heavy module when something does import it at start: a sitecustomize on the path
    # (read by both interpreters) importing difflib and tomllib.
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "sitecustomize.py").write_text("import difflib, tomllib\n")
    host, enclave = _loaded(tmp_path, INSIDE, extra_path=str(site_dir))
    assert {"difflib", "tomllib"} <= host and {"difflib", "tomllib"} <= enclave, (host, enclave)


CYCLE = "class A:\n    def __del__(self):\n        print('collected')\na = A(); a.me = a; del a{after}\n"


def _cycle(tmp_path: Path, after: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "posix_shim", "-c", CYCLE.format(after=after)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_cycle_the_program_dropped_is_still_collected_at_exit(tmp_path: Path) -> None:
    # The enclave process freezes the runtime's objects (gc.freeze) before the program runs: what the program
    # makes stays collectable, so the collection at exit still finalizes a cycle, as a native exit does.
    assert _cycle(tmp_path, "") == "collected\n"


def test_negative_control_a_freeze_after_the_program_made_the_cycle_keeps_it(tmp_path: Path) -> None:
    # Exactly what the placement prevents: objects frozen after the program made them are never collected.
    assert _cycle(tmp_path, "\nimport gc; gc.freeze()") == ""
