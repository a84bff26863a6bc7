"""A host that lies plausibly is refused: every lie of issue 14, told by `--inject CALL:lie=KIND`, on both backends.

Each lie is a well-formed answer with every field in its range (a blksize of 2**40, a listing that never ends, a
handle equal to stdout, a clock a century ahead ...): only the relations of `calls.RULES`, checked in
`validate.py`, catch it.  The program makes the lied-to call once and must get OSError(EIO) naming the call, the
trace must mark both the lie and the refusal, and the program never sees the lie.

The lie must land on the very call an attempt makes, so the N of `when=N` is counted, not guessed: an honest run
of the same program (with the same trace) counts the calls of that name before each attempt's marker (an
`access("/posix-shim-mark-K")` call).  Lies are grouped in rounds: a call name is lied to at most once per round,
and the lies whose refusal makes calls of its own (the violation is logged, which reads the clock and the pid)
go first in their round.

The negative controls (the same lie with exactly its check switched off is believed) are in
tests/test_negative_controls.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from ocall_bridge import inject, lies
from ocall_bridge.calls import BY_NAME, RULES

SETUP = """
import json, os, socket, sys, threading, time
with open("d.bin", "wb") as f:
    f.write(b"abcdefgh" * 100)
os.mkdir("dir")
for n in range(5):
    open(f"dir/f{n}", "w").close()
fd = os.open("d.bin", os.O_RDWR)
r0, w0 = os.pipe()
os.lseek(fd, 5, os.SEEK_SET)
a1, b1 = socket.socketpair()
a2, b2 = socket.socketpair()
b1.sendall(b"0123456789")
b2.sendall(b"0123456789")

def attempt(k, call, kind, fn):
    os.access(f"/posix-shim-mark-{k}", os.F_OK)
    try:
        value = fn()
    except OSError as exc:
        print(json.dumps([call, kind, exc.errno, str(exc)]), flush=True)
    else:
        print(json.dumps([call, kind, None, repr(value)[:200]]), flush=True)

def swapped():
    # Two recvs at once, of 1 and of 4096 bytes: exchanged, the 1-byte one gets 10 bytes (refused).  The other
    # gets 1 byte, which is a believable answer to it: a swap is caught when an answer cannot fit the other call.
    out = {}
    def one(name, s, n):
        try:
            out[name] = s.recv(n)
        except OSError as exc:
            out[name] = exc
    t = threading.Thread(target=one, args=("big", a2, 4096))
    t.start()
    one("small", a1, 1)
    t.join()
    if isinstance(out["small"], OSError):
        raise out["small"]
    return out
"""

# (call, kind, expression making that call[, how many calls of it the expression makes before the lied one]).
# Rounds: a call name at most once per round; the lies whose
# refusal itself makes calls (logging reads the pid and the clock) first.
ROUNDS: list[list[tuple]] = [
    [
        ("getids", "pid", "os.getpid()"),
        ("lseek", "seek", "os.lseek(fd, 0, os.SEEK_SET)"),
        ("getdents", "endless", "len(os.listdir('dir'))"),
        ("open", "stdio", "os.open('d.bin', os.O_RDONLY)"),
        ("terminal_size", "winsize", "tuple(os.get_terminal_size(0))"),
        ("getaddrinfo", "flood", "len(socket.getaddrinfo('localhost', 80, socket.AF_INET, socket.SOCK_STREAM))"),
        ("sleep", "longsleep", "time.sleep(0.01)"),
        ("pipe", "replay", "os.pipe()"),
        ("recv", "swap", "swapped()"),
        ("stat", "nlink", "os.stat('d.bin').st_nlink"),
        ("fstat", "blksize", "open('d.bin', 'rb').read(1)"),
    ],
    [
        ("clock_gettime", "realtime", "time.time()"),
        ("lseek", "replay", "os.lseek(fd, 0, os.SEEK_SET)"),
        ("getaddrinfo", "family", "socket.getaddrinfo('localhost', 80, socket.AF_INET, socket.SOCK_STREAM)"),
        ("lstat", "blksize", "os.lstat('d.bin').st_blksize"),
        ("stat", "notype", "os.stat('d.bin').st_mode"),
        ("fstat", "notype", "os.fstat(fd).st_mode"),
    ],
    [
        ("clock_gettime", "jump", "time.monotonic()"),
        # The second call of this listing (its end) is answered with its first page again.
        ("getdents", "replay", "os.listdir('dir')", 1),
    ],
]


def _program(attempts: list[tuple]) -> str:
    body = [f"attempt({k}, {call!r}, {kind!r}, lambda: {expr})" for k, (call, kind, expr, *_) in enumerate(attempts)]
    return SETUP + "\n".join(body) + "\nprint('done', flush=True)\n"


def _run(tmp: Path, backend: str, program: str, options: list[str], trace: Path) -> subprocess.CompletedProcess:
    """The shim as a user runs it, with a terminal on stdin (terminal_size needs one to answer)."""
    (tmp / "app.py").write_text(program)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    # The lies are placed by counting calls in the honest run, and modules the runtime imports late (tracing,
    # after the enclave process confined itself) are read through the host: the honest and the lying run must
    # find the same bytecode.  Another test writing __pycache__ in between would change the count, so both runs
    # read (and write) none there.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPYCACHEPREFIX"] = str(tmp.parent / "no-pycache")
    master, slave = os.openpty()
    try:
        return subprocess.run([sys.executable, "-m", "posix_shim", "--backend", backend, "--allow-net",
                               f"--trace-output={trace}", *options, "app.py"], cwd=tmp, stdin=slave,
                              capture_output=True, env=env, timeout=120)
    finally:
        os.close(slave)
        os.close(master)


_KINDS_TOLD: set[str] = set()
_CALL = re.compile(r"^\[\d+\] (\w+)\(")


def _counts_before_marks(trace: str, names: set[str]) -> dict[int, dict[str, int]]:
    """For each marker K: how many calls of each name the run made before it."""
    seen = dict.fromkeys(names, 0)
    out: dict[int, dict[str, int]] = {}
    for line in trace.splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        name = m.group(1)
        if name == "access":
            mark = re.search(r'"/posix-shim-mark-(\d+)"', line)
            if mark:
                out[int(mark.group(1))] = dict(seen)
        if name in seen:
            seen[name] += 1
    return out


@pytest.mark.parametrize("round_", range(len(ROUNDS)))
def test_every_plausible_lie_is_refused(round_: int, backend: str, tmp_path: Path, figures: dict[str, int]) -> None:
    attempts = ROUNDS[round_]
    program = _program(attempts)
    names = {a[0] for a in attempts}
    honest_dir, lying_dir = tmp_path / "honest", tmp_path / "lying"
    honest_dir.mkdir()
    lying_dir.mkdir()
    # The honest run: every attempt works, and it says which call of each name each attempt makes.
    trace = honest_dir / "trace.txt"
    r = _run(honest_dir, backend, program, [], trace)
    assert r.returncode == 0 and b"done" in r.stdout, r.stderr.decode()[-3000:]
    for row in map(json.loads, r.stdout.decode().splitlines()[:-1]):
        assert row[2] is None, row
    before = _counts_before_marks(trace.read_text(), names)
    options = []
    for k, (call, kind, _, *skip) in enumerate(attempts):
        n = before[k][call] + 1 + sum(skip)
        # A swap needs both concurrent calls: every call from the n-th on (the program makes no later one).
        options += ["--inject", f"{call}:lie={kind}:when={n}{'+' if kind == 'swap' else ''}"]
    trace = lying_dir / "trace.txt"
    r = _run(lying_dir, backend, program, options, trace)
    assert r.returncode == 0 and b"done" in r.stdout, r.stderr.decode()[-3000:]
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()[:-1]]
    assert [(c, k) for c, k, _, _ in rows] == [(a[0], a[1]) for a in attempts]
    text = trace.read_text()
    refused = 0
    for call, kind, err, message in rows:
        assert err == 5, (call, kind, message)
        assert message.startswith(f"[Errno 5] posix_shim: host violation in {call}: "), (kind, message)
        assert f"INJECTED lie={kind}" in text, kind
        refused += 1
    violations = [line for line in text.splitlines() if "HOST VIOLATION" in line]
    for call, *_ in attempts:
        assert any(f"] {call}(" in line for line in violations), call
    figures["plausible lies told and refused (call x kind x backend)"] = (
        figures.get("plausible lies told and refused (call x kind x backend)", 0) + refused)
    _KINDS_TOLD.update(kind for _, kind, _, _ in rows)
    figures["plausible lie kinds told (test_plausible.py)"] = len(_KINDS_TOLD)


def test_every_new_kind_is_tested_on_a_call_its_rule_names() -> None:
    """Every plausible kind has an attempt above, on a call the table lets it falsify."""
    tested = {a[1] for attempts in ROUNDS for a in attempts}
    assert set(lies.RULE_OF) | {"replay", "swap", "winsize"} <= tested
    for attempts in ROUNDS:
        assert len({a[0] for a in attempts}) == len(attempts), "a call name twice in one round"
        for call, kind, *_ in attempts:
            assert lies.applies(kind, BY_NAME[call]), (call, kind)
            inject.parse(f"{call}:lie={kind}")
    # Every rule of the table is broken by some lie.
    broken = set(lies.RULE_OF.values())
    assert {r.kind for r in RULES} - broken <= {"dirent", "statvfs"}  # those two: unit tests in test_validate.py
