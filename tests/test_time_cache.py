"""The cached clock (enclave_libc/time.py, docs/time-env.md): fewer ocalls, the same checks, on both backends.

The clock is cached unless the run is strict (`--strict-time`, `strict_time=True`, or fault injection).  The lies
are told on sim, where a test can swap a host function; each comes with a negative control that switches off the
one check that catches it and shows the lie then reaches the program.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKENDS

import enclave_libc.time as enclave_time
from ocall_bridge import calls
from ocall_bridge.access import ALLOW_ALL
from ocall_bridge.originals import time as real_time
from posix_shim import Enclave

HELPER = """
import datetime, time

def read_clocks(n):
    m = [time.monotonic() for _ in range(n)]
    t = time.time()
    return m == sorted(m), t

def race(threads, seconds):
    import threading
    errors = []
    def spin():
        last = 0
        end = time.monotonic() + seconds  # several resyncs
        while True:
            now = time.monotonic_ns()
            if now < last:
                errors.append(("went back", now, last))
            last = now
            if now / 1e9 > end:
                return
    started = [threading.Thread(target=spin) for _ in range(threads)]
    for t in started: t.start()
    for t in started: t.join(30)
    return errors

def facts():
    '''What a program relies on, as booleans, so that two backends' answers can be compared for equality.'''
    m0 = time.monotonic()
    ns = [time.monotonic_ns() for _ in range(2000)]
    p = [time.perf_counter() for _ in range(2000)]
    c = [time.clock_gettime_ns(time.CLOCK_MONOTONIC) for _ in range(200)]
    t, t_ns, now = time.time(), time.time_ns(), datetime.datetime.now().timestamp()
    before = time.monotonic()
    time.sleep(0.03)
    after = time.monotonic()
    return {
        "monotonic_ns ordered": ns == sorted(ns),
        "perf_counter ordered": p == sorted(p),
        "clock_gettime(MONOTONIC) ordered": c == sorted(c),
        "monotonic before monotonic_ns": m0 * 1e9 <= ns[0] + 1000,
        "perf_counter is the monotonic clock": abs(p[0] - ns[-1] / 1e9) < 1.0,
        "time and time_ns agree": abs(t_ns / 1e9 - t) < 1.0,
        "datetime.now agrees": abs(now - t) < 1.0,
        "a sleep moves monotonic": after - before >= 0.03,
        "realtime is a recent date": t > 1.6e9,
        "a CPU clock is served inside": time.process_time() > 0,
    }
"""


@pytest.fixture()
def helper(tmp_path: Path) -> Iterator[None]:
    (tmp_path / "clock_helper.py").write_text(HELPER)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    sys.path.insert(0, str(tmp_path))
    yield
    sys.path.remove(str(tmp_path))
    os.chdir(cwd)


@contextmanager
def _enclave(backend: str, strict: bool) -> Iterator[tuple[Enclave, Callable[[], int]]]:
    """A started enclave and a function giving how many clock_gettime ocalls its host has served so far."""
    with Enclave(ALLOW_ALL, backend=backend, strict_time=strict) as e:
        b = e._backend
        if backend == "process":
            yield e, lambda: b.channel.ring.served
            return
        asked = [0]

        def count(entry: Any, args: tuple) -> None:
            if entry.codec.call.name == "clock_gettime":
                asked[0] += 1

        b.host.before.append(count)
        # The default unless strict (posix_shim/wiring.py); set here so that the test does not depend on how that
        # default is wired, only on what the time family does with it.
        b.client.cached_clock = not strict
        b.rt.extra.pop("time", None)
        yield e, lambda: asked[0]


@pytest.mark.parametrize("strict", [False, True])
def test_clock_reads_reach_the_host_only_to_resync_unless_strict(helper: None, backend: str, strict: bool) -> None:
    n = 5000
    with _enclave(backend, strict) as (e, served):
        e.call("clock_helper:read_clocks", 10)  # imports done
        before = served()
        t0 = time.monotonic()
        ordered, t = e.call("clock_helper:read_clocks", n)
        elapsed = time.monotonic() - t0
        asked = served() - before
    assert ordered  # monotonic never runs backwards, cached or not
    assert abs(t - time.time()) < 5
    if strict:
        assert asked >= n
    else:
        # One resync per clock per 10 ms at most, plus the few calls the ecall itself makes.
        assert asked <= 2 * (elapsed / 0.010 + 2) + 20 < n


def test_the_cached_clock_behaves_the_same_on_every_backend(helper: None) -> None:
    """The same program, cached and strict, on each backend: the same answers to every question it asks."""
    answers = {}
    for backend in BACKENDS:
        for strict in (False, True):
            with _enclave(backend, strict) as (e, _):
                answers[backend, strict] = e.call("clock_helper:facts")
    expected = next(iter(answers.values()))
    assert all(expected.values()), expected
    assert all(a == expected for a in answers.values()), answers


# -- lies told at a resync -----------------------------------------------------------------------------------


@contextmanager
def _lying_sim(lie: Callable[[Any, int], int]) -> Iterator[Any]:
    """A sim enclave with the cached clock whose host answers clock_gettime with `lie`."""
    enclave = Enclave(policy=ALLOW_ALL, backend="sim")
    with enclave:
        backend = enclave._backend
        entry = next(e for e in backend.host.entries.values() if e.codec.call.name == "clock_gettime")
        entry.fn = lie
        backend.client.cached_clock = True  # the default; set so that this test does not depend on how it is wired
        backend.rt.extra.pop("time", None)
        yield enclave


def _run(enclave: Enclave, code: str, capfd: pytest.CaptureFixture[str]) -> list[str]:
    capfd.readouterr()
    gc.collect()
    gc.disable()  # hypothesis's gc callback reads the clock: it must not take the program's answers
    try:
        status = enclave.run_code(code)
    finally:
        gc.enable()
    out, err = capfd.readouterr()
    assert status == 0, err
    return out.splitlines()


BACKWARDS_PROGRAM = r'''
import time
a = time.monotonic()
b = time.monotonic()
print("cached", b >= a)
last = b
try:
    for _ in range(20_000_000):  # a bound, so that a lie that goes unnoticed fails the test instead of hanging it
        c = time.monotonic()
        if c < last:
            print("went back", round((last - c) * 1000))
            break
        last = c
    else:
        print("never refused")
except OSError as exc:
    print("refused", exc.errno, "ran backwards" in str(exc))
'''


def _behind_after_the_first(asked: list[int]) -> Callable[[Any, int], int]:
    def lying(host: Any, clock: int) -> int:
        if clock != time.CLOCK_MONOTONIC:
            return real_time.clock_gettime_ns(clock)
        asked.append(clock)
        true = real_time.clock_gettime_ns(clock)
        # Later answers: 200 ms behind the truth.  What was handed out meanwhile lags the truth by the first
        # round trip (up to milliseconds on a loaded machine), so a lie must be well beyond that to be below it.
        # The validator's pace check lets a monotonic clock fall behind (it stops while the machine sleeps):
        # only the floor of what was handed out catches this lie.
        return true if len(asked) == 1 else true - 200_000_000

    return lying


def test_a_resync_answer_below_what_was_handed_out_is_refused(capfd: pytest.CaptureFixture[str]) -> None:
    """Between resyncs the enclave hands out values the host never gave: a host whose next answer is below them
    is caught running backwards, as an uncached lie would be."""
    asked: list[int] = []
    with _lying_sim(_behind_after_the_first(asked)) as enclave:
        lines = _run(enclave, BACKWARDS_PROGRAM, capfd)
        violations = [v.call for v in enclave._backend.client.violations]
    assert lines == ["cached True", "refused 5 True"]
    assert len(asked) == 2  # the first answer, then the resync that lied: nothing in between was asked
    assert violations == ["clock_gettime"]


def test_without_the_monotonic_check_the_resync_lie_reaches_the_program(capfd: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: the same lie, with the floor check switched off, is handed to the program."""
    def unchecked(rt: Any, clock: int) -> int:
        return rt.ocall.clock_gettime(clock)  # enclave_time._monotonic without the floor

    monkeypatch.setattr(enclave_time, "_monotonic", unchecked)
    asked: list[int] = []
    with _lying_sim(_behind_after_the_first(asked)) as enclave:
        lines = _run(enclave, BACKWARDS_PROGRAM, capfd)
        violations = enclave._backend.client.violations
    assert lines[0] == "cached True"
    assert lines[1].startswith("went back "), lines
    assert int(lines[1].split()[2]) >= 150  # milliseconds: the lie, less what the first round trip lagged
    assert violations == []


JUMP_PROGRAM = r'''
import time
last = time.time()
try:
    for _ in range(20_000_000):
        t = time.time()
        if t - last > 4:
            print("jumped", round(t - last))
            break
        last = t
    else:
        print("never refused")
except OSError as exc:
    print("refused", exc.errno, "ahead of the enclave's own counter" in str(exc))
'''


def _ahead_after_the_first(asked: list[int]) -> Callable[[Any, int], int]:
    def lying(host: Any, clock: int) -> int:
        true = real_time.clock_gettime_ns(clock)
        if clock != time.CLOCK_REALTIME:
            return true
        asked.append(clock)
        return true if len(asked) == 1 else true + 5_000_000_000  # then 5 s ahead, 10 ms of counter later
    return lying


def test_a_resync_answer_that_drifts_too_far_is_refused(capfd: pytest.CaptureFixture[str]) -> None:
    """A resync is an ordinary checked ocall: the pace check (validate.Plausibility) holds the host's clock to the
    enclave's own counter between two resyncs, so a clock that jumps ahead is refused.  The program hears of
    the lie itself: the log record of the violation reads the time from the cache, not from the lying host."""
    asked: list[int] = []
    with _lying_sim(_ahead_after_the_first(asked)) as enclave:
        lines = _run(enclave, JUMP_PROGRAM, capfd)
        violations = [v.call for v in enclave._backend.client.violations]
    assert lines == ["refused 5 True"]
    assert len(asked) == 2
    assert violations == ["clock_gettime"]


def test_without_the_pace_check_the_jump_reaches_the_program(capfd: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: with the pace check's slack made enormous, the same jump is handed to the program."""
    monkeypatch.setattr(calls, "CLOCK_SLACK_NS", 10**15)
    asked: list[int] = []
    with _lying_sim(_ahead_after_the_first(asked)) as enclave:
        lines = _run(enclave, JUMP_PROGRAM, capfd)
        violations = enclave._backend.client.violations
    assert lines == ["jumped 5"]
    assert violations == []


def test_cached_monotonic_raced_by_threads_never_runs_backwards(helper: None, backend: str) -> None:
    """Six threads read the cached clock across many resyncs: no thread ever sees it go back, no false alarm."""
    with _enclave(backend, False) as (e, _):
        e.call("clock_helper:read_clocks", 10)
        assert e.call("clock_helper:race", 6, 0.2) == []
        if backend == "sim":
            assert e._backend.client.violations == []


class _Scripted:
    """A runtime whose host answers MONOTONIC from a script, and the enclave counter the test sets, for the cached
    clock's arithmetic without a real host or a real clock."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.client = None
        self.extra = {"time": enclave_time.ClockState(cached=True)}
        self.ocall = self

    def clock_gettime(self, clock: int) -> int:
        return self.answers.pop(0)


def test_a_resync_that_lags_more_never_moves_the_clock_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race of the test above, made deterministic.  A resync whose round trip was slow extrapolates to less
    than the previous resync did; the clock keeps the earlier (least lagging) offset, so a read after it is never
    below what was handed out, and an answer below what was handed out is refused."""
    counter = [1_000]
    monkeypatch.setattr(enclave_time, "_real_clock_gettime_ns", lambda clock: counter[0])
    mono = time.CLOCK_MONOTONIC
    rt: Any = _Scripted([10_000, 0, 0])
    st = rt.extra["time"]
    assert enclave_time._cached(rt, st, mono) == 10_000  # first resync: offset 9,000
    counter[0] = 1_000 + enclave_time.RESYNC_NS - 1
    handed = enclave_time._cached(rt, st, mono)
    assert handed == counter[0] + 9_000  # from the cache, nothing asked
    # The second resync: the host answers barely above what was handed out, but its answer took 5 ms to come
    # (the counter moves on while it is asked): its own extrapolation would be 5 ms behind the first's.
    counter[0] += 1
    rt.answers[0] = handed + 2

    def slow(clock: int) -> int:
        counter[0] += 5_000_000
        return rt.answers.pop(0)

    rt.clock_gettime = slow
    assert enclave_time._cached(rt, st, mono) == handed + 2
    counter[0] += 1
    assert enclave_time._cached(rt, st, mono) >= handed + 2 + 5_000_000  # the first offset, kept
    # A third resync answering below what was handed out is refused, and changes nothing.
    counter[0] += enclave_time.RESYNC_NS
    before = dict(st.cache)
    rt.answers[0] = handed
    with pytest.raises(OSError, match="ran backwards"):
        enclave_time._cached(rt, st, mono)
    assert st.cache == before


@pytest.mark.parametrize("backend_name", ["sim", "process"])
def test_strict_time_is_a_command_line_flag(tmp_path: Path, backend_name: str) -> None:
    from conftest import run_shim

    if backend_name not in BACKENDS:
        pytest.skip(f"no {backend_name} backend in this build")
    code = "import time; a = time.monotonic(); print(time.monotonic() >= a)"
    for options in ([], ["--strict-time"]):
        r = run_shim(["-c", code], backend=backend_name, cwd=tmp_path, options=options, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == b"True\n"
    r = run_shim(["--strict-time", "--summary", "-c", "import time\nfor _ in range(300): time.monotonic()"],
                 backend=backend_name, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    row = next(line.split() for line in r.stderr.decode().splitlines() if line.endswith(" clock_gettime"))
    assert int(row[3]) >= 300  # calls: every read asked the host


@pytest.mark.parametrize("strict", [False, True])
def test_the_sim_clock_is_cached_unless_the_run_is_strict(strict: bool) -> None:
    """The wiring, not a test's setting: sim caches the clock by default (as process does: the ocall counts above
    run on both), and strict_time turns it off."""
    with Enclave(ALLOW_ALL, backend="sim", strict_time=strict) as enclave:
        assert enclave._backend.client.cached_clock is (not strict)  # type: ignore[attr-defined]
