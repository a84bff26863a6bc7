"""Signed manifests and trusted files: what a signed run refuses, on both backends, with negative controls.

The app imports a module of its own (helper.py) that nothing has loaded before the run, reads a listed data
file, and prints; the attacks change bytes on the host's disk after signing.
"""

from __future__ import annotations

import importlib._bootstrap_external as bx
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("cryptography")
from conftest import REPO, run_shim

from enclave_libc import trusted
from posix_shim import attestation as A

APP = """
import json, sys
import helper
with open("data.txt") as f:
    data = f.read().strip()
print(helper.greet("world"), data, json.dumps(sys.argv[1:]))
"""
HELPER = 'def greet(name):\n    return "hello " + name\n'


def cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posix_shim", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=120)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One signed app, copied fresh into each test's folder (the manifest pins absolute paths, so the copy
    lives at the same place: `tree` restores it before each test)."""
    base = tmp_path_factory.mktemp("signed")
    app = base / "app"
    app.mkdir()
    (app / "app.py").write_text(APP)
    (app / "helper.py").write_text(HELPER)
    (app / "data.txt").write_text("payload\n")
    env = {"POSIX_SHIM_PLATFORM_KEY": str(base / "platform" / "key.pem")}
    assert cli(["keygen", "-o", str(base / "signer.pem")], base, env).returncode == 0
    r = cli(["sign", "app.py", "--key", str(base / "signer.pem"), "--trusted", "data.txt", "-o",
             str(base / "app.manifest.toml")], app, env)
    assert r.returncode == 0, r.stderr
    measurement = re.search(r"measurement ([0-9a-f]{64})", r.stderr).group(1)
    signer = re.search(r"signer ([0-9a-f]{64})", r.stderr).group(1)
    pristine = base / "pristine"
    shutil.copytree(app, pristine)
    return SimpleNamespace(base=base, app=app, manifest=str(base / "app.manifest.toml"), env=env,
                           measurement=measurement, signer=signer, pristine=pristine, sign_output=r.stdout)


@pytest.fixture
def tree(signed: SimpleNamespace) -> SimpleNamespace:
    shutil.rmtree(signed.app)
    shutil.copytree(signed.pristine, signed.app)
    return signed


def run_signed(s: SimpleNamespace, backend: str, *args: str) -> subprocess.CompletedProcess:
    return run_shim(["--manifest", s.manifest, *args], backend=backend, cwd=s.app, env=s.env)


def test_unchanged_tree_prints_what_an_unsigned_run_prints(tree: SimpleNamespace, backend: str) -> None:
    signed = run_signed(tree, backend, "--", "a", "b")
    unsigned = run_shim(["app.py", "a", "b"], backend=backend, cwd=tree.app)
    assert signed.returncode == 0, signed.stderr.decode()
    assert signed.stdout == unsigned.stdout == b'hello world payload ["a", "b"]\n'
    assert tree.sign_output.startswith("hello world payload")  # the learning run ran the program


def test_one_changed_byte_in_an_imported_module_fails_that_import(tree: SimpleNamespace, backend: str) -> None:
    helper = tree.app / "helper.py"
    helper.write_bytes(helper.read_bytes().replace(b"hello", b"hellO"))
    r = run_signed(tree, backend)
    err = r.stderr.decode()
    assert r.returncode == 1 and r.stdout == b""
    assert f"host violation in open: trusted file {helper} does not match the manifest" in err
    assert "import helper" in err and "PermissionError: [Errno 13]" in err
    # Control: the same tampered tree, unsigned, runs the attacker's byte.
    assert run_shim(["app.py"], backend=backend, cwd=tree.app).stdout.startswith(b"hellO world")


def test_changed_data_file_is_refused(tree: SimpleNamespace, backend: str) -> None:
    (tree.app / "data.txt").write_text("forged\n")
    r = run_signed(tree, backend)
    assert r.returncode == 1
    assert "data.txt does not match the manifest" in r.stderr.decode()
    assert "PermissionError" in r.stderr.decode()


def test_cached_bytecode_is_ignored_for_the_verified_source(tree: SimpleNamespace, backend: str) -> None:
    """A __pycache__ entry the importer would accept (right source mtime and size) carrying other code."""
    helper = tree.app / "helper.py"
    st = helper.stat()
    evil = compile('def greet(name):\n    return "pwned " + name\n', str(helper), "exec")
    cache = Path(bx.cache_from_source(str(helper)))
    cache.parent.mkdir(exist_ok=True)
    cache.write_bytes(bx._code_to_timestamp_pyc(evil, st.st_mtime, st.st_size))
    signed = run_signed(tree, backend)
    assert signed.returncode == 0, signed.stderr.decode()
    assert signed.stdout.startswith(b"hello world")
    # Control: an unsigned run loads the planted bytecode.
    assert run_shim(["app.py"], backend=backend, cwd=tree.app).stdout.startswith(b"pwned world")


def test_python_source_the_manifest_does_not_list_is_refused(tree: SimpleNamespace, backend: str,
                                                               tmp_path: Path) -> None:
    """A program with an optional plugin, signed while the plugin did not exist: a plugin planted later on the
    host does not run."""
    (tree.app / "optional.py").write_text(
        "import os\nif os.path.exists('plugin.py'):\n    import plugin\nprint('done')\n")
    manifest = tmp_path / "optional.toml"
    r = cli(["sign", "optional.py", "--key", str(tree.base / "signer.pem"), "-o", str(manifest)], tree.app, tree.env)
    assert r.returncode == 0, r.stderr
    (tree.app / "plugin.py").write_text("print('injected')\n")
    signed = run_shim(["--manifest", str(manifest)], backend=backend, cwd=tree.app, env=tree.env)
    assert signed.returncode == 1 and b"injected" not in signed.stdout
    assert f"{tree.app / 'plugin.py'} is Python source the manifest does not list as trusted" in \
        signed.stderr.decode()
    assert "PermissionError: [Errno 13]" in signed.stderr.decode()
    unsigned = run_shim(["optional.py"], backend=backend, cwd=tree.app)  # control: unsigned, it runs
    assert unsigned.stdout == b"injected\ndone\n"


def test_bad_signature_or_other_runtime_refuses_to_start(tree: SimpleNamespace, tmp_path: Path) -> None:
    text = Path(tree.manifest).read_text()
    forged = tmp_path / "forged.toml"
    forged.write_text(text.replace("debug = false", "debug = true", 1))  # any field: here, the debug flag
    assert forged.read_text() != text
    r = run_shim(["--manifest", str(forged)], cwd=tree.app, env=tree.env)
    assert r.returncode == 2 and r.stdout == b""
    assert "refusing to start" in r.stderr.decode() and "signature does not verify" in r.stderr.decode()
    # A manifest signed (correctly) for another runtime.
    from posix_shim import manifest as M

    m = M.Manifest.from_toml(text)
    m.runtime["hash"] = "0" * 64
    other = tmp_path / "other-runtime.toml"
    other.write_text(M.sign_manifest(m, M.load_signing_key(str(tree.base / "signer.pem"))).to_toml())
    r = run_shim(["--manifest", str(other)], cwd=tree.app, env=tree.env)
    assert r.returncode == 2 and "signed for another posix_shim runtime" in r.stderr.decode()
    r = run_shim(["--manifest", tree.manifest, "--allow-all"], cwd=tree.app, env=tree.env)
    assert r.returncode == 2 and "runs the policy it was signed with" in r.stderr.decode()


def test_signed_enclave_attests_its_measurement(tree: SimpleNamespace, backend: str, tmp_path: Path) -> None:
    """The host's platform puts the manifest's measurement and signer in the quote; the CLI verifies it."""
    key = tree.env["POSIX_SHIM_PLATFORM_KEY"]
    program = (
        "import os\nfrom posix_shim import attestation\n"
        "open('quote.bin', 'wb').write(attestation.report(b'n0nce'))\n"
        "for p in (os.environ['POSIX_SHIM_PLATFORM_KEY'], 'link'):\n"
        "    try:\n        open(p, 'rb').read(); print('READ', p)\n"
        "    except OSError as e:\n        print('refused', e.errno)\n")
    app = tree.app / "attest_app.py"
    app.write_text(program)
    os.symlink(key, tree.app / "link")
    manifest = tmp_path / "m.toml"
    r = cli(["sign", str(app), "--key", str(tree.base / "signer.pem"), "--allow-env=POSIX_SHIM_PLATFORM_KEY",
             "--allow-read", "-o", str(manifest)], tree.app, tree.env)
    assert r.returncode == 0, r.stderr
    measurement = re.search(r"measurement ([0-9a-f]{64})", r.stderr).group(1)
    (tree.app / "quote.bin").unlink()
    run = run_shim(["--manifest", str(manifest)], backend=backend, cwd=tree.app, env=tree.env)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode().split("\n")[:2] == ["refused 13", "refused 13"]  # the key, and a symlink to it
    quote = (tree.app / "quote.bin").read_bytes()
    fields = A.verify(quote, platform_keys=A.platform_public_key(key), measurement=measurement,
                      signer=tree.signer, user_data=b"n0nce")
    assert fields.backend == backend and not fields.debug
    ok = cli(["quote", "verify", "quote.bin", "--measurement", measurement], tree.app, tree.env)
    assert ok.returncode == 0, ok.stderr
    shown = cli(["measure", str(manifest)], tree.app, tree.env)
    assert shown.stdout.startswith(f"measurement {measurement}\nsigner {tree.signer}\n"), shown.stderr
    bad = cli(["quote", "verify", "quote.bin", "--measurement", tree.measurement], tree.app, tree.env)
    assert bad.returncode == 1 and f"expected {tree.measurement}, the quote has {measurement}" in bad.stderr


# -- the check itself, against a host that changes its answer after the check -------------------------------

class _FakeClient:
    def __init__(self, content: list[bytes]) -> None:
        self.content = content  # what the host serves: first answer, then every later one
        self.calls = 0
        self.refused: list[str] = []

        def pread(handle: int, count: int, offset: int) -> bytes:
            data = self.content[min(self.calls // 2, len(self.content) - 1)]
            self.calls += 1
            return data[offset:offset + count]

        def read(handle: int, count: int) -> bytes:
            return self.content[-1][:count]

        self.stubs = SimpleNamespace(open=lambda p, f, m: 7, pread=pread, read=read, close=lambda h: None,
                                     lseek=lambda h, o, w: 0, fstat=lambda h: (0o100644, 1, 1, 1, 0, 0, 999, 0, 0, 0,
                                                                              4096, 1, 0),
                                     sendfile=lambda *a: 0, write=lambda h, d: len(d))

    def _refuse(self, call: str, problem: str, args: tuple = ()) -> OSError:
        self.refused.append(problem)
        return OSError(5, problem)


def test_reads_after_the_check_are_served_from_the_verified_bytes() -> None:
    import hashlib

    good, evil = b"print('good')\n", b"print('evil')\n"
    client = _FakeClient([good, evil])
    stubs = trusted.guard(client, {"/app/m.py": hashlib.sha256(good).hexdigest()})  # type: ignore[arg-type]
    h = stubs.open(b"/app/./m.py", os.O_RDONLY, 0)
    assert stubs.read(h, 100) == good and stubs.pread(h, 4, 5) == b"('go"
    assert stubs.fstat(h)[6] == len(good)
    assert stubs.lseek(h, 0, os.SEEK_END) == len(good)
    assert client.content[-1] == evil  # the host would now answer the swapped bytes ...
    stubs.close(h)
    with pytest.raises(OSError) as err:  # ... and a fresh open sees them and is refused
        stubs.open(b"/app/m.py", os.O_RDONLY, 0)
    assert err.value.errno == 13 and client.refused
    with pytest.raises(OSError) as err:
        stubs.open(b"/app/m.py", os.O_RDWR, 0)
    assert err.value.errno == 13
    with pytest.raises(FileNotFoundError):
        stubs.open(b"/app/__pycache__/m.cpython-311.pyc", os.O_RDONLY, 0)
    # Control: the unguarded stubs hand the program whatever the host serves now.
    assert client.stubs.read(7, 100) == evil


def test_a_host_that_changes_bytes_in_transit_is_caught(tree: SimpleNamespace, backend: str) -> None:
    """The files on disk are intact; the host flips one byte of every pread it answers (--inject lie=flip)."""
    r = run_shim(["--inject", "pread:lie=flip", "--manifest", tree.manifest], backend=backend, cwd=tree.app,
                 env=tree.env)
    err = r.stderr.decode()
    assert r.returncode == 1 and r.stdout == b"", err
    assert re.search(r"host violation in open: trusted file \S+ does not match the manifest", err), err
    assert "PermissionError: [Errno 13]" in err
    # Control: unsigned, the program's reads take the same lie (read is the call FileIO uses) and nothing notices.
    honest = run_shim(["app.py"], backend=backend, cwd=tree.app)
    lied = run_shim(["--inject", "read:lie=flip", "app.py"], backend=backend, cwd=tree.app)
    assert b"host violation" not in lied.stderr
    assert (lied.returncode, lied.stdout) != (honest.returncode, honest.stdout)
