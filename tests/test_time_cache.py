"""The cached clock of the process backend (enclave_libc/time.py, docs/time-env.md): fewer ocalls, the same checks."""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ocall_bridge.access import ALLOW_ALL
from ocall_bridge.originals import time as real_time
from posix_shim import Enclave

HELPER = """
import time
def read_clocks(n):
    m = [time.monotonic() for _ in range(n)]
    t = time.time()
    return m == sorted(m), t
"""


@pytest.fixture()
def helper(tmp_path: Path) -> Any:
    (tmp_path / "clock_helper.py").write_text(HELPER)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    sys.path.insert(0, str(tmp_path))
    yield
    sys.path.remove(str(tmp_path))
    os.chdir(cwd)


@pytest.mark.parametrize("strict", [False, True])
def test_clock_reads_reach_the_host_only_to_resync_unless_strict(helper: None, strict: bool) -> None:
    n = 5000
    with Enclave(ALLOW_ALL, backend="process", strict_time=strict) as e:
        ring = e._backend.channel.ring
        e.call("clock_helper:read_clocks", 10)  # imports done
        before = ring.served
        t0 = time.monotonic()
        ordered, t = e.call("clock_helper:read_clocks", n)
        elapsed = time.monotonic() - t0
        asked = ring.served - before
    assert ordered  # monotonic never runs backwards, cached or not
    assert abs(t - time.time()) < 5
    if strict:
        assert asked >= n
    else:
        # One resync per clock per 10 ms at most, plus the few calls the ecall itself makes.
        assert asked <= 2 * (elapsed / 0.010 + 2) + 20 < n


def test_a_resync_answer_below_what_was_handed_out_is_refused(capfd: pytest.CaptureFixture[str]) -> None:
    """Between resyncs the enclave hands out values the host never gave: a host whose next answer is below them
    is caught running backwards, as an uncached lie would be."""
    asked: list[int] = []

    def lying(host: Any, clock: int) -> int:
        if clock != time.CLOCK_MONOTONIC:
            return real_time.clock_gettime_ns(clock)
        asked.append(clock)
        true = real_time.clock_gettime_ns(clock)
        # Later answers: 200 ms behind the truth.  What was handed out meanwhile lags the truth by the first
        # round trip (up to milliseconds on a loaded machine), so a lie must be well beyond that to be below it.
        return true if len(asked) == 1 else true - 200_000_000

    code = r'''
import time
a = time.monotonic()
b = time.monotonic()
print("cached", b >= a)
try:
    for _ in range(20_000_000):  # a bound, so that a lie that goes unnoticed fails the test instead of hanging it
        c = time.monotonic()
    print("never refused")
except OSError as exc:
    print("refused", exc.errno, "ran backwards" in str(exc))
'''
    enclave = Enclave(policy=ALLOW_ALL, backend="sim")
    with enclave:
        backend = enclave._backend
        entry = next(e for e in backend.host.entries.values() if e.codec.call.name == "clock_gettime")
        entry.fn = lying
        backend.client.cached_clock = True  # the process backend's default, on sim so the host can be swapped
        backend.rt.extra.pop("time", None)
        capfd.readouterr()
        gc.collect()
        gc.disable()  # hypothesis's gc callback reads the clock: it must not take the program's answers
        try:
            status = enclave.run_code(code)
        finally:
            gc.enable()
        out, err = capfd.readouterr()
    assert status == 0, err
    assert out.splitlines() == ["cached True", "refused 5 True"]
    assert len(asked) == 2  # the first answer, then the resync that lied: nothing in between was asked
    assert [v.call for v in backend.client.violations] == ["clock_gettime"]


def test_strict_time_is_a_command_line_flag(tmp_path: Path) -> None:
    from conftest import run_shim

    code = "import time; a = time.monotonic(); print(time.monotonic() >= a)"
    for options in ([], ["--strict-time"]):
        r = run_shim(["-c", code], backend="process", cwd=tmp_path, options=options, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == b"True\n"
    r = run_shim(["--strict-time", "--summary", "-c", "import time\nfor _ in range(300): time.monotonic()"],
                 backend="process", cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    assert b"clock_gettime" in r.stderr
