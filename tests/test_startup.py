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
