"""Encrypted folders (issue 15): what the program reads back is what it wrote, the host holds only ciphertext,
and every kind of tampering the host can do is refused with EIO and a host-violation log.

Each tamper test has its negative control: the same tampering on a plain folder goes unnoticed (the program
reads what the host put there), which is the attack the encryption exists to stop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import program, run_shim

MARKER = "PLAINTEXT-MARKER-51c0"

STDLIB = program("encrypted_stdlib.py")


def _run(tmp_path: Path, backend: str, script: str, *args: str, encrypted: bool = True) -> tuple[str, str]:
    options = ["-A"] + (["--encrypted=vault"] if encrypted else [])
    result = run_shim([script, *args], backend=backend, cwd=tmp_path, options=options, timeout=90,
                      env={"POSIX_SHIM_PLATFORM_SECRET": str(tmp_path / "platform-secret")})
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode(), result.stderr.decode()


def test_stdlib_programs_work_unchanged_and_the_host_sees_no_plaintext(backend: str, tmp_path: Path) -> None:
    (tmp_path / "vault").mkdir()
    (tmp_path / "prog.py").write_text(STDLIB)
    out, _ = _run(tmp_path, backend, "prog.py", "vault")
    assert out.splitlines() == ["fileno refused: True", "os.open refused: 38 True", "link refused: 18",
                                "stdlib ok"]
    names = sorted(p.name for p in (tmp_path / "vault").iterdir())
    assert names == ["app.log", "data.json", "shelf.bak", "shelf.dat", "shelf.dir", "t.csv", "z.zip"]
    for p in (tmp_path / "vault").iterdir():
        raw = p.read_bytes()
        assert raw.startswith(b"PSENC2\0\0"), p.name
        assert MARKER.encode() not in raw and b"INFO event" not in raw and b"row 1" not in raw, p.name
    # Negative control: the same program on a plain folder leaves the plaintext on the host.
    (tmp_path / "plain").mkdir()
    out, _ = _run(tmp_path, backend, "prog.py", "plain", encrypted=False)
    assert out.splitlines()[-1] == "stdlib ok"
    assert MARKER.encode() in (tmp_path / "plain" / "app.log").read_bytes()


RW = r'''
import sys
folder, action, name = sys.argv[1:4]
if action == "write":
    with open(f"{folder}/{name}", "wb") as f:
        f.write(sys.argv[4].encode() * 50000)  # 3 chunks and a bit, for 4-byte words
    print("written")
else:
    try:
        data = open(f"{folder}/{name}", "rb").read()
        print("read", len(data), data[:4].decode())
    except OSError as e:
        print("refused", e.errno, e)
'''

REC = 12 + 65536 + 16
HDR = 112


def _tamper(path: Path, kind: str, other: Path) -> None:
    raw = bytearray(path.read_bytes())
    if kind == "flip":
        raw[HDR + 12 + 100] ^= 0x01  # a bit of chunk 0's ciphertext
    elif kind == "flip-header":
        raw[40] ^= 0x01  # the plaintext size
    elif kind == "truncate":
        del raw[-100:]
    elif kind == "truncate-chunk":
        del raw[HDR + 2 * REC:]  # whole chunks gone
    elif kind == "extend":
        raw += os.urandom(REC)
    elif kind == "swap-chunks":
        a, b = raw[HDR:HDR + REC], raw[HDR + REC:HDR + 2 * REC]
        raw[HDR:HDR + REC], raw[HDR + REC:HDR + 2 * REC] = b, a
    elif kind == "swap-files":
        raw = bytearray(other.read_bytes())
    else:
        raise AssertionError(kind)
    path.write_bytes(bytes(raw))


KINDS = ["flip", "flip-header", "truncate", "truncate-chunk", "extend", "swap-chunks", "swap-files"]


# Every kind on the sim backend, two on the process backend (the checks are the same code; the machine is shared).
@pytest.mark.parametrize("kind,where", [(k, "sim") for k in KINDS] + [("flip", "process"), ("swap-files", "process")])
def test_tampering_is_refused_with_eio_and_logged(where: str, tmp_path: Path, kind: str) -> None:
    backend = where
    (tmp_path / "rw.py").write_text(RW)
    for folder, encrypted in (("vault", True), ("plain", False)):
        (tmp_path / folder).mkdir()
        _run(tmp_path, backend, "rw.py", folder, "write", "a.bin", "AAAA", encrypted=encrypted)
        _run(tmp_path, backend, "rw.py", folder, "write", "b.bin", "BBBB", encrypted=encrypted)
        _tamper(tmp_path / folder / "a.bin", kind, tmp_path / folder / "b.bin")
    out, err = _run(tmp_path, backend, "rw.py", "vault", "read", "a.bin")
    assert out.startswith("refused 5 [Errno 5] posix_shim: host violation in "), out
    assert "encrypted file" in out and "a.bin" in out
    assert "host violation" in err  # the log line
    # Negative control: on a plain folder the host's change is read back as if it were the program's data.
    out, _ = _run(tmp_path, backend, "rw.py", "plain", "read", "a.bin", encrypted=False)
    assert out.startswith("read "), out
    # And the untampered file of the encrypted folder still reads.
    out, _ = _run(tmp_path, backend, "rw.py", "vault", "read", "b.bin")
    assert out.strip() == "read 200000 BBBB"


def test_swapped_files_are_caught_by_the_path_binding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control for the path in the header MAC: without it, a swapped file is accepted."""
    from enclave_libc import encfs_format
    from posix_shim import Enclave
    from posix_shim import policy as policy_mod

    monkeypatch.setenv("POSIX_SHIM_PLATFORM_SECRET", str(tmp_path / "platform-secret"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vault").mkdir()
    rules = policy_mod.parse(["-A", "--encrypted=vault"], "code", RW)

    def attempt() -> int:
        with Enclave(policy=rules, backend="sim") as enclave:
            enclave.run_code(RW, ["vault", "write", "a.bin", "AAAA"])
            enclave.run_code(RW, ["vault", "write", "b.bin", "BBBB"])
        _tamper(tmp_path / "vault" / "a.bin", "swap-files", tmp_path / "vault" / "b.bin")
        with Enclave(policy=rules, backend="sim") as enclave:
            return enclave.run_code(RW.replace('print("refused", e.errno, e)', "raise SystemExit(e.errno)"),
                                    ["vault", "read", "a.bin"])

    assert attempt() == 5
    monkeypatch.setattr(encfs_format._State, "rel", property(lambda self: b""))
    assert attempt() == 0


def test_rollback_within_the_enclave_lifetime_is_refused(backend: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from posix_shim import Enclave
    from posix_shim import policy as policy_mod

    monkeypatch.setenv("POSIX_SHIM_PLATFORM_SECRET", str(tmp_path / "platform-secret"))
    try:
        cwd = os.getcwd()
        os.chdir(tmp_path)
        (tmp_path / "vault").mkdir()
        rules = policy_mod.parse(["-A", "--encrypted=vault"], "code", RW)
        probe = RW.replace('print("refused", e.errno, e)', 'raise SystemExit(e.errno)')
        with Enclave(policy=rules, backend=backend) as enclave:
            assert enclave.run_code(RW, ["vault", "write", "a.bin", "OLD!"]) == 0
            old = (tmp_path / "vault" / "a.bin").read_bytes()
            assert enclave.run_code(RW, ["vault", "write", "a.bin", "NEW!"]) == 0
            (tmp_path / "vault" / "a.bin").write_bytes(old)  # the host puts the old version back
            assert enclave.run_code(probe, ["vault", "read", "a.bin"]) == 5
            # A deleted file restored by the host is refused too.
            (tmp_path / "vault" / "a.bin").unlink()
            assert enclave.run_code(RW, ["vault", "write", "b.bin", "BBBB"]) == 0
            kept = (tmp_path / "vault" / "b.bin").read_bytes()
            assert enclave.run_code("import os; os.remove('vault/b.bin')") == 0
            (tmp_path / "vault" / "b.bin").write_bytes(kept)
            assert enclave.run_code(probe, ["vault", "read", "b.bin"]) == 5
        # Negative control, and the documented limit: a new enclave has no memory of versions, so the same
        # rollback is accepted across a restart.
        (tmp_path / "vault" / "a.bin").write_bytes(old)
        with Enclave(policy=rules, backend=backend) as enclave:
            assert enclave.run_code(probe, ["vault", "read", "a.bin"]) == 0
    finally:
        os.chdir(cwd)


def test_files_are_unreadable_under_another_identity_binding(tmp_path: Path) -> None:
    """Bound to the signer (the default), a changed program still reads them; under another policy, it cannot."""
    (tmp_path / "vault").mkdir()
    (tmp_path / "rw.py").write_text(RW)
    _run(tmp_path, "sim", "rw.py", "vault", "write", "a.bin", "AAAA")
    (tmp_path / "rw.py").write_text(RW + "\n# updated program\n")
    out, _ = _run(tmp_path, "sim", "rw.py", "vault", "read", "a.bin")
    assert out.strip() == "read 200000 AAAA"
    result = run_shim(["rw.py", "vault", "read", "a.bin"], cwd=tmp_path,
                      options=["-A", "--encrypted=vault", "--deny-read=/nonexistent"],
                      env={"POSIX_SHIM_PLATFORM_SECRET": str(tmp_path / "platform-secret")})
    assert "header authentication failed" in result.stdout.decode()


def test_trace_shows_ciphertext_lengths(tmp_path: Path) -> None:
    (tmp_path / "vault").mkdir()
    (tmp_path / "rw.py").write_text(RW)
    result = run_shim(["rw.py", "vault", "write", "a.bin", "AAAA"], cwd=tmp_path,
                      options=["-A", "--encrypted=vault", "--trace=pwrite"],
                      env={"POSIX_SHIM_PLATFORM_SECRET": str(tmp_path / "platform-secret")})
    assert result.returncode == 0, result.stderr.decode()
    trace = result.stderr.decode()
    assert "pwrite(" in trace and "AAAA" not in trace
    # 200000 bytes of plaintext: 4 chunk records (3 full, 1 of 3392 bytes) written as one pwrite after the
    # header, then the header (112 bytes at offset 0) that commits them.
    records = 3 * REC + 3392 + 28
    assert f"..., {HDR}) = {records} <" in trace and "..., 0) = 112 <" in trace


def test_sealed_inspect_describes_an_encrypted_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import REPO
    (tmp_path / "vault").mkdir()
    (tmp_path / "rw.py").write_text(RW)
    _run(tmp_path, "sim", "rw.py", "vault", "write", "a.bin", "AAAA")
    result = subprocess.run([sys.executable, "-m", "posix_shim", "sealed", "inspect", "vault/a.bin"], cwd=tmp_path,
                            capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().strip()
    assert out.startswith("vault/a.bin: encrypted-folder file, bound to signer identity, file id ")
    assert out.endswith(", version 2, 200000 bytes of plaintext in 4 chunks")


def test_policy_file_key_and_enclave_binding(tmp_path: Path) -> None:
    (tmp_path / "vault").mkdir()
    (tmp_path / "rw.py").write_text(RW)
    (tmp_path / "policy.toml").write_text('allow-all = true\n[encrypted]\npaths = ["vault"]\nbound_to = "enclave"\n')
    env = {"POSIX_SHIM_PLATFORM_SECRET": str(tmp_path / "platform-secret")}
    opts = ["--policy", "policy.toml"]
    result = run_shim(["rw.py", "vault", "write", "a.bin", "AAAA"], cwd=tmp_path, options=opts, env=env)
    assert result.returncode == 0, result.stderr.decode()
    raw = (tmp_path / "vault" / "a.bin").read_bytes()
    assert raw[:9] == b"PSENC2\0\0\0" and b"AAAA" not in raw  # kind 0: bound to the enclave identity
    result = run_shim(["rw.py", "vault", "read", "a.bin"], cwd=tmp_path, options=opts, env=env)
    assert result.stdout.decode().strip() == "read 200000 AAAA"
    # Bound to the enclave: an updated program cannot read it any more.
    (tmp_path / "rw.py").write_text(RW + "\n# updated\n")
    result = run_shim(["rw.py", "vault", "read", "a.bin"], cwd=tmp_path, options=opts, env=env)
    assert "header authentication failed" in result.stdout.decode()
    (tmp_path / "bad.toml").write_text('[encrypted]\npaths = ["vault"]\nbound_to = "nobody"\n')
    result = run_shim(["rw.py"], cwd=tmp_path, options=["--policy", "bad.toml"], env=env)
    assert result.returncode != 0 and b'encrypted.bound_to: must be "enclave" or "signer"' in result.stderr


BIG = program("encrypted_big.py")


@pytest.mark.parametrize("size,cap", [(3 << 20, 100_003), (17 << 20, None)])
def test_reads_survive_short_answers_and_files_beyond_the_kept_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], size: int,
        cap: int | None) -> None:
    """A host answering preads short (splitting records) still reads back right, and a file beyond the copy kept
    at open (16 MiB) takes the pread-per-read path."""
    from enclave_libc import encfs_format, files
    from posix_shim import Enclave
    from posix_shim import policy as policy_mod

    monkeypatch.setenv("POSIX_SHIM_PLATFORM_SECRET", str(tmp_path / "platform-secret"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vault").mkdir()
    if cap is not None:
        pread, pread_into = files.pread, files.pread_into
        monkeypatch.setattr(files, "pread", lambda fd, n, off: pread(fd, min(n, cap), off))
        monkeypatch.setattr(files, "pread_into", lambda fd, view, off: pread_into(fd, view[:cap], off))
    loads: list[bool] = []
    load = encfs_format._State.load

    def spy(self: encfs_format._State, actual: int) -> None:
        load(self, actual)
        loads.append(self.raw is not None)

    monkeypatch.setattr(encfs_format._State, "load", spy)
    rules = policy_mod.parse(["-A", "--encrypted=vault"], "code", BIG)
    with Enclave(policy=rules, backend="sim") as enclave:
        assert enclave.run_code(BIG, [str(size)]) == 0
    assert capfd.readouterr().out.strip() == "ok"
    assert loads and all(kept is (size <= encfs_format.RAW_CACHE) for kept in loads)


ONE_CHUNK_BACK = program("encrypted_one_chunk_back.py")


@pytest.mark.parametrize("defended", [True, False])
def test_one_chunk_rolled_back_under_an_open_file_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], defended: bool) -> None:
    """The host answers the read of chunk 1 with its previous record: a genuine record of this file and index,
    so AES-GCM accepts it; only the check against the tags the header lists (encfs_format._State._listed) can
    tell it is stale.  Negative control: without that check the program reads the old bytes back."""
    from enclave_libc import encfs_format, files
    from posix_shim import Enclave
    from posix_shim import policy as policy_mod

    monkeypatch.setenv("POSIX_SHIM_PLATFORM_SECRET", str(tmp_path / "platform-secret"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vault").mkdir()
    rules = policy_mod.parse(["-A", "--encrypted=vault"], "code", ONE_CHUNK_BACK)
    with Enclave(policy=rules, backend="sim") as enclave:
        assert enclave.run_code(ONE_CHUNK_BACK, ["write"]) == 0
    start = encfs_format.HDR + encfs_format.REC  # chunk 1's record: nonce, ciphertext, tag
    old = (tmp_path / "vault" / "c.bin").read_bytes()[start:start + encfs_format.REC]
    pread = files.pread

    def lying_pread(fd: int, n: int, off: int) -> bytes:
        got = pread(fd, n, off)
        if off <= start and off + len(got) >= start + len(old):
            at = start - off
            got = got[:at] + old + got[at + len(old):]
        return got

    monkeypatch.setattr(files, "pread", lying_pread)
    if not defended:
        def unchecked(self: encfs_format._State, blobs: list) -> Iterator[tuple[int, int, memoryview]]:
            for i, j, blob in blobs:
                for k in range(i, j + 1):
                    n = min(encfs_format.CHUNK, self.size - k * encfs_format.CHUNK)
                    at = (k - i) * encfs_format.REC
                    yield k, n, blob[at:at + encfs_format.OVER + n]

        monkeypatch.setattr(encfs_format._State, "_listed", unchecked)
    capfd.readouterr()
    with Enclave(policy=rules, backend="sim") as enclave:
        assert enclave.run_code(ONE_CHUNK_BACK, ["read"]) == 0
    out = capfd.readouterr().out.strip()
    if defended:
        assert out.startswith("refused 5 "), out
        assert "chunk 1 is not the one the header lists" in out
    else:
        assert out == "read AAAAAAAAAA"  # the rollback of one chunk went unnoticed
