"""`python -m benchmarks [--backend sim,process] [--json FILE] [--plot FILE.svg] [--quick] [--only NAMES]`

What the boundary costs, as ratios against native Python measured in the same run, on the same machine, round
by round (native and enclave rounds alternate, so a noisy neighbour hits both), reported as medians.

Figures (name, unit):
* micro, per call in us: pread_16B, stat, write_16B, time, monotonic, echo_16B (socketpair ping-pong), and on
  sim the bare stub cost ocall_pread_16B / ocall_stat (OcallClient + SimTransport, no libc layer);
* bulk, MiB/s through open(): read_1MiB, write_1MiB;
* start-up, ms: `python -m posix_shim -c pass` against `python -c pass`;
* enclave_call_repeat, us per call: a trivial `Enclave.call` repeated on a started enclave (entering and leaving
  the enclave: on sim, interposition installed and removed each time) against calling the same function here;
* programs: copytree_1000 (ms), asyncio_echo_10000 (ms), http_1000 (req/s); the number in the name is the
  workload (files, messages, requests), smaller with --quick (copytree_200, asyncio_echo_1000, http_100);
* whole programs, ms, start-up included: cli_json_tool, cli_zipfile_c, cli_compileall, cli_pytest,
  cli_asyncio_echo: `python -m posix_shim --backend B ... -m json.tool data.json` against `python -m json.tool
  data.json` (benchmarks/programs.py, which also runs them alone with more rounds and splits off start-up).

The enclave side of every micro, bulk and program figure (not the cli_ ones) runs inside an enclave as an ecall
(`Enclave.call("benchmarks.inner:...")`) and times itself; the native side runs the very same function here.
`ratio` is enclave / native: above 1 is slower for times, below 1 is slower for throughputs.
A figure whose family or backend is not in this build prints "skipped: reason" and is left out of the JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as `python benchmarks/run.py`
    sys.path.insert(0, str(REPO))

from benchmarks import inner, plot, programs, raw  # noqa: E402
from ocall_bridge.access import ALLOW_ALL  # noqa: E402
from posix_shim.enclave import Enclave, EnclaveCallError  # noqa: E402

BACKENDS = ("sim", "process")
MIB = 1 << 20


class Skip(Exception):
    """This figure cannot be measured in this build; the message says why."""


@dataclass
class Figure:
    name: str
    backend: str
    native: float
    enclave: float
    unit: str

    @property
    def ratio(self) -> float:
        return self.enclave / self.native if self.native else float("inf")

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "native": round(self.native, 4),
                "enclave": round(self.enclave, 4), "ratio": round(self.ratio, 4), "unit": self.unit}


@dataclass(frozen=True)
class Plan:
    """How much work: repetitions per round and rounds per figure."""

    rounds: int
    micro_n: dict[str, int]
    bulk_mib: int
    startup_rounds: int
    program_rounds: int
    files: int
    messages: int
    requests: int
    program_warmup: bool = True
    cli_rounds: int = 5  # whole programs (CLI): each round starts two interpreters, up to seconds for pytest


FULL = Plan(rounds=7, micro_n={"pread_16B": 20000, "stat": 10000, "write_16B": 20000, "time": 50000,
                               "monotonic": 50000, "echo_16B": 5000, "ocall_pread_16B": 50000, "ocall_stat": 20000,
                               "enclave_call_repeat": 500},
            bulk_mib=64, startup_rounds=10, program_rounds=5, files=1000, messages=10000, requests=1000)
QUICK = Plan(rounds=3, micro_n={"pread_16B": 2000, "stat": 1000, "write_16B": 2000, "time": 5000, "monotonic": 5000,
                                "echo_16B": 500, "ocall_pread_16B": 5000, "ocall_stat": 2000,
                                "enclave_call_repeat": 100},
             bulk_mib=8, startup_rounds=3, program_rounds=1, files=200, messages=1000, requests=100,
             program_warmup=False, cli_rounds=1)

MICRO = ("pread_16B", "stat", "write_16B", "time", "monotonic", "echo_16B")
RAW = ("ocall_pread_16B", "ocall_stat")
# Native syscalls made by C code in the confined process child, forwarded through seccomp to the host's
# supervisor (benchmarks/forwarded.py): figures of the process backend only.
FORWARDED = ("native_stat", "native_open_close")
BULK = ("read_1MiB", "write_1MiB")
PROGRAMS = ("copytree", "asyncio_echo", "http")  # reported as copytree_<files>, asyncio_echo_<messages>, ...
# Small real programs run whole, as a user types them, start-up included (benchmarks/programs.py).
CLI = tuple(f"cli_{p.name}" for p in programs.PROGRAMS)
ALL = (*RAW, *MICRO, *FORWARDED, *BULK, "startup", "enclave_call_repeat", *PROGRAMS, *CLI)


def program_name(name: str, plan: Plan) -> str:
    size = {"copytree": plan.files, "asyncio_echo": plan.messages, "http": plan.requests}[name]
    return f"{name}_{size}"


def _figure_key(word: str) -> str:
    """--only accepts a program's reported name (http_1000) as well as its bare name (http)."""
    for p in PROGRAMS:
        if word == p or (word.startswith(p + "_") and word[len(p) + 1:].isdigit()):
            return p
    return word


# -- what this build has -----------------------------------------------------------------------------------


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def missing(name: str, backend: str) -> str | None:
    """Why `name` cannot be measured on `backend` in this build, or None."""
    if backend == "process" and not _has("posix_shim.process_backend"):
        return "the process backend is not in this build (posix_shim/process_backend.py)"
    if name in ("time", "monotonic") and not _has("enclave_libc.time"):
        return "the time family is not in this build (enclave_libc/time.py): time calls would not leave the enclave"
    if name in ("echo_16B", "asyncio_echo", "http", "cli_asyncio_echo"):
        for module in ("enclave_libc.sockets", "ocall_bridge.host.sockets"):
            if not _has(module):
                return f"the sockets family is not in this build ({module.replace('.', '/')}.py)"
    if name in ("asyncio_echo", "http", "cli_asyncio_echo"):
        for module in ("enclave_libc.poll", "ocall_bridge.host.poll"):
            if not _has(module):
                return f"the poll family is not in this build ({module.replace('.', '/')}.py)"
    return None


# -- measuring ---------------------------------------------------------------------------------------------


def _alternate(rounds: int, native: Callable[[], float], enclave: Callable[[], float], warmup: bool = True
               ) -> tuple[float, float]:
    """Medians of native and enclave values, measured in alternation after one warm-up of each."""
    if warmup:
        native()
        enclave()
    nat, enc = [], []
    for _ in range(rounds):
        nat.append(native())
        enc.append(enclave())
    return statistics.median(nat), statistics.median(enc)


class Bench:
    def __init__(self, plan: Plan, workdir: Path, out: Callable[[str], None]) -> None:
        self.plan = plan
        self.workdir = workdir
        self.out = out
        self.enclaves: dict[str, Enclave] = {}
        self._forwarded: dict[str, tuple[float, float]] | None = None

    # -- shared fixtures -------------------------------------------------------------------------------------
    def enclave(self, backend: str) -> Enclave:
        enc = self.enclaves.get(backend)
        if enc is None:
            # Allow-all (`-A`): the figures are the cost of the mechanism; a policy's own checks come on top.
            enc = self.enclaves[backend] = Enclave(policy=ALLOW_ALL, backend=backend).start()
            enc.call("benchmarks.inner:nothing")  # imports inside the enclave, before anything is timed
        return enc

    def ecall(self, backend: str, function: str, *args: Any) -> Any:
        try:
            return self.enclave(backend).call(f"benchmarks.inner:{function}", *args)
        except EnclaveCallError as exc:
            if exc.type_name == "Unsupported":  # ENOSYS: a call this build's enclave does not serve
                raise Skip(f"inside the enclave: {exc.message}") from None
            raise RuntimeError(f"inside the enclave: {exc}") from None

    def prepare(self) -> None:
        (self.workdir / "micro.dat").write_bytes(os.urandom(4096))
        (self.workdir / "bulk.dat").write_bytes(os.urandom(self.plan.bulk_mib * MIB))
        tree = self.workdir / "tree"
        for i in range(self.plan.files):
            d = tree / f"d{i % 10:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:04d}.txt").write_bytes(b"x" * (64 + i % 200))

    def close(self) -> None:
        for enc in self.enclaves.values():
            enc.close()

    # -- figures ---------------------------------------------------------------------------------------------
    def figure(self, name: str, backend: str) -> Figure:
        if name in RAW:
            return self.raw(name)
        if name in FORWARDED:
            return self.forwarded(name)
        if name in MICRO:
            return self.micro(name, backend)
        if name in BULK:
            return self.bulk(name, backend)
        if name == "startup":
            return self.startup(backend)
        if name == "enclave_call_repeat":
            return self.call_repeat(backend)
        if name in CLI:
            return self.cli(name, backend)
        return self.program(name, backend)

    def raw(self, name: str) -> Figure:
        n = self.plan.micro_n[name]
        path = str(self.workdir / "micro.dat")
        nat, enc = [], []
        raw.measure(name, n // 10 or 1, path)  # warm-up
        for _ in range(self.plan.rounds):
            a, b = raw.measure(name, n, path)
            nat.append(a / n / 1000)
            enc.append(b / n / 1000)
        return Figure(name, "sim", statistics.median(nat), statistics.median(enc), "us")

    def forwarded(self, name: str) -> Figure:
        from benchmarks import forwarded

        if self._forwarded is None:
            runs = [forwarded.measure(max(self.plan.micro_n["stat"] // 5, 200)) for _ in range(self.plan.rounds)]
            self._forwarded = {k: (statistics.median(r["native"][k] for r in runs),
                                   statistics.median(r["forwarded"][k] for r in runs)) for k in ("stat", "open_close")}
        native, inside = self._forwarded[name.removeprefix("native_")]
        return Figure(name, "process", native, inside, "us")

    def micro(self, name: str, backend: str) -> Figure:
        n = self.plan.micro_n[name]
        wd = str(self.workdir)
        nat, enc = _alternate(self.plan.rounds, lambda: inner.micro(name, n, wd) / n / 1000,
                              lambda: self.ecall(backend, "micro", name, n, wd) / n / 1000)
        return Figure(name, backend, nat, enc, "us")

    def bulk(self, name: str, backend: str) -> Figure:
        mib = self.plan.bulk_mib
        wd = str(self.workdir)
        rate = lambda ns: mib / (ns / 1e9)
        nat, enc = _alternate(self.plan.rounds, lambda: rate(inner.bulk(name, mib, wd)),
                              lambda: rate(self.ecall(backend, "bulk", name, mib, wd)))
        return Figure(name, backend, nat, enc, "MiB/s")

    def startup(self, backend: str) -> Figure:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        # A user's Python caches bytecode; some sandboxes turn that off, which would make every start-up compile
        # the whole runtime from source (~100 ms here) and measure the compiler, not the enclave.  The warm-up
        # round fills the cache.
        env.pop("PYTHONDONTWRITEBYTECODE", None)

        def timed(cmd: list[str]) -> float:
            t0 = time.perf_counter()
            done = subprocess.run(cmd, env=env, cwd=self.workdir, capture_output=True, timeout=120)
            elapsed = (time.perf_counter() - t0) * 1000
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[1:])} exited {done.returncode}: "
                                   f"{done.stderr.decode(errors='replace').strip()[-300:]}")
            return elapsed

        nat, enc = _alternate(self.plan.startup_rounds, lambda: timed([sys.executable, "-c", "pass"]),
                              lambda: timed([sys.executable, "-m", "posix_shim", "--backend", backend,
                                             "-c", "pass"]))
        return Figure("startup", backend, nat, enc, "ms")

    def call_repeat(self, backend: str) -> Figure:
        """us per trivial ecall on a started enclave, against resolving and calling the same function here."""
        from posix_shim.enclave import resolve_target

        n = self.plan.micro_n["enclave_call_repeat"]
        enc = self.enclave(backend)
        target = "benchmarks.inner:nothing"

        def native() -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                resolve_target(target)()
            return (time.perf_counter() - t0) * 1e6 / n

        def enclave() -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                enc.call(target)
            return (time.perf_counter() - t0) * 1e6 / n

        nat, inside = _alternate(self.plan.rounds, native, enclave)
        return Figure("enclave_call_repeat", backend, nat, inside, "us")

    def cli(self, name: str, backend: str) -> Figure:
        """ms of one whole program (benchmarks/programs.py) under the shim, against the same program natively."""
        workdir = self.workdir / "programs"
        if not workdir.exists():
            programs.prepare(workdir)
        program = name.removeprefix("cli_")
        with programs.inside(workdir):
            nat, enc = _alternate(self.plan.cli_rounds, programs.runner(program, "native"),
                                  programs.runner(program, backend), self.plan.program_warmup)
        return Figure(name, backend, nat, enc, "ms")

    def program(self, name: str, backend: str) -> Figure:
        plan = self.plan
        label = program_name(name, plan)
        if name == "copytree":
            src = str(self.workdir / "tree")
            counter = iter(range(10**6))

            def copy(run: Callable[..., int]) -> float:
                dst = str(self.workdir / f"copy{next(counter)}")
                try:
                    return run("copytree", src, dst) / 1e6
                finally:
                    shutil.rmtree(dst, ignore_errors=True)

            nat, enc = _alternate(plan.program_rounds, lambda: copy(lambda f, *a: getattr(inner, f)(*a)),
                                  lambda: copy(lambda f, *a: self.ecall(backend, f, *a)), plan.program_warmup)
            return Figure(label, backend, nat, enc, "ms")
        if name == "asyncio_echo":
            count = plan.messages
            nat, enc = _alternate(plan.program_rounds, lambda: inner.asyncio_echo(count) / 1e6,
                                  lambda: self.ecall(backend, "asyncio_echo", count) / 1e6, plan.program_warmup)
            return Figure(label, backend, nat, enc, "ms")
        if name == "http":
            count = plan.requests
            rate = lambda ns: count / (ns / 1e9)
            nat, enc = _alternate(plan.program_rounds, lambda: rate(inner.http_requests(count)),
                                  lambda: rate(self.ecall(backend, "http_requests", count)), plan.program_warmup)
            return Figure(label, backend, nat, enc, "req/s")
        raise ValueError(f"unknown figure {name!r}")


# -- output ------------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:,.3f}" if value < 10 else f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def line(fig: Figure) -> str:
    extra = f"  (+{fig.enclave - fig.native:.2f} us per call)" if fig.unit == "us" else ""
    return (f"  {fig.name:<20} {fig.backend:<8} native {_fmt(fig.native):>10} {fig.unit:<5}  "
            f"enclave {_fmt(fig.enclave):>10} {fig.unit:<5}  ratio {fig.ratio:6.2f}{extra}")


def markdown(figures: Sequence[Figure]) -> str:
    rows = ["| figure | backend | native | enclave | unit | ratio (enclave/native) |", "|---|---|---:|---:|---|---:|"]
    for f in figures:
        rows.append(f"| {f.name} | {f.backend} | {_fmt(f.native)} | {_fmt(f.enclave)} | {f.unit} | {f.ratio:.2f} |")
    return "\n".join(rows)


# -- the command -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default=",".join(BACKENDS),
                        help="comma-separated backends to measure (default: sim,process)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as a JSON list to FILE")
    parser.add_argument("--quick", action="store_true", help="a smoke run in well under a minute (noisy figures)")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated figures (default all: {', '.join(ALL)})")
    parser.add_argument("--markdown", action="store_true", help="print the final table as Markdown")
    parser.add_argument("--plot", metavar="FILE", help="also draw each figure's cost against native per backend as an "
                        "SVG (needs matplotlib: pip install 'posix_shim[plot]')")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    for b in backends:
        if b not in BACKENDS:
            print(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}", file=sys.stderr)
            return 2
    names = [_figure_key(n.strip()) for n in args.only.split(",")] if args.only else list(ALL)
    for n in names:
        if n not in ALL:
            print(f"unknown figure {n!r}; choose from {', '.join(ALL)}", file=sys.stderr)
            return 2
    plan = QUICK if args.quick else FULL
    if args.plot:
        try:
            plot.require()  # before anything is measured: a missing extra must not cost a run
        except plot.PlotUnavailable as exc:
            print(f"python -m benchmarks: {exc}", file=sys.stderr)
            return 2

    def out(text: str) -> None:
        print(text, flush=True)

    out(f"posix_shim benchmarks ({'quick' if args.quick else 'full'}): medians of {plan.rounds} rounds, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    figures: list[Figure] = []
    failed = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="posix-shim-bench-") as tmp:
        bench = Bench(plan, Path(tmp), out)
        bench.prepare()
        try:
            for backend in backends:
                for name in names:
                    if name in RAW and backend != "sim":
                        continue  # the bare stub cost is a figure of the sim backend only
                    if name in FORWARDED and backend != "process":
                        continue  # only the confined process child forwards native syscalls
                    shown = program_name(name, plan) if name in PROGRAMS else name
                    reason = missing(name, backend)
                    if reason is not None:
                        out(f"  {shown:<20} {backend:<8} skipped: {reason}")
                        continue
                    try:
                        fig = bench.figure(name, backend)
                    except Skip as exc:
                        out(f"  {shown:<20} {backend:<8} skipped: {exc}")
                        continue
                    except Exception as exc:  # one broken figure must not hide the others
                        failed += 1
                        out(f"  {shown:<20} {backend:<8} FAILED: {type(exc).__name__}: {exc}")
                        continue
                    figures.append(fig)
                    out(line(fig))
        finally:
            bench.close()
    out(f"{len(figures)} figures in {time.perf_counter() - started:.1f} s"
        + (f", {failed} failed" if failed else ""))
    if args.markdown:
        out(markdown(figures))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([fig.as_json() for fig in figures], f, indent=1)
            f.write("\n")
    if args.plot:
        if figures:
            plot.render(figures, args.plot, plot.title_for({"mode": "quick" if args.quick else "full",
                                                            "rounds": plan.rounds,
                                                            "python": sys.version.split()[0],
                                                            "cpus": os.cpu_count()}))
            out(f"plot written to {args.plot}")
        else:
            out("no figures measured: no plot written")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
