"""Quotes: the format, every refusal of verify(), the report ocall from inside both backends, the key's secrecy.

Each refusal has its negative control next to it: the same quote passes once exactly that check is left out,
so the refusal is proven to come from that check and nothing else.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("cryptography")
from conftest import REPO, program, run_shim
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ocall_bridge import quote as Q
from ocall_bridge.access import ALLOW_ALL
from ocall_bridge.host.attest import HidePlatformKey, PlatformKey, PlatformKeyError
from posix_shim import attestation as A

MEASUREMENT = bytes(range(32))
SIGNER = bytes(range(32, 64))
NONCE = b"nonce-" + bytes(range(20))


@pytest.fixture
def key_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "platform" / "key.pem")
    monkeypatch.setenv("POSIX_SHIM_PLATFORM_KEY", path)
    return path


@pytest.fixture
def gen(key_path: str) -> A.PlatformQuoteGenerator:
    return A.PlatformQuoteGenerator(measurement=MEASUREMENT, signer=SIGNER, key_path=key_path)


def pub(key_path: str) -> object:
    return A.platform_public_key(key_path)


def test_layout_is_the_documented_one(gen: A.PlatformQuoteGenerator, key_path: str) -> None:
    quote = gen.generate(NONCE)
    assert len(quote) == Q.SIZE == 240
    assert quote[:8] == b"PSQUOTE\0"
    assert struct.unpack(">H", quote[8:10]) == (1,)
    assert quote[10] == 1 and quote[11] == 1  # sim backend, debug
    assert quote[16:48] == MEASUREMENT and quote[48:80] == SIGNER
    assert quote[80:144] == NONCE + b"\0" * (64 - len(NONCE))
    fields = A.verify(quote, platform_keys=pub(key_path), measurement=MEASUREMENT.hex(), signer=SIGNER,
                      user_data=NONCE)
    assert (fields.format, fields.version, fields.backend, fields.debug) == ("posix_shim-quote", 1, "sim", True)
    assert fields.measurement == MEASUREMENT and fields.user_data.rstrip(b"\0") == NONCE


def test_key_file_is_private_and_made_once(key_path: str) -> None:
    first = PlatformKey.load(key_path)
    assert os.stat(key_path).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(key_path)).st_mode & 0o777 == 0o700
    PlatformKey._cache.clear()
    assert PlatformKey.load(key_path).id == first.id  # loaded again, not replaced
    os.chmod(key_path, 0o644)
    PlatformKey._cache.clear()
    with pytest.raises(PlatformKeyError, match="readable by others"):
        PlatformKey.load(key_path)
    os.chmod(key_path, 0o600)


def test_wrong_measurement(gen: A.PlatformQuoteGenerator, key_path: str) -> None:
    quote = gen.generate(NONCE)
    other = b"\xaa" * 32
    with pytest.raises(A.QuoteError) as err:
        A.verify(quote, platform_keys=pub(key_path), measurement=other)
    assert err.value.reason == "measurement"
    assert f"expected {other.hex()}" in str(err.value) and MEASUREMENT.hex() in str(err.value)
    A.verify(quote, platform_keys=pub(key_path))  # control: without the expectation it verifies


def test_wrong_signer(gen: A.PlatformQuoteGenerator, key_path: str) -> None:
    quote = gen.generate(NONCE)
    with pytest.raises(A.QuoteError) as err:
        A.verify(quote, platform_keys=pub(key_path), signer=b"\xbb" * 32)
    assert err.value.reason == "signer" and SIGNER.hex() in str(err.value)
    A.verify(quote, platform_keys=pub(key_path), signer=SIGNER)


def test_wrong_platform_key(gen: A.PlatformQuoteGenerator, key_path: str) -> None:
    quote = gen.generate(NONCE)
    stranger = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(A.QuoteError) as err:
        A.verify(quote, platform_keys=[stranger], measurement=MEASUREMENT)
    assert err.value.reason == "platform_key"
    # A forger who copies the trusted key's id into a quote signed with their own key: the signature fails.
    forger = Ed25519PrivateKey.generate()
    body = quote[:Q.BODY_SIZE]
    with pytest.raises(A.QuoteError) as err:
        A.verify(body + forger.sign(body), platform_keys=pub(key_path))
    assert err.value.reason == "signature"
    A.verify(quote, platform_keys=[stranger, pub(key_path)], measurement=MEASUREMENT)  # control: key trusted


def test_altered_user_data(gen: A.PlatformQuoteGenerator, key_path: str) -> None:
    quote = bytearray(gen.generate(NONCE))
    quote[80] ^= 1
    with pytest.raises(A.QuoteError) as err:
        A.verify(bytes(quote), platform_keys=pub(key_path))
    assert err.value.reason == "signature"
    # Control: the layout alone (no signature check) would have accepted the altered bytes.
    body, _, _ = Q.parse(bytes(quote))
    assert body.user_data[0] == NONCE[0] ^ 1


def test_altered_measurement_field(gen: A.PlatformQuoteGenerator, key_path: str) -> None:
    quote = bytearray(gen.generate(NONCE))
    quote[16:48] = b"\xcc" * 32  # a host claiming another enclave's identity for this quote
    with pytest.raises(A.QuoteError) as err:
        A.verify(bytes(quote), platform_keys=pub(key_path), measurement=b"\xcc" * 32)
    assert err.value.reason == "signature"


@pytest.mark.parametrize("cut", [0, 5, 16, 100, 239])
def test_truncated(gen: A.PlatformQuoteGenerator, key_path: str, cut: int) -> None:
    quote = gen.generate(NONCE)
    with pytest.raises(A.QuoteError) as err:
        A.verify(quote[:cut], platform_keys=pub(key_path))
    assert err.value.reason == "truncated"
    with pytest.raises(A.QuoteError) as err:
        A.verify(quote + b"\0", platform_keys=pub(key_path))
    assert err.value.reason == "format"


def test_unknown_version(gen: A.PlatformQuoteGenerator, key_path: str) -> None:
    quote = bytearray(gen.generate(NONCE))
    quote[8:10] = struct.pack(">H", 2)
    with pytest.raises(A.QuoteError, match="unknown posix_shim-quote version 2") as err:
        A.verify(bytes(quote), platform_keys=pub(key_path))
    assert err.value.reason == "version"
    with pytest.raises(A.QuoteError) as err:
        A.verify(b"XXQUOTE\0" + bytes(quote[8:]), platform_keys=pub(key_path))
    assert err.value.reason == "format"


def test_replay(gen: A.PlatformQuoteGenerator, key_path: str) -> None:
    """A genuine quote captured earlier, replayed against a fresh challenge, is refused."""
    old = gen.generate(b"challenge-1")
    with pytest.raises(A.QuoteError) as err:
        A.verify(old, platform_keys=pub(key_path), measurement=MEASUREMENT, user_data=b"challenge-2")
    assert err.value.reason == "user_data" and "replayed" in str(err.value)
    # Control: the verifier that does not bind the nonce accepts the replay.
    A.verify(old, platform_keys=pub(key_path), measurement=MEASUREMENT)


def test_debug_enclaves_can_be_refused(key_path: str) -> None:
    gen = A.PlatformQuoteGenerator(measurement=MEASUREMENT, signer=SIGNER, debug=True, key_path=key_path)
    quote = gen.generate(b"")
    with pytest.raises(A.QuoteError) as err:
        A.verify(quote, platform_keys=pub(key_path), allow_debug=False)
    assert err.value.reason == "debug"
    prod = A.PlatformQuoteGenerator(measurement=MEASUREMENT, signer=SIGNER, debug=False, key_path=key_path)
    assert not A.verify(prod.generate(b""), platform_keys=pub(key_path), allow_debug=False).debug


def test_report_outside_an_enclave_says_so() -> None:
    with pytest.raises(RuntimeError, match="inside an enclave"):
        A.report(b"x")


def test_the_key_file_is_hidden_from_the_enclave_policy(key_path: str) -> None:
    hidden = HidePlatformKey(ALLOW_ALL, key_path)
    assert "platform key" in hidden.check("open", "read", key_path.encode())
    assert "platform key" in hidden.check("open", "read", (os.path.dirname(key_path) + "/./key.pem").encode())
    assert hidden.check("open", "read", b"/etc/hostname") is None
    assert ALLOW_ALL.check("open", "read", key_path.encode()) is None  # control: the policy alone grants it


REPORT_PROGRAM = program("attestation_report_program.py")


def test_report_inside_both_backends(backend: str, tmp_path: Path, key_path: str) -> None:
    (tmp_path / "app.py").write_text(REPORT_PROGRAM)
    PlatformKey.load(key_path)
    os.symlink(key_path, tmp_path / "link-to-key")
    r = run_shim(["app.py"], backend=backend, cwd=tmp_path, options=["-A"])
    assert r.returncode == 0, r.stderr.decode()
    # The path itself is refused.  (Through a symlink an -A enclave, which is given the host's files unconfined,
    # still reaches it: docs/integrity.md; a signed run confines "/" and refuses both, test_manifest.py.)
    assert r.stdout.decode().count("key refused 13") == 1, r.stdout.decode()
    quote = (tmp_path / "quote.bin").read_bytes()
    fields = A.verify(quote, platform_keys=pub(key_path), user_data=b"nonce-from-the-verifier")
    assert fields.backend == backend
    assert fields.measurement == b"\0" * 32  # an unsigned enclave: no measurement to claim
    assert "too long: user data is at most 64 bytes" in r.stdout.decode()


def test_cli_quote_verify(tmp_path: Path, gen: A.PlatformQuoteGenerator, key_path: str) -> None:
    (tmp_path / "q.bin").write_bytes(gen.generate(NONCE))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "posix_shim", "quote"]
    ok = subprocess.run([*cmd, "verify", "q.bin", "--measurement", MEASUREMENT.hex()], cwd=tmp_path, env=env,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout and MEASUREMENT.hex() in ok.stdout, ok.stderr
    bad = subprocess.run([*cmd, "verify", "q.bin", "--measurement", "ab" * 32], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert f"wrong measurement: expected {'ab' * 32}, the quote has {MEASUREMENT.hex()}" in bad.stderr
    subprocess.run([*cmd, "pubkey", "-o", "pub.pem"], cwd=tmp_path, env=env, check=True)
    other = tmp_path / "other.pem"
    from ocall_bridge.host.attest import public_pem

    other.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    wrong = subprocess.run([*cmd, "verify", "q.bin", "--platform-key", str(other)], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert wrong.returncode == 1 and "unknown platform key" in wrong.stderr
    right = subprocess.run([*cmd, "verify", "q.bin", "--platform-key", "pub.pem", "--user-data", NONCE.hex()],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert right.returncode == 0, right.stderr


def test_a_host_that_alters_the_quote_it_returns_is_caught(backend: str, tmp_path: Path, key_path: str) -> None:
    """The enclave checks the platform's answer carries its own user data (here the host flips a byte of it)."""
    (tmp_path / "app.py").write_text(
        "from posix_shim import attestation\n"
        "try:\n    attestation.report(b'n' * 64)\nexcept OSError as exc:\n    print('refused', exc.errno)\n"
        "else:\n    print('accepted')\n")
    r = run_shim(["--inject", "report:lie=flip", "app.py"], backend=backend, cwd=tmp_path)
    assert r.stdout == b"refused 5\n", r.stderr.decode()
    assert b"host violation in report: the quote does not carry the user data the enclave asked for" in r.stderr
    assert run_shim(["app.py"], backend=backend, cwd=tmp_path).stdout == b"accepted\n"  # control: honest host
