"""A lying host is refused: every lie kind, for every call family it applies to, on every backend.

Each run injects several lies into one call (`CALL:lie=KIND:when=N`: the N-th call gets the N-th lie) and the
program makes that call once per lie, then once more: every lie must reach the program as OSError(EIO) naming
the call ("posix_shim: host violation in pread: ..."), the trace must mark the lie the host told and the
enclave's refusal, and the honest call after them must work (the enclave never acted on a lie).  The wire
decoders are fuzzed here too, with answers and requests mutated from honest frames of every call.
"""

from __future__ import annotations

import errno
import json
import os
import random
import textwrap
from pathlib import Path

import pytest
from conftest import run_shim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocall_bridge import inject, lies
from ocall_bridge.calls import BY_NAME, CALLS
from ocall_bridge.wire import CODECS, WireError, decode_answer, decode_request

# The lies every call can be told (framing and matching), and the ones that need a field to falsify.
FRAME_LIES = ["truncated", "garbage", "hugelen", "call", "errno", "seq"]

# family -> (setup code, [(call, kinds, expression making that call once[, calls of it the setup makes])])
FAMILIES: dict[str, tuple[str, list[tuple]]] = {
    "files": ("""
        with open("d.bin", "wb") as f:
            f.write(b"abcdefgh" * 100)
        fd = os.open("d.bin", os.O_RDWR)
        """, [
        ("pread", ["oversize", *FRAME_LIES], "os.pread(fd, 8, 0)"),
        ("pwrite", ["negative", "oversize"], "os.pwrite(fd, b'ABCD', 0)"),
        ("pipe", ["badfd"], "os.pipe()"),
    ]),
    "sockets": ("""
        a, b = socket.socketpair()
        a.settimeout(10)
        b.settimeout(10)
        """, [
        ("socketpair", ["badfd"], "socket.socketpair()[0].fileno() >= 0", 1),  # the setup made one first
        ("send", ["negative", "oversize"], "a.send(b'hello')"),
        ("recv", ["oversize", *FRAME_LIES], "b.recv(1)"),
    ]),
    "poll": ("""
        r, w = os.pipe()
        os.write(w, b"x")
        p = select.poll()
        p.register(r, select.POLLIN)
        """, [
        ("poll", ["oversize", *FRAME_LIES], "p.poll(0)"),
    ]),
    "time": ("", [
        ("clock_getres", ["negative", "truncated", "garbage", "call", "errno", "seq"],
         "time.clock_getres(time.CLOCK_MONOTONIC)"),
    ]),
    "process": ("", [
        # getids first: logging a violation reads os.getpid(), which asks getids until it has its answer.
        ("getids", ["negative"], "os.getpid()"),
        ("uname", FRAME_LIES, "os.uname().sysname"),
    ]),
}


def _plan(family: str, backend: str) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(program, --inject options, [(call, kind)] in the order the program tells them)."""
    setup, calls = FAMILIES[family]
    body = [textwrap.dedent(setup)]
    options: list[str] = []
    told: list[tuple[str, str]] = []
    for name, kinds, expr, *before in calls:
        if backend == "process":
            # The process transport hands an answer to the thread waiting for its sequence number: an answer
            # with another one reaches no caller at all (it is dropped and counted), so there is nothing for
            # the client's own sequence check to refuse.  The sim backend proves that check.
            kinds = [k for k in kinds if k != "seq"]
        for n, kind in enumerate(kinds, 1 + sum(before)):
            options += ["--inject", f"{name}:lie={kind}:when={n}"]
            told.append((name, kind))
            body.append(f"attempt({name!r}, {kind!r}, lambda: {expr})")
        body.append(f"attempt({name!r}, 'honest', lambda: {expr})")
    program = textwrap.dedent("""
        import json, os, select, socket, sys, time
        def attempt(call, kind, fn):
            try:
                value = fn()
            except OSError as exc:
                print(json.dumps([call, kind, exc.errno, str(exc)]), flush=True)
            else:
                print(json.dumps([call, kind, None, repr(value)]), flush=True)
        """) + "\n".join(body) + "\n"
    return program, options, told


_KINDS_TOLD: set[str] = set()  # the kinds the runs above really told: the figure is counted, not len(KINDS)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_lie_is_refused(family: str, backend: str, tmp_path: Path, figures: dict[str, int]) -> None:
    program, options, told = _plan(family, backend)
    (tmp_path / "app.py").write_text(program)
    trace = tmp_path / "trace.txt"
    r = run_shim(["app.py"], backend=backend, cwd=tmp_path, timeout=60,
                 options=[*options, f"--trace-output={trace}"])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]
    lied = [row for row in rows if row[1] != "honest"]
    assert [(c, k) for c, k, _, _ in lied] == told
    for call, kind, err, message in lied:
        assert err == errno.EIO, (call, kind, message)
        assert message.startswith(f"[Errno 5] posix_shim: host violation in {call}: "), (kind, message)
    # After its lies, each call works again: the enclave never acted on one (no fd, no count, no state taken).
    for call, kind, err, value in rows:
        if kind == "honest":
            assert err is None, (call, value)
    text = trace.read_text()
    for _, kind in told:
        assert f"INJECTED lie={kind}" in text
    violations = [line for line in text.splitlines() if "HOST VIOLATION" in line]
    assert len(violations) >= len(told), text[-3000:]
    for call in {c for c, _ in told}:
        assert any(f"] {call}(" in line for line in violations), call
    refused = sum(1 for _, _, err, _ in lied if err == errno.EIO)
    figures["lies told and refused (call x kind x backend)"] = (
        figures.get("lies told and refused (call x kind x backend)", 0) + refused)
    _KINDS_TOLD.update(kind for _, kind in told)
    figures["lie kinds told (test_lies.py)"] = len(_KINDS_TOLD)


@pytest.mark.parametrize("kind_clock", ["CLOCK_MONOTONIC"])
def test_a_monotonic_clock_running_backwards_is_refused(kind_clock: str, backend: str, tmp_path: Path,
                                                        figures: dict[str, int]) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(f"""
        import time
        t0 = time.clock_gettime_ns(time.{kind_clock})
        try:
            t1 = time.clock_gettime_ns(time.{kind_clock})
        except OSError as exc:
            print("refused", exc.errno, exc)
        else:
            print("accepted", t1 - t0)
        print("realtime still served", time.time() > 1e9)
        """))
    r = run_shim(["app.py"], backend=backend, cwd=tmp_path,
                 options=["--inject", "clock_gettime:lie=backwards:when=2+"])
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert "refused 5 [Errno 5] posix_shim: host violation in clock_gettime: monotonic clock" in out
    assert "ran backwards" in out
    assert "realtime still served True" in out
    figures["lies told and refused (call x kind x backend)"] = (
        figures.get("lies told and refused (call x kind x backend)", 0) + 1)


def test_lie_specs_are_checked_against_the_table() -> None:
    assert inject.parse("read:lie=oversize").lie == "oversize"
    assert inject.parse("files:lie=badfd").calls == frozenset({"open", "pipe"})
    with pytest.raises(inject.InjectSpecError, match="nothing to falsify in close"):
        inject.parse("close:lie=oversize")
    with pytest.raises(inject.InjectSpecError, match="unknown lie"):
        inject.parse("read:lie=sometimes")
    with pytest.raises(inject.InjectSpecError, match="cannot be combined"):
        inject.parse("read:lie=garbage:error=EIO")
    # Every kind applies to some call of the table, and every call can be told some lie.
    for kind in lies.KINDS:
        assert any(lies.applies(kind, c) for c in CALLS if not c.inside), kind
    assert all(lies.applies("garbage", c) for c in CALLS if not c.inside)


@pytest.mark.parametrize("option", ["--on-violation=abort", "policy-file", None])
def test_violation_policy(option: str | None, backend: str, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import os
        fd = os.open("app.py", os.O_RDONLY)
        try:
            os.pread(fd, 4, 0)
        except OSError as exc:
            print("caught", exc.errno)
        print("went on")
        """))
    if option == "policy-file":
        (tmp_path / "policy.toml").write_text('violation = "abort"\n')
        option = "--policy=policy.toml"
    options = ["--inject", "pread:lie=oversize"] + ([option] if option else [])
    r = run_shim(["app.py"], backend=backend, cwd=tmp_path, options=options)
    err = r.stderr.decode()
    assert "posix_shim: host violation in pread: data is 5, more than count=4" in err
    if option:
        # Asylo's choice: the enclave ends at once, nothing after the lie runs, and the status says why.
        assert r.returncode == 70, err
        assert "aborting the enclave" in err
        assert "went on" not in r.stdout.decode()
    else:
        assert r.returncode == 0, err
        assert r.stdout.decode().split() == ["caught", "5", "went", "on"]


def test_a_bad_violation_setting_names_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text('violation = "ignore"\n')
    r = run_shim(["-c", "print('ran')"], cwd=tmp_path, options=["--policy=policy.toml"])
    assert r.returncode == 2
    assert b"ran" not in r.stdout
    assert 'policy.toml: violation: must be "raise" or "abort", not \'ignore\'' in r.stderr.decode()


# -- fuzzing both decoders with frames derived from honest ones --------------------------------------------------

WIRE_CALLS = sorted(c.name for c in CALLS if not c.inside)


def _mutate(frame: bytes, rnd: random.Random) -> bytes:
    b = bytearray(frame)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(4)
        if op == 0 and b:
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        elif op == 1:
            b = b[:rnd.randrange(len(b) + 1)]
        elif op == 2:
            b += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        elif len(b) >= 4:  # a length field anywhere: the header's or a variable field's
            at = rnd.randrange(0, len(b) - 3)
            b[at:at + 4] = rnd.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, len(b) + 1]).to_bytes(4, "little")
    return bytes(b)


def _honest(name: str) -> tuple:
    codec = next(cc for cc in CODECS.values() if cc.call.name == name)
    request = codec.pack_request(7, [lies.well_formed(f.type) for f in codec.call.params])
    answer = codec.pack_answer(7, [lies.well_formed(f.type) for f in codec.call.results])
    return codec, request, answer


# A quick profile by default; POSIX_SHIM_FUZZ_EXAMPLES=100000 for a long one.
@settings(max_examples=int(os.environ.get("POSIX_SHIM_FUZZ_EXAMPLES", "400")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(WIRE_CALLS), seed=st.integers(0, 2**32 - 1))
def test_fuzz_both_decoders_with_mutated_honest_frames(name: str, seed: int, figures: dict[str, int]) -> None:
    """Frames one to four mutations away from honest ones of every call: each decoder answers or raises
    WireError, nothing else; and the framing lies are always refused."""
    rnd = random.Random(seed)
    codec, request, answer = _honest(name)
    assert decode_request(request)[0] is codec and decode_answer(answer, codec, 7)[0] == 0
    decoded = 0
    for _ in range(4):
        try:
            decode_answer(_mutate(answer, rnd), codec, 7)
        except WireError:
            pass
        try:
            decode_request(_mutate(request, rnd))
        except WireError:
            pass
        decoded += 1
    for kind in ("truncated", "hugelen", "garbage", "call", "seq"):
        if lies.applies(kind, codec.call):
            forged = lies.tell(kind, codec, [lies.well_formed(f.type) for f in codec.call.params], answer)
            if forged is not None:
                with pytest.raises(WireError):
                    decode_answer(forged, codec, 7)
    figures["fuzz examples: answer decoder (mutated honest frames)"] = (
        figures.get("fuzz examples: answer decoder (mutated honest frames)", 0) + decoded)
    figures["fuzz examples: request decoder (mutated honest frames)"] = (
        figures.get("fuzz examples: request decoder (mutated honest frames)", 0) + decoded)


def test_the_lie_helpers_know_each_family() -> None:
    by_family = {f: [c for c in CALLS if c.family == f and not c.inside]
                 for f in ("files", "sockets", "poll", "time", "process")}
    for family, calls in by_family.items():
        for kind in ("truncated", "garbage", "call", "errno", "seq"):
            assert any(lies.applies(kind, c) for c in calls), (family, kind)
    assert lies.applies("backwards", BY_NAME["clock_gettime"])
    assert not lies.applies("backwards", BY_NAME["clock_getres"])


class _Answering:
    """A transport whose host answers every call with `results` (well-formed frames carrying a lie)."""

    name = "fake"

    def __init__(self, codec_name: str, results: list) -> None:
        self.codec = next(cc for cc in CODECS.values() if cc.call.name == codec_name)
        self.results = results

    def roundtrip(self, frame: bytes, seq: int) -> bytes:
        return self.codec.pack_answer(seq, self.results)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("name", [b"..", b".", b"a/b", b"../etc", b"x\0y", b""])
def test_a_directory_entry_that_is_not_a_file_name_is_refused(name: bytes) -> None:
    from ocall_bridge.client import OcallClient
    from ocall_bridge.errors import HostViolation

    client = OcallClient(_Answering("getdents", [[(b"ok", 8, 1), (name, 8, 2)]]))
    with pytest.raises(HostViolation, match="host violation in getdents: directory entry .* is not a file name"):
        client.stubs.getdents(5, 16, False)
    assert OcallClient(_Answering("getdents", [[(b"ok", 8, 1)]])).stubs.getdents(5, 16, False) == [(b"ok", 8, 1)]


def test_a_handle_given_twice_or_never_issuable_is_refused() -> None:
    from ocall_bridge.client import OcallClient
    from ocall_bridge.errors import HostViolation

    client = OcallClient(_Answering("open", [7]))
    assert client.stubs.open(b"/x", 0, 0) == 7
    with pytest.raises(HostViolation, match="handle 7 was issued before"):
        client.stubs.open(b"/x", 0, 0)
    with pytest.raises(HostViolation, match="handle 2 is one the host never issues"):
        OcallClient(_Answering("open", [2])).stubs.open(b"/x", 0, 0)
    with pytest.raises(HostViolation, match="the same handle twice"):
        OcallClient(_Answering("pipe", [9, 9])).stubs.pipe(0)
