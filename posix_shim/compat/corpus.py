"""The corpus matrix: load and select the programs, run each natively and under each backend, judge the runs.

Every program of a corpus directory (programs/ + expectations.toml) runs natively and then under each backend
through the real command line (`python -m posix_shim --backend B [policy flags] programs/X.py`), each run in a
fresh empty scratch directory with a timeout.  A row passes when stdout and the exit status are identical to
native, or - for a program the corpus promises is refused - when it ends with an uncaught OSError carrying the
promised errno after printing a prefix of the native output.  Anything else is a failure, and its reason is the
first differing line or the exception the enclave run ended with.
"""

from __future__ import annotations

import dataclasses
import errno as errno_mod
import fnmatch
import os
import sys
import tempfile
import tomllib
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .runs import REPO, RunResult, clip, run_in_scratch, uncaught_exception

DEFAULT_CORPUS = REPO / "compat_tests"

# ---------------------------------------------------------------------------------------------------------------
# Needs -> policy flags: the one place that knows what a corpus program's `needs` grant.
# ---------------------------------------------------------------------------------------------------------------


def _tmp_dirs() -> list[str]:
    return [tempfile.gettempdir()]


def _zoneinfo_dirs() -> list[str]:
    return [d for d in zoneinfo.TZPATH if os.path.isdir(d)]


# need -> (what it grants, in words; {flag kind: function giving the values}).  Kinds are the policy's flags:
# --allow-read, --allow-write, --allow-net, --allow-env (tests/test_compat.py checks the real CLI takes them).
NEEDS: dict[str, tuple[str, dict[str, Callable[[], list[str]]]]] = {
    "net": ("loopback networking", {"net": lambda: ["127.0.0.1", "::1", "localhost"]}),
    "tmp": ("read and write the system temp directory", {"read": _tmp_dirs, "write": _tmp_dirs}),
    "zoneinfo": ("read the time zone database", {"read": _zoneinfo_dirs}),
}
FLAG_KINDS = ("read", "write", "net", "env")


def policy_flags(needs: Iterable[str]) -> list[str]:
    """The command-line flags that grant `needs` beyond the default policy: one flag per kind with comma-joined
    values, in a fixed order."""
    values: dict[str, list[str]] = {}
    for need in needs:
        if need not in NEEDS:
            raise ValueError(f"unknown need {need!r}; known: {', '.join(NEEDS)}")
        for kind, fn in NEEDS[need][1].items():
            for v in fn():
                values.setdefault(kind, [])
                if v not in values[kind]:
                    values[kind].append(v)
    return [f"--allow-{kind}={','.join(values[kind])}" for kind in FLAG_KINDS if values.get(kind)]


# ---------------------------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------------------------

FAMILY_ORDER = ("files", "sockets", "time", "env", "process", "misc")


class CorpusError(ValueError):
    """expectations.toml is unusable: the message names the program and the key."""


@dataclasses.dataclass(frozen=True)
class Program:
    name: str
    path: Path
    family: str
    expect: str  # "native" | "refused"
    errno: str | None = None
    needs: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    description: str = ""
    notes: str = ""


_KEYS = {"file", "family", "expect", "errno", "needs", "args", "description", "notes"}


def load_corpus(corpus: Path) -> list[Program]:
    """The programs of a corpus directory (programs/ + expectations.toml), validated."""
    corpus = corpus.resolve()  # runs happen in scratch directories: every program path must be absolute
    path = corpus / "expectations.toml"
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise CorpusError(f"{path}: {exc.strerror} (a corpus directory holds programs/ and expectations.toml; "
                          "give one with --corpus DIR)") from None
    except tomllib.TOMLDecodeError as exc:
        raise CorpusError(f"{path}: {exc}") from None
    out = []
    for name, row in sorted(data.get("programs", {}).items()):
        where = f"{path}: [programs.{name}]"
        unknown = set(row) - _KEYS
        if unknown:
            raise CorpusError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        file = corpus / "programs" / row.get("file", f"{name}.py")
        if not file.is_file():
            raise CorpusError(f"{where}: file {file} does not exist")
        expect = row.get("expect", "native")
        if expect not in ("native", "refused"):
            raise CorpusError(f"{where}: expect must be 'native' or 'refused', not {expect!r}")
        err = row.get("errno")
        if expect == "refused" and (not isinstance(err, str) or not hasattr(errno_mod, err)):
            raise CorpusError(f"{where}: expect = 'refused' needs errno = an errno name such as 'ENOSYS'")
        needs = tuple(row.get("needs", ()))
        for need in needs:
            if need not in NEEDS:
                raise CorpusError(f"{where}: unknown need {need!r}; known: {', '.join(NEEDS)}")
        family = row.get("family", "misc")
        if family not in FAMILY_ORDER:
            raise CorpusError(f"{where}: family must be one of {', '.join(FAMILY_ORDER)}, not {family!r}")
        args = row.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise CorpusError(f"{where}: args must be a list of strings")
        out.append(Program(name, file, family, expect, err, needs, tuple(args), row.get("description", ""),
                           row.get("notes", "")))
    if not out:
        raise CorpusError(f"{path}: no [programs.*] tables")
    return sorted(out, key=lambda p: (FAMILY_ORDER.index(p.family), p.name))


def select_programs(programs: Sequence[Program], only: str | None) -> list[Program]:
    """`--only`: comma-separated names or glob patterns (a bare word also matches as a substring)."""
    if not only:
        return list(programs)
    pats = [p.strip() for p in only.split(",") if p.strip()]

    def match(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) if any(c in p for c in "*?[") else p in name for p in pats)

    return [p for p in programs if match(p.name)]


def available_backends() -> list[str]:
    """Every backend of this build; one the machine cannot start (no seccomp) shows as failing runs."""
    from ..enclave import BACKENDS

    return list(BACKENDS)


def native_command(program: Program) -> list[str]:
    return [sys.executable, str(program.path), *program.args]


def enclave_command(program: Program, backend: str, flags: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "posix_shim", "--backend", backend, *flags, str(program.path), *program.args]


# ---------------------------------------------------------------------------------------------------------------
# Judging a run
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: str  # "pass" | "refused" (as promised) | "fail" | "broken" (the native run itself failed)
    reason: str = ""
    ratio: float | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "refused")


def first_difference(expected: str, actual: str) -> str:
    """The first line where two outputs differ, as the reason of a failure."""
    a, b = expected.splitlines(), actual.splitlines()
    for i, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if x != y:
            return f"line {i}: native {clip(x, 70)!r}, enclave {clip(y, 70)!r}"
    if len(a) > len(b):
        return f"line {len(b) + 1}: native {clip(a[len(b)], 70)!r}, enclave output ended"
    if len(b) > len(a):
        return f"line {len(a) + 1}: enclave printed extra {clip(b[len(a)], 70)!r}"
    return "outputs differ only in line endings or a trailing newline"


def _errno_name(err: int | None) -> str:
    return errno_mod.errorcode.get(err, str(err)) if err is not None else "no errno"


def judge(program: Program, native: RunResult, enclave: RunResult) -> Verdict:
    """Compare one enclave run with the native run against what the corpus promises."""
    ratio = enclave.seconds / native.seconds if native.seconds > 0 and not enclave.timed_out else None
    if native.timed_out or native.returncode != 0:
        why = "timed out" if native.timed_out else f"exit {native.returncode}"
        exc = uncaught_exception(native.stderr)
        return Verdict("broken", f"the native run failed ({why}{': ' + clip(str(exc)) if exc else ''})")
    if enclave.timed_out:
        return Verdict("fail", f"timed out (no exit after {enclave.seconds:.0f} s); last output: "
                               f"{clip(enclave.stdout.splitlines()[-1], 80) if enclave.stdout else 'none'!s}")
    exc = uncaught_exception(enclave.stderr)
    if program.expect == "refused":
        want = getattr(errno_mod, program.errno or "ENOSYS")
        if enclave.returncode == 0:
            same = " with output identical to native" if enclave.stdout == native.stdout else ""
            return Verdict("fail", f"exit 0{same}: expected an uncaught OSError {program.errno}", ratio)
        if exc is None:
            tail = enclave.stderr.strip().splitlines()[-1:] or ["no stderr"]
            return Verdict("fail", f"exit {enclave.returncode} without a traceback ({clip(tail[0], 100)}); "
                                   f"expected an uncaught OSError {program.errno}", ratio)
        if exc.errno != want:
            return Verdict("fail", f"ended with {clip(str(exc))} ({_errno_name(exc.errno)}); expected "
                                   f"{program.errno}", ratio)
        if not native.stdout.startswith(enclave.stdout):
            diff = first_difference(native.stdout, enclave.stdout)
            return Verdict("fail", f"refused as promised, but printed before: {diff}", ratio)
        return Verdict("refused", clip(str(exc)), ratio)
    if enclave.returncode == native.returncode and enclave.stdout == native.stdout:
        return Verdict("pass", "", ratio)
    if enclave.returncode != native.returncode:
        if exc is not None:
            return Verdict("fail", f"exit {enclave.returncode}: {clip(str(exc))}", ratio)
        if enclave.stdout != native.stdout:
            return Verdict("fail", f"exit {enclave.returncode}: {first_difference(native.stdout, enclave.stdout)}",
                           ratio)
        tail = enclave.stderr.strip().splitlines()[-1:] or ["no stderr"]
        return Verdict("fail", f"exit {enclave.returncode} (native {native.returncode}): {clip(tail[0])}", ratio)
    return Verdict("fail", first_difference(native.stdout, enclave.stdout), ratio)


# ---------------------------------------------------------------------------------------------------------------
# The matrix
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    program: Program
    native: RunResult
    flags: list[str]
    verdicts: dict[str, Verdict]  # backend -> verdict


def run_matrix(programs: Sequence[Program], backends: Sequence[str], timeout: float = 60.0,
               progress: Callable[[str], None] | None = None) -> list[Row]:
    """Run every program natively and on every backend, sequentially (so that the time ratios compare like
    with like on a loaded machine)."""
    say = progress or (lambda _msg: None)
    rows = []
    for i, program in enumerate(programs, 1):
        flags = policy_flags(program.needs)
        native = run_in_scratch(native_command(program), timeout)
        verdicts = {}
        parts = [f"native {native.seconds:.2f}s"]
        for backend in backends:
            enclave = run_in_scratch(enclave_command(program, backend, flags), timeout)
            v = judge(program, native, enclave)
            verdicts[backend] = v
            ratio = f" x{v.ratio:.1f}" if v.ratio is not None else ""
            parts.append(f"{backend} {v.status}{ratio}" + (f" ({v.reason})" if v.status in ("fail", "broken")
                                                           else ""))
        rows.append(Row(program, native, flags, verdicts))
        say(f"[{i}/{len(programs)}] {program.name}: " + ", ".join(parts))
    return rows
