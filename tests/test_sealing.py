"""Sealing (issue 15): keys the host derives from its platform secret and the enclave identity, on every backend.

Programs run through the command line with POSIX_SHIM_PLATFORM_SECRET pointing into the test's folder, so each
test has its own platform.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_shim

SEALER = r'''
import sys
from posix_shim import sealing
action, name = sys.argv[1], sys.argv[2]
if action == "seal":
    with open(name, "wb") as f:
        f.write(sealing.seal(b"the launch codes", bound_to=sys.argv[3], aad=b"v1"))
    print("sealed")
else:
    aad = sys.argv[3].encode() if len(sys.argv) > 3 else b"v1"
    with open(name, "rb") as f:
        blob = f.read()
    try:
        print("unsealed", sealing.unseal(blob, aad=aad))
    except sealing.SealError as e:
        print("SealError", e)
'''


def _env(tmp_path: Path) -> dict[str, str]:
    return {"POSIX_SHIM_PLATFORM_SECRET": str(tmp_path / "platform" / "secret")}


def _run(tmp_path: Path, backend: str, script: str, *args: str, options: list[str] | None = None) -> str:
    result = run_shim([script, *args], backend=backend, cwd=tmp_path, env=_env(tmp_path),
                      options=options if options is not None else ["-A"], timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    (tmp_path / "a.py").write_text(SEALER)
    (tmp_path / "b.py").write_text(SEALER + "# another program: one byte more and the identity differs\n")
    return tmp_path


def test_round_trip_across_runs_and_backends(backend: str, scripts: Path) -> None:
    assert _run(scripts, backend, "a.py", "seal", "blob", "enclave") == "sealed"
    blob = (scripts / "blob").read_bytes()
    assert b"launch" not in blob and len(blob) == 29 + len(b"the launch codes") + 16
    # A later run of the same program under the same policy, on either backend, unseals it.
    for other in ("sim", backend):
        assert _run(scripts, other, "a.py", "unseal", "blob") == "unsealed b'the launch codes'"
    secret = scripts / "platform" / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.stat().st_size == 32
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700


def test_another_identity_cannot_unseal(backend: str, scripts: Path) -> None:
    _run(scripts, backend, "a.py", "seal", "blob", "enclave")
    # Another script: refused.
    assert _run(scripts, backend, "b.py", "unseal", "blob") == (
        "SealError sealed for another enclave identity (or this platform's secret changed): "
        "this enclave cannot unseal it")
    # The same script under another policy is another enclave too.
    out = _run(scripts, backend, "a.py", "unseal", "blob", options=["-A", "--deny-read=/nonexistent"])
    assert out.startswith("SealError sealed for another enclave identity")
    # Another platform (secret): refused as well.
    env = {"POSIX_SHIM_PLATFORM_SECRET": str(scripts / "other-platform")}
    result = run_shim(["a.py", "unseal", "blob"], backend=backend, cwd=scripts, env=env, options=["-A"])
    assert result.stdout.decode().startswith("SealError sealed for another enclave identity")


def test_signer_binding_survives_a_program_update(backend: str, scripts: Path) -> None:
    _run(scripts, backend, "a.py", "seal", "blob", "signer")
    assert _run(scripts, backend, "b.py", "unseal", "blob") == "unsealed b'the launch codes'"
    # ...but not a change of policy (the stand-in signer is the canonical policy).
    out = _run(scripts, backend, "b.py", "unseal", "blob", options=["-A", "--deny-read=/nonexistent"])
    assert out.startswith("SealError sealed for another signer identity")


@pytest.mark.parametrize("where", ["header-kind", "key-id", "nonce", "ciphertext", "tag", "truncated", "aad"])
def test_a_tampered_blob_is_refused(scripts: Path, where: str) -> None:
    _run(scripts, "sim", "a.py", "seal", "blob", "enclave")
    blob = bytearray((scripts / "blob").read_bytes())
    aad = "v1"
    if where == "header-kind":
        blob[8] ^= 1  # claims the signer: its key differs, so the key id no longer matches
    elif where == "key-id":
        blob[9] ^= 1
    elif where == "nonce":
        blob[20] ^= 1
    elif where == "ciphertext":
        blob[30] ^= 0x80
    elif where == "tag":
        blob[-1] ^= 1
    elif where == "truncated":
        del blob[-5:]
    else:
        aad = "v2"
    (scripts / "bad").write_bytes(bytes(blob))
    out = _run(scripts, "sim", "a.py", "unseal", "bad", aad)
    if where in ("header-kind", "key-id"):
        assert out.startswith("SealError sealed for another")
    else:
        assert out == ("SealError sealed blob failed authentication: it was modified, truncated, or the aad "
                       "differs")
    # Negative control: the blob as sealed opens.
    assert _run(scripts, "sim", "a.py", "unseal", "blob") == "unsealed b'the launch codes'"


def test_the_platform_secret_is_never_readable_inside(backend: str, scripts: Path) -> None:
    _run(scripts, backend, "a.py", "seal", "blob", "enclave")  # creates the secret
    secret = scripts / "platform" / "secret"
    (scripts / "peek.py").write_text(
        "import os, sys\n"
        "folder = os.path.dirname(sys.argv[1])\n"
        "for attempt in (lambda: open(sys.argv[1], 'rb').read(), lambda: os.stat(sys.argv[1]),\n"
        "                lambda: os.rename(folder, folder + '-moved'), lambda: os.unlink(sys.argv[1]),\n"
        "                lambda: os.link(sys.argv[1], 'copy'), lambda: open(sys.argv[1], 'wb')):\n"
        "    try:\n"
        "        attempt()\n"
        "        print('reached it')\n"
        "    except PermissionError as e:\n"
        "        print('denied', e.errno, 'platform secret' in str(e))\n"
        "print(os.listdir(folder))\n")
    out = _run(scripts, backend, "peek.py", str(secret))
    assert out.splitlines() == ["denied 13 True"] * 6 + ["['secret']"]
    assert len(secret.read_bytes()) == 32
    # Not -A but a grant of the very folder, and the variable naming the secret not visible inside: the
    # secret's path is the host's fact, so it is still refused.
    out = _run(scripts, backend, "peek.py", str(secret), options=[f"--allow-read={secret.parent}",
                                                                 f"--allow-write={scripts}"])
    assert out.splitlines() == ["denied 13 True"] * 6 + ["['secret']"]


def test_secret_protection_negative_control(scripts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch off exactly the secret's exclusion from the policy: then -A reads it, which is what it prevents."""
    from ocall_bridge import access as access_mod
    from posix_shim import Enclave
    from posix_shim import policy as policy_mod

    monkeypatch.setenv("POSIX_SHIM_PLATFORM_SECRET", str(scripts / "platform" / "secret"))
    secret = scripts / "platform" / "secret"
    secret.parent.mkdir(mode=0o700)
    secret.write_bytes(os.urandom(32))
    code = f"print(len(open({str(secret)!r}, 'rb').read()))"
    rules = policy_mod.parse(["-A"], "code", code)
    with Enclave(policy=rules, backend="sim") as enclave:
        assert enclave.run_code(f"try:\n    {code}\nexcept PermissionError:\n    raise SystemExit(9)") == 9
    monkeypatch.setattr(policy_mod.model, "forbidden", lambda path, kind="read": False)  # Policy.check's copy
    monkeypatch.setattr(access_mod, "forbidden", lambda path, kind="read": False)
    rules = policy_mod.parse(["-A"], "code", code)
    with Enclave(policy=rules, backend="sim") as enclave:
        assert enclave.run_code(f"try:\n    {code}\nexcept PermissionError:\n    raise SystemExit(9)") == 0


def test_sealed_inspect_says_what_a_blob_is_bound_to(scripts: Path) -> None:
    import subprocess
    import sys

    from conftest import REPO
    _run(scripts, "sim", "a.py", "seal", "blob", "signer")
    (scripts / "plain").write_bytes(b"hello")
    result = subprocess.run([sys.executable, "-m", "posix_shim", "sealed", "inspect", "blob", "plain"], cwd=scripts,
                            capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 1
    out = result.stdout.decode().strip()
    assert out.startswith("blob: sealed blob, bound to signer identity, key id ")
    assert out.endswith(", 16 bytes of plaintext")
    assert result.stderr.decode().strip() == "plain: not a posix_shim sealed blob"


IDENTITY_OF_DEFAULT_POLICY = r'''
import builtins, hashlib, sys
from posix_shim import policy
from posix_shim.policy import defaults  # where the default grants are sorted
from ocall_bridge.host.sealing import canonical_policy
if sys.argv[1] == "length-only":  # the negative control: ties between equal-length paths keep the set's order
    defaults.sorted = lambda it, key=None, **kw: builtins.sorted(it, key=len) if key else builtins.sorted(it, **kw)
print(hashlib.sha256(canonical_policy(policy.parse(["--encrypted=vault"], "path", "a.py"))).hexdigest())
'''


@pytest.mark.parametrize("tie_break", ["path", "length-only"])
def test_the_identity_does_not_depend_on_the_hash_seed(tmp_path: Path, tie_break: str) -> None:
    """The sealing identity hashes the canonical policy, so its grants must come out in one order in every run.

    Python installation folders of equal length (here: sys.path entries) were ordered by a set's iteration,
    which follows PYTHONHASHSEED: a later run then derived another key and could not read the encrypted files
    an earlier run wrote (seen on 3.13, where the CI venv's paths tie).
    """
    folders = [tmp_path / name for name in ("aa", "bb", "cc", "dd", "ee", "ff")]
    for f in folders:
        f.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *map(str, folders)]))
    digests = set()
    for seed in range(8):
        env["PYTHONHASHSEED"] = str(seed)
        result = subprocess.run([sys.executable, "-c", IDENTITY_OF_DEFAULT_POLICY, tie_break], env=env, cwd=tmp_path,
                                capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr.decode()
        digests.add(result.stdout.strip())
    if tie_break == "path":
        assert len(digests) == 1
    else:
        assert len(digests) > 1  # without the tie-break, the seed changes the identity


def test_the_kept_policy_hash_follows_the_hosts_policy(tmp_path: Path) -> None:
    """measure() keeps the policy's hash per host; a host given another policy object is measured under that one."""
    from types import SimpleNamespace

    from ocall_bridge.host import sealing as host_sealing
    from posix_shim import policy

    host = SimpleNamespace(access=policy.parse([], "code", "pass"))
    host_sealing.measure(host, "code", "pass")  # type: ignore[arg-type]
    first = host.seal_identity
    host_sealing.measure(host, "code", "pass")  # type: ignore[arg-type]
    assert host.seal_identity == first  # the same program under the same policy: the same identity
    host.access = policy.parse([f"--allow-read={tmp_path}"], "code", "pass")
    host_sealing.measure(host, "code", "pass")  # type: ignore[arg-type]
    assert host.seal_identity["enclave"] != first["enclave"] and host.seal_identity["signer"] != first["signer"]
    assert host.seal_identity == host_sealing.enclave_identity("code", "pass", host.access)
