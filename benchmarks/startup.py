"""`python -m benchmarks.startup [-n 20] [--backend sim,process]`: start-up alone, more rounds than the main run.

Runs `python -c pass` and `python -m posix_shim --backend B -c pass` as subprocesses, alternating (native,
sim, process, native, ...) so a noisy neighbour hits every side, and prints the medians of wall time and of
the child's CPU time (user + sys, from the kernel's accounting of the finished child, which a busy
neighbour disturbs less than the wall clock).  Bytecode caching is on, as for a user (some sandboxes turn it
off; then every start would measure the compiler), and one warm-up of each fills the cache.

`--importtime` instead prints, for one start of each backend, the slowest imports (`python -X importtime`,
cumulative and self milliseconds); for the process backend, the runner's and the enclave process's apart.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def command(side: str) -> list[str]:
    if side == "native":
        return [sys.executable, "-c", "pass"]
    return [sys.executable, "-m", "posix_shim", "--backend", side, "-c", "pass"]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, child CPU ms) of one run of `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    wall = (time.perf_counter() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}")
    cpu = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000
    return wall, cpu


def measure(sides: Sequence[str], rounds: int) -> dict[str, tuple[float, float]]:
    """Median (wall ms, CPU ms) per side, the sides alternating round by round after one warm-up each."""
    env = environment()
    for side in sides:
        timed(command(side), env)
    samples: dict[str, list[tuple[float, float]]] = {s: [] for s in sides}
    for _ in range(rounds):
        for side in sides:
            samples[side].append(timed(command(side), env))
    return {s: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for s, v in samples.items()}


def _rows(stderr: str) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, name) of every `-X importtime` line."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2 and "cumulative" not in line:
            own, cumulative, name = line[len("import time:"):].split("|")
            rows.append((int(own), int(cumulative), name.rstrip()))
    return rows


def _table(title: str, rows: list[tuple[int, int, str]], top: int) -> str:
    rows = sorted(rows, key=lambda r: r[1], reverse=True)
    total = sum(own for own, _, _ in rows) / 1000
    return f"{title}: {len(rows)} imports, {total:.1f} ms in all\n" + "\n".join(
        f"  {cumulative / 1000:7.1f} ms  (self {own / 1000:5.1f})  {name}" for own, cumulative, name in rows[:top])


def importtime(side: str, top: int) -> str:
    """The `top` slowest imports (cumulative) of one start; for the process backend, the runner's and the enclave
    process's apart (the runner's alone via PYTHONPROFILEIMPORTTIME, which the enclave process's built
    environment does not carry; the enclave's as its boot line imports posix_shim.child)."""
    env = environment()
    timed(command(side), env)  # fills the bytecode cache
    cmd = command(side)
    if side != "process":
        done = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True,
                              timeout=120)
        return _table(side, _rows(done.stderr), top)
    host = subprocess.run(cmd, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, capture_output=True, text=True,
                          timeout=120)
    enclave = subprocess.run([sys.executable, "-X", "importtime", "-P", "-c",
                              "import gc; gc.disable(); import posix_shim.child, posix_shim.confine, "
                              "ocall_bridge.native"], env=env, capture_output=True, text=True, timeout=120)
    return (_table("process: the runner", _rows(host.stderr), top) + "\n"
            + _table("process: the enclave process (its imports before it confines itself)", _rows(enclave.stderr),
                     top))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.split("\n\n")[1])
    parser.add_argument("-n", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("--backend", default="sim,process")
    parser.add_argument("--importtime", action="store_true", help="where the time goes instead (one run each)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    backends = [b for b in args.backend.split(",") if b]
    if args.importtime:
        for b in backends:
            print(importtime(b, args.top))
        return 0
    result = measure(["native", *backends], args.n)
    nat_wall, nat_cpu = result["native"]
    print(f"start-up, medians of {args.n} alternating runs (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    for side, (wall, cpu) in result.items():
        print(f"  {side:<8} wall {wall:7.1f} ms ({wall / nat_wall:4.2f}x)   child cpu {cpu:7.1f} ms "
              f"({cpu / nat_cpu if nat_cpu else float('nan'):4.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
