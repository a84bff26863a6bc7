"""`python -m benchmarks.programs [-n 7] [--backend sim,process] [--only NAMES]`: small real programs, timed whole.

Each program runs as a user types it, natively (`python -m json.tool data.json`) and inside an enclave
(`python -m posix_shim --backend B [flags] -m json.tool data.json`), with only the policy flags it needs beyond the
defaults (the current directory, where its files are, is readable and writable by default).  Native and enclave
runs alternate round by round (native, sim, process, native, ...) so a noisy neighbour hits every side, and the
medians of wall time (the budget's measure) are printed with their ratio to native, then the same for the CPU time
of the finished runs (steadier on a shared machine).  `python -c pass` runs in the same rounds, so that
each program's time splits into start-up and the rest ("beyond start-up": the enclave's time minus its `-c pass`,
against native's time minus native's `-c pass`).  Bytecode caching is on and filled by one warm-up run of each,
as in benchmarks/startup.py, whose helpers run the commands; standard output is buffered, as in a user's shell.

Budgets (issue 17): within 2x native on sim and 3x on process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/programs.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import startup

BUDGET = {"sim": 2.0, "process": 3.0}
STARTUP = "startup"  # the `python -c pass` row measured in the same rounds


@dataclass(frozen=True)
class Program:
    """One small real program: what follows `python` on its command line, and the policy flags it needs inside."""

    name: str
    args: tuple[str, ...]
    flags: tuple[str, ...] = ()

    def command(self, side: str) -> list[str]:
        if side == "native":
            return [sys.executable, *self.args]
        return [sys.executable, "-m", "posix_shim", "--backend", side, *self.flags, *self.args]


ECHO_MESSAGES = 2000

PROGRAMS = (
    Program("json_tool", ("-m", "json.tool", "data.json")),
    Program("zipfile_c", ("-m", "zipfile", "-c", "out.zip", "src")),
    Program("compileall", ("-m", "compileall", "-q", "-f", "pkg")),  # -f: every run compiles, as the first did
    Program("pytest", ("-m", "pytest", "-q", "-p", "no:cacheprovider", "suite")),
    # A server on a port the kernel chooses, and its client, on loopback: the one grant beyond the defaults.
    Program("asyncio_echo", ("echo.py", str(ECHO_MESSAGES)), ("--allow-net=127.0.0.1",)),
)
BY_NAME = {p.name: p for p in PROGRAMS}

ECHO = '''"""An asyncio echo server and client in one program: N messages, each sent and awaited back."""
import asyncio
import sys


async def handle(reader, writer):
    while data := await reader.readline():
        writer.write(data)
        await writer.drain()
    writer.close()


async def main(n):
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(n):
        writer.write(b"message %d\\n" % i)
        await writer.drain()
        assert await reader.readline() == b"message %d\\n" % i
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    print("echoed", n)


asyncio.run(main(int(sys.argv[1])))
'''

SUITE = '''"""A small test suite: plain asserts, a parametrized test, a fixture, a class."""
import json

import pytest


@pytest.fixture()
def record():
    return {"name": "enclave", "size": 3, "tags": ["a", "b"]}


@pytest.mark.parametrize("n", range(20))
def test_square(n):
    assert n * n == sum(n for _ in range(n))


def test_round_trip(record):
    assert json.loads(json.dumps(record)) == record


def test_raises():
    with pytest.raises(ZeroDivisionError):
        1 / 0


class TestStrings:
    def test_upper(self):
        assert "abc".upper() == "ABC"

    def test_split(self):
        assert "a,b,c".split(",") == ["a", "b", "c"]
'''


def prepare(workdir: Path) -> None:
    """The programs' inputs, in `workdir` (the current directory of every run)."""
    workdir.mkdir(parents=True, exist_ok=True)
    records = [{"id": i, "name": f"item {i}", "tags": ["x", "y", str(i % 7)], "price": i * 1.25,
                "nested": {"ok": i % 2 == 0, "parts": list(range(i % 5))}} for i in range(2000)]
    (workdir / "data.json").write_text(json.dumps(records))
    src = workdir / "src"
    for i in range(100):
        d = src / f"d{i % 5}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:03d}.txt").write_text(f"file {i}\n" * (20 + i % 50))
    pkg = workdir / "pkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    for i in range(30):
        body = "\n".join(f"def f{j}(x):\n    return [x * {j} + k for k in range(10) if k % 2]\n" for j in range(20))
        (pkg / f"mod{i:02d}.py").write_text(f'"""Module {i}."""\n\n{body}\n')
    suite = workdir / "suite"
    suite.mkdir(exist_ok=True)
    (suite / "test_small.py").write_text(SUITE)
    # A project's own configuration, as a real suite has: pytest's search for one stops here instead of probing
    # the folders above, which the default policy does not grant.
    (suite / "pytest.ini").write_text("[pytest]\n")
    (workdir / "echo.py").write_text(ECHO)


def environment() -> dict[str, str]:
    """startup.environment() (the repository on the path, bytecode caching on), and stdout buffered as in a
    user's shell: some sandboxes set PYTHONUNBUFFERED, which makes every small write of `json.tool` a system call
    natively and an ocall inside, and would measure that setting instead of the program."""
    env = startup.environment()
    env.pop("PYTHONUNBUFFERED", None)
    return env


@contextmanager
def inside(workdir: Path) -> Iterator[None]:
    """Run from `workdir`: the programs name their files relative to it, and it is what the default policy grants
    (startup.timed runs its commands in the current directory)."""
    previous = os.getcwd()
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(previous)


def _timed(name: str, side: str) -> Callable[[], tuple[float, float]]:
    """A function that runs program `name` (or `-c pass` for STARTUP) once on `side`: (wall ms, CPU ms)."""
    cmd = startup.command(side) if name == STARTUP else BY_NAME[name].command(side)
    env = environment()
    return lambda: startup.timed(cmd, env)


def runner(name: str, side: str) -> Callable[[], float]:
    """A function that runs program `name` once on `side` and returns its wall ms (benchmarks/run.py's figures)."""
    run = _timed(name, side)
    return lambda: run()[0]


def measure(names: Sequence[str], sides: Sequence[str], rounds: int, workdir: Path, warmup: bool = True
            ) -> dict[tuple[str, str], tuple[float, float]]:
    """Median (wall ms, CPU ms) per (program, side); the sides alternate within each round, after one warm-up of
    each.  CPU is the kernel's account of the finished child and its own children (the process backend's enclave),
    user + system: a busy neighbour disturbs it less than the wall clock."""
    runs = {(n, s): _timed(n, s) for n in names for s in sides}
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in runs}
    with inside(workdir):
        if warmup:
            for run in runs.values():
                run()
        for _ in range(rounds):
            for key, run in runs.items():
                samples[key].append(run())
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in samples.items()}


def report(result: dict[tuple[str, str], float], names: Sequence[str], backends: Sequence[str], what: str
           ) -> list[str]:
    """One table: each program's median per side, its ratio to native (`!` over budget), and the ratio of what is
    left after each side's own `-c pass` (start-up) is taken off."""
    lines = []
    head = f"  {'program':<14} {'native':>9}"
    for b in backends:
        head += f"  {b:>9} {'ratio':>6} {'beyond start-up':>16}"
    lines.append(head + f"   ({what}; beyond start-up: ratio after each side's own `-c pass`)")
    nat_pass = result.get((STARTUP, "native"))
    for name in names:
        nat = result[name, "native"]
        row = f"  {name:<14} {nat:9.1f}"
        for b in backends:
            enc = result[name, b]
            ratio = enc / nat
            beyond = ""
            if name != STARTUP and nat_pass is not None and nat > nat_pass:
                beyond = f"{(enc - result[STARTUP, b]) / (nat - nat_pass):5.2f}x"
            mark = " " if name == STARTUP or ratio <= BUDGET[b] else "!"
            row += f"  {enc:9.1f} {ratio:5.2f}x{mark}{beyond:>16}"
        lines.append(row)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.programs", description=__doc__.split("\n\n")[1])
    parser.add_argument("-n", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--backend", default="sim,process")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated programs (default all: "
                                                         f"{', '.join(BY_NAME)})")
    parser.add_argument("--workdir", metavar="DIR", help="where the inputs are written and the programs run "
                        "(default: a new temporary directory)")
    args = parser.parse_args(argv)
    backends = [b for b in args.backend.split(",") if b]
    for b in backends:
        if b not in BUDGET:
            parser.error(f"unknown backend {b!r}; choose from {', '.join(BUDGET)}")
    names = [n for n in (args.only or ",".join(BY_NAME)).split(",") if n]
    for n in names:
        if n not in BY_NAME:
            parser.error(f"unknown program {n!r}; choose from {', '.join(BY_NAME)}")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="posix-shim-programs-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        prepare(workdir)
        result = measure([STARTUP, *names], ["native", *backends], args.n, workdir)
    print(f"small real programs, medians of {args.n} alternating runs (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus)")
    rows = [STARTUP, *names]
    for line in report({k: v[0] for k, v in result.items()}, rows, backends, "wall ms: the budget's measure"):
        print(line)
    budget = ", ".join(f"{b} {BUDGET[b]:g}x" for b in backends)
    print(f"  (! marks a program over its budget: {budget})")
    for line in report({k: v[1] for k, v in result.items()}, rows, backends, "CPU ms of the run and its children"):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
