"""`python -m posix_shim compat`: the compatibility matrix - what runs, on which backend, and which POSIX exists.

It writes docs/compat.md, in three sections, each between `<!-- BEGIN compat:NAME -->` / `<!-- END ... -->`
markers so that a run regenerating some sections keeps the others as they were:

* **matrix** - every program of the corpus (compat_tests/programs, described by compat_tests/expectations.toml)
  run natively and then under each backend, through the real command line
  (`python -m posix_shim --backend B [policy flags] programs/X.py`), each run in a fresh empty scratch directory
  with a timeout.  A row passes when stdout and the exit status are identical to native, or - for a program the
  corpus promises is refused - when it ends with an uncaught OSError carrying the promised errno after printing a
  prefix of the native output.  Anything else is a failure, and its reason is the first differing line or the
  exception the enclave run ended with.
* **support** - the POSIX support table, computed in-process from the ocall table (`ocall_bridge.calls.CALLS`)
  and the interposition registry (`posix_shim.interpose.all_replacements()`): every public function of os, io,
  socket, select, selectors, time, signal and fcntl, and what the enclave does with it.  It is deterministic, and
  tests/test_compat.py fails when the committed copy is out of date.
* **cpython** - CPython's own regression tests for those modules (the running interpreter's `test` package),
  run natively and inside the enclave, compared test by test.  Opt-in (`--cpython-tests`): it takes minutes.

How a replacement is classified (the `support` section).  Explicit marks win over inference, so a family that
wants its row to say something precise can say it:

* `replacement.__posix_shim_refused__ = True` (or an errno name such as "ENOSYS"): the call is refused;
* the replacement's `__name__` listed in its module's `REFUSED` tuple (enclave_libc/process.py keeps one): refused;
* otherwise the replacement's code is read (bytecode, never executed): the ocalls it makes (`<x>.ocall.NAME(...)`,
  or a call name passed as a string constant to a helper), following the enclave_libc functions and classes it
  uses.  A row of the table with the same name that is `inside` makes the function "served inside"; ocalls
  reached make it "ocall"; no ocall and a body that can only raise `Unsupported` makes it "refused"; no ocall
  at all makes it "served inside".  Reaching `Unsupported` next to real work adds "some arguments refused".
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import dis
import enum
import errno as errno_mod
import fnmatch
import importlib
import importlib.util
import inspect
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import types
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ocall_bridge.calls import CALLS

from . import compat_store

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / "compat_tests"
DEFAULT_OUTPUT = "docs/compat.md"
PROG = "posix-shim compat"

# The modules whose public functions the support table lists (the brief's seven, plus fcntl, which the files
# family interposes).
SUPPORT_MODULES = ("os", "io", "socket", "select", "selectors", "time", "signal", "fcntl")

# Which defining modules count as "this module's own" when a module has no __all__ (selectors imports ABCMeta,
# namedtuple ... which are not its API).
_OWN_DEFINERS = {
    "os": {"os", "posix"}, "io": {"io", "_io"}, "socket": {"socket", "_socket"}, "select": {"select"},
    "selectors": {"selectors"}, "time": {"time"}, "signal": {"signal", "_signal"}, "fcntl": {"fcntl"},
}

# The modules issue 18 measures (>= 95 % of the natively passing tests must pass inside on each backend).
CPYTHON_MODULES = ("test_fileio", "test_file", "test_genericpath", "test_posixpath", "test_shutil", "test_tempfile",
                   "test_glob", "test_pathlib", "test_os", "test_io", "test_socket", "test_selectors", "test_select",
                   "test_time", "test_asyncio.test_sock_lowlevel", "test_asyncio.test_streams", "test_socketserver",
                   "test_httpservers", "test_urllib2_localnet", "test_logging", "test_zipfile", "test_tarfile")

# Resources (`python -m test -u`) enabled for one module: test_socketserver requires "network" for the whole
# module, yet its servers and clients only use the loopback interface and unix sockets.
CPYTHON_RESOURCES: dict[str, tuple[str, ...]] = {"test_socketserver": ("network",)}

SECTIONS = ("matrix", "support", "cpython")

# ---------------------------------------------------------------------------------------------------------------
# Needs -> policy flags: the one place that knows what a corpus program's `needs` grant.
# ---------------------------------------------------------------------------------------------------------------


def _tmp_dirs() -> list[str]:
    return [tempfile.gettempdir()]


def _zoneinfo_dirs() -> list[str]:
    return [d for d in zoneinfo.TZPATH if os.path.isdir(d)]


# need -> (what it grants, in words; {flag kind: function giving the values}).  Kinds are the policy's flags:
# --allow-read, --allow-write, --allow-net, --allow-env.
NEEDS: dict[str, tuple[str, dict[str, Callable[[], list[str]]]]] = {
    "net": ("loopback networking", {"net": lambda: ["127.0.0.1", "::1", "localhost"]}),
    "tmp": ("read and write the system temp directory", {"read": _tmp_dirs, "write": _tmp_dirs}),
    "zoneinfo": ("read the time zone database", {"read": _zoneinfo_dirs}),
}


def _cli_flags() -> set[str]:
    from .cli import build_parser

    return {s for action in build_parser()._actions for s in action.option_strings}


def policy_flags(needs: Iterable[str], known_flags: set[str] | None = None) -> list[str]:
    """The command-line flags that grant `needs` beyond the default policy.

    One flag per kind with comma-joined values, in a fixed order.  A build whose CLI lacks a flag (the policy
    flags were built in parallel with this runner) gets `-A` instead, and the matrix says so.
    """
    known = _cli_flags() if known_flags is None else known_flags
    values: dict[str, list[str]] = {}
    for need in needs:
        if need not in NEEDS:
            raise ValueError(f"unknown need {need!r}; known: {', '.join(NEEDS)}")
        for kind, fn in NEEDS[need][1].items():
            for v in fn():
                values.setdefault(kind, [])
                if v not in values[kind]:
                    values[kind].append(v)
    flags = []
    for kind in ("read", "write", "net", "env"):
        if values.get(kind):
            flag = f"--allow-{kind}"
            if flag not in known:
                return ["-A"]
            flags.append(f"{flag}={','.join(values[kind])}")
    return flags


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
        raise CorpusError(f"{path}: {exc.strerror}") from None
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
    from .enclave import BACKENDS

    return [b for b in BACKENDS if b == "sim" or importlib.util.find_spec(f"posix_shim.{b}") is not None]


# ---------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every run, native or not: this checkout first on the path, so the runner tests the
    posix_shim it is part of."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONSTARTUP", None)
    env.update(extra or {})
    return env


def run_command(cmd: Sequence[str], cwd: str | os.PathLike, timeout: float,
                env: dict[str, str] | None = None) -> RunResult:
    """Run `cmd` with a timeout that always returns: the child gets its own session, and on timeout the whole
    session is killed, so a grandchild (the process backend's enclave) cannot keep the pipes open."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env if env is not None else child_env(),
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_session(proc.pid)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a pipe held by an escaped process
            proc.kill()
            out, err = b"", b""
        code = None
    seconds = time.perf_counter() - t0
    return RunResult(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), seconds)


def _kill_session(sid: int) -> None:
    """SIGKILL every process of the session this runner created for one run, by pid.  A process group is not
    enough: the process backend puts its enclave child in a group of its own."""
    pids = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after "pid (comm)": state ppid pgrp session
            pids.append(int(entry))
    if not pids:
        pids = [sid]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_in_scratch(cmd: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> RunResult:
    scratch = tempfile.mkdtemp(prefix="posix-shim-compat-")
    try:
        return run_command(cmd, scratch, timeout, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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


@dataclasses.dataclass(frozen=True)
class Uncaught:
    type_name: str
    message: str
    errno: int | None

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name


_LAST_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")
_ERRNO = re.compile(r"\[Errno (-?\d+)\]")


def _errno_of_type(type_name: str, message: str) -> int | None:
    """The errno an OSError subclass stands for when its message does not show `[Errno N]` (the enclave's
    errors print only their message)."""
    from enclave_libc.errors import PolicyDenied, Unsupported
    from ocall_bridge.errors import HostGone, HostViolation

    cls: Any = None
    if "." in type_name:
        module, _, attr = type_name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr, None)
        except Exception:  # any import failure just means "unknown type"
            cls = None
    else:
        import builtins

        cls = getattr(builtins, type_name, None)
    if isinstance(cls, type):
        for known, err in ((Unsupported, errno_mod.ENOSYS), (PolicyDenied, errno_mod.EACCES),
                           (HostViolation, errno_mod.EIO), (HostGone, errno_mod.EIO)):
            if issubclass(cls, known):
                return err
    if "outside the enclave's supported POSIX subset" in message:
        return errno_mod.ENOSYS
    return None


def uncaught_exception(stderr: str) -> Uncaught | None:
    """The exception a Python process died of, from its stderr: the last unindented line after the last
    traceback (chained exceptions print the final one last)."""
    at = stderr.rfind("Traceback (most recent call last):")
    if at < 0:
        return None
    last = None
    for line in stderr[at:].splitlines()[1:]:
        if line and not line[0].isspace():
            last = line
    if last is None:
        return None
    m = _LAST_LINE.match(last)
    if not m:
        return Uncaught(last.strip(), "", None)
    type_name, message = m.group("type"), m.group("msg") or ""
    found = _ERRNO.search(message)
    err = int(found.group(1)) if found else _errno_of_type(type_name, message)
    return Uncaught(type_name, message, err)


def _clip(text: str, width: int = 160) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[:width - 3] + "..."


def first_difference(expected: str, actual: str) -> str:
    """The first line where two outputs differ, as the reason of a failure."""
    a, b = expected.splitlines(), actual.splitlines()
    for i, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if x != y:
            return f"line {i}: native {_clip(x, 70)!r}, enclave {_clip(y, 70)!r}"
    if len(a) > len(b):
        return f"line {len(b) + 1}: native {_clip(a[len(b)], 70)!r}, enclave output ended"
    if len(b) > len(a):
        return f"line {len(a) + 1}: enclave printed extra {_clip(b[len(a)], 70)!r}"
    return "outputs differ only in line endings or a trailing newline"


def _errno_name(err: int | None) -> str:
    return errno_mod.errorcode.get(err, str(err)) if err is not None else "no errno"


def judge(program: Program, native: RunResult, enclave: RunResult) -> Verdict:
    """Compare one enclave run with the native run against what the corpus promises."""
    ratio = enclave.seconds / native.seconds if native.seconds > 0 and not enclave.timed_out else None
    if native.timed_out or native.returncode != 0:
        why = "timed out" if native.timed_out else f"exit {native.returncode}"
        exc = uncaught_exception(native.stderr)
        return Verdict("broken", f"the native run failed ({why}{': ' + _clip(str(exc)) if exc else ''})")
    if enclave.timed_out:
        return Verdict("fail", f"timed out (no exit after {enclave.seconds:.0f} s); last output: "
                               f"{_clip(enclave.stdout.splitlines()[-1], 80) if enclave.stdout else 'none'!s}")
    exc = uncaught_exception(enclave.stderr)
    if program.expect == "refused":
        want = getattr(errno_mod, program.errno or "ENOSYS")
        if enclave.returncode == 0:
            same = " with output identical to native" if enclave.stdout == native.stdout else ""
            return Verdict("fail", f"exit 0{same}: expected an uncaught OSError {program.errno}", ratio)
        if exc is None:
            tail = enclave.stderr.strip().splitlines()[-1:] or ["no stderr"]
            return Verdict("fail", f"exit {enclave.returncode} without a traceback ({_clip(tail[0], 100)}); "
                                   f"expected an uncaught OSError {program.errno}", ratio)
        if exc.errno != want:
            return Verdict("fail", f"ended with {_clip(str(exc))} ({_errno_name(exc.errno)}); expected "
                                   f"{program.errno}", ratio)
        if not native.stdout.startswith(enclave.stdout):
            diff = first_difference(native.stdout, enclave.stdout)
            return Verdict("fail", f"refused as promised, but printed before: {diff}", ratio)
        return Verdict("refused", _clip(str(exc)), ratio)
    if enclave.returncode == native.returncode and enclave.stdout == native.stdout:
        return Verdict("pass", "", ratio)
    if enclave.returncode != native.returncode:
        if exc is not None:
            return Verdict("fail", f"exit {enclave.returncode}: {_clip(str(exc))}", ratio)
        if enclave.stdout != native.stdout:
            return Verdict("fail", f"exit {enclave.returncode}: {first_difference(native.stdout, enclave.stdout)}",
                           ratio)
        tail = enclave.stderr.strip().splitlines()[-1:] or ["no stderr"]
        return Verdict("fail", f"exit {enclave.returncode} (native {native.returncode}): {_clip(tail[0])}", ratio)
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
    known = _cli_flags()
    rows = []
    for i, program in enumerate(programs, 1):
        flags = policy_flags(program.needs, known)
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


_STATUS_TEXT = {"pass": "pass", "refused": "refused as promised", "fail": "**FAIL**", "broken": "**BROKEN**"}


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _link(p: Program) -> str:
    """A link from docs/ to the program when it is part of this repository, else its name."""
    try:
        return f"[{p.name}](../{p.path.relative_to(REPO).as_posix()})"
    except ValueError:
        return f"`{p.name}`"


def render_matrix(rows: Sequence[Row], backends: Sequence[str], timeout: float) -> str:
    lines = []
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    total = {b: collections.Counter(r.verdicts[b].status for r in rows) for b in backends}
    lines += [
        "## Programs x backends",
        "",
        f"Generated {now} by `python -m posix_shim compat` on Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; per-run timeout {timeout:.0f} s.",
        "",
        "Each program of [compat_tests/](../compat_tests/README.md) runs natively (`python programs/X.py`) and "
        "under each backend (`python -m posix_shim --backend B [flags] programs/X.py`), each time from a fresh "
        "empty directory. **pass**: stdout and exit status identical to native. **refused as promised**: the "
        "program is outside the enclave's subset, and ended with an uncaught OSError carrying the errno its row "
        "promises, after printing a prefix of the native output. **FAIL**: anything else; the reason is the "
        "first differing line or the exception the run ended with. **BROKEN**: the native run itself failed. "
        "The ratio is the enclave run's wall time over the native run's (single runs, interpreter start-up "
        "included).",
        "",
    ]
    for b in backends:
        t = total[b]
        ok = t["pass"] + t["refused"]
        lines.append(f"* `{b}`: {ok} of {len(rows)} as expected ({t['pass']} pass, {t['refused']} refused as "
                     f"promised), {t['fail']} failing" + (f", {t['broken']} broken natively" if t["broken"] else ""))
    lines.append("")
    header = "| program | family | expected | grants | " + " | ".join(f"`{b}`" for b in backends) + " |"
    lines += [header, "|" + " --- |" * (4 + len(backends))]
    notes = []
    for r in rows:
        p = r.program
        expected = "native" if p.expect == "native" else f"refused ({p.errno})"
        grants = ", ".join(p.needs) if p.needs else "default"
        cells = []
        for b in backends:
            v = r.verdicts[b]
            ratio = f" x{v.ratio:.1f}" if v.ratio is not None else ""
            cell = _STATUS_TEXT[v.status] + ratio
            if v.status in ("fail", "broken"):
                notes.append((p.name, b, v.reason))
                cell += f" [{len(notes)}]"
            cells.append(cell)
        lines.append(f"| {_link(p)} | {p.family} | {expected} | {grants} | " + " | ".join(cells) + " |")
    lines.append("")
    if notes:
        lines += ["### Failures", ""]
        for i, (name, b, reason) in enumerate(notes, 1):
            lines.append(f"{i}. `{name}` on `{b}`: {_md(reason)}")
        lines.append("")
    refused = [(r.program.name, b, r.verdicts[b].reason) for r in rows for b in backends
               if r.verdicts[b].status == "refused"]
    if refused:
        lines += ["### Refusals (as promised)", ""]
        for name, b, reason in refused:
            lines.append(f"* `{name}` on `{b}`: `{_md(reason)}`")
        lines.append("")
    lines += ["### What the grants mean", "",
              "`needs` in expectations.toml become these flags on top of the default policy:", ""]
    known = _cli_flags()
    for need, (what, _) in NEEDS.items():
        lines.append(f"* `{need}` ({what}): `{' '.join(policy_flags([need], known))}`")
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# The support table
# ---------------------------------------------------------------------------------------------------------------

KINDS = {
    "ocall": "ocall",
    "inside": "served inside",
    "refused": "refused (ENOSYS)",
    "python": "pure Python, inside",
    "none": "not interposed",
}


@dataclasses.dataclass(frozen=True)
class Support:
    module: str
    name: str
    kind: str  # a key of KINDS
    calls: tuple[str, ...] = ()  # the ocalls it makes
    detail: str = ""


WIRE_CALLS = frozenset(c.name for c in CALLS if not c.inside)
INSIDE_CALLS = frozenset(c.name for c in CALLS if c.inside)


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _ours(obj: Any) -> bool:
    return isinstance(obj, types.FunctionType | type) and str(getattr(obj, "__module__", "")).startswith(
        "enclave_libc")


def _is_refusal_class(obj: Any) -> bool:
    from enclave_libc.errors import Unsupported

    return isinstance(obj, type) and issubclass(obj, Unsupported)


@dataclasses.dataclass
class _Reach:
    ocalls: set[str] = dataclasses.field(default_factory=set)
    refuses: bool = False


# Ocalls made through an object of the runtime rather than `.ocall`: the fd table closes the host handle when
# the last enclave fd that shares it goes.
_IMPLIED: dict[tuple[str | None, str], str] = {("fds", "close"): "close"}
_RAISE_STOPPERS = ("RETURN_VALUE", "BINARY_OP", "CHECK_EXC_MATCH", "COMPARE_OP", "IS_OP", "CONTAINS_OP")


def _raised_here(instructions: list[dis.Instruction], at: int) -> bool:
    """Whether the `Unsupported` loaded at `at` is constructed and raised, rather than only compared against
    (`isinstance(exc, PolicyDenied | Unsupported)`, `except Unsupported:`)."""
    for ins in instructions[at + 1:]:
        if ins.opname == "RAISE_VARARGS":
            return True
        if ins.opname in _RAISE_STOPPERS or ins.opname.startswith(("POP_JUMP", "JUMP", "STORE_")):
            return False
    return False


def _reach(root: Any) -> _Reach:
    """The ocalls a replacement can make and whether it can refuse, read from bytecode (never run)."""
    out = _Reach()
    seen: set[int] = set()
    stack = [root]

    def follow(value: Any, instructions: list, i: int) -> None:
        """A name the code loads: a refusal it may raise, or more of our code to read."""
        if _is_refusal_class(value):
            out.refuses = out.refuses or _raised_here(instructions, i)
        elif _ours(value):
            stack.append(value)
    while stack:
        obj = stack.pop()
        if not isinstance(obj, type):
            obj = inspect.unwrap(obj)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, type):
            for value in vars(obj).values():
                if isinstance(value, staticmethod | classmethod):
                    value = value.__func__
                if isinstance(value, property):
                    stack.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
                elif isinstance(value, types.FunctionType) or _ours(value):
                    stack.append(value)  # methods, and class attributes such as `_selector_cls = Poll`
            continue
        code = getattr(obj, "__code__", None)
        if code is None:
            continue
        globs = getattr(obj, "__globals__", {})
        for co in _code_objects(code):
            prev_attr: str | None = None
            prev_obj: Any = None
            aliases: dict[str, str] = {}  # local variable -> the runtime attribute stored in it (table = RT.fds)
            instructions = list(dis.get_instructions(co))
            for i, ins in enumerate(instructions):
                op, arg = ins.opname, ins.argval
                if op in ("LOAD_GLOBAL", "LOAD_NAME"):
                    value = globs.get(arg)
                    follow(value, instructions, i)
                    prev_obj, prev_attr = value, None
                    continue
                if op in ("LOAD_ATTR", "LOAD_METHOD"):
                    if prev_attr in ("ocall", "stubs") and arg in WIRE_CALLS:
                        out.ocalls.add(arg)
                    elif (prev_attr, arg) in _IMPLIED:
                        out.ocalls.add(_IMPLIED[(prev_attr, arg)])
                    elif isinstance(prev_obj, types.ModuleType) and prev_obj.__name__.startswith("enclave_libc"):
                        follow(getattr(prev_obj, arg, None), instructions, i)
                    prev_attr, prev_obj = arg, None
                    continue
                if op == "STORE_FAST" and prev_attr is not None:
                    aliases[arg] = prev_attr
                elif op == "LOAD_FAST" and arg in aliases:
                    prev_attr, prev_obj = aliases[arg], None
                    continue
                if op not in ("PRECALL", "CACHE", "EXTENDED_ARG"):
                    prev_attr, prev_obj = None, None
            for const in co.co_consts:
                # A call named by a string handed to a helper: _path_call("remove", "unlink", ...).
                if isinstance(const, str) and const in WIRE_CALLS:
                    out.ocalls.add(const)
    return out


def _only_raises(fn: Any) -> bool:
    """True when a function's own body has no way to return: it can only raise."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    # RETURN_CONST (3.12+) is how a function returns None (or any constant) without loading it first.
    return not any(ins.opname in ("RETURN_VALUE", "RETURN_CONST") for ins in dis.get_instructions(code))


def _declared_refused(fn: Any) -> str | None:
    mark = getattr(fn, "__posix_shim_refused__", None)
    if mark:
        return mark if isinstance(mark, str) else "ENOSYS"
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    refused = getattr(module, "REFUSED", ()) if module is not None else ()
    if getattr(fn, "__name__", None) in refused:
        return "ENOSYS"
    return None


def classify_replacement(replacement: Any) -> tuple[str, tuple[str, ...], str]:
    """(kind, ocalls, detail) for one interposed replacement."""
    declared = _declared_refused(replacement)
    if declared:
        return "refused", (), "" if declared == "ENOSYS" else declared
    name = getattr(inspect.unwrap(replacement), "__name__", "")
    reach = _reach(replacement)
    # The row named like the function first, then the others alphabetically.
    calls = tuple(sorted(reach.ocalls, key=lambda c: (c != name, c)))
    partial = "some arguments refused" if reach.refuses else ""
    if name in INSIDE_CALLS:
        detail = f"asks {', '.join(calls)}" if calls else ""
        return "inside", calls, "; ".join(x for x in (detail, partial) if x)
    if calls:
        return "ocall", calls, partial
    if reach.refuses and (_only_raises(replacement) or not isinstance(replacement, types.FunctionType)):
        return "refused", (), ""
    return "inside", (), partial


def public_callables(module: types.ModuleType) -> list[tuple[str, Any]]:
    """The module's public functions and classes: its __all__ when it has one, else its own public names;
    exceptions, enums, struct sequences and ABCs are data, not entry points."""
    own = _OWN_DEFINERS.get(module.__name__, {module.__name__})
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_")
                 and str(getattr(getattr(module, n), "__module__", "")) in own]
    out = []
    for name in sorted(set(names)):
        obj = getattr(module, name, None)
        if obj is None or not callable(obj):
            continue
        if isinstance(obj, type):
            if issubclass(obj, BaseException | enum.Enum) or hasattr(obj, "n_fields") or inspect.isabstract(obj) \
                    or obj.__module__ in ("abc", "collections.abc", "typing"):
                continue
        elif not (inspect.isroutine(obj) or isinstance(obj, types.FunctionType)):
            continue
        out.append((name, obj))
    return out


_ACCELERATORS = {"os": "posix", "io": "_io", "socket": "_socket", "signal": "_signal", "select": "select",
                 "time": "time", "selectors": "select", "fcntl": "fcntl"}


def _wrapped_builtin(modname: str, name: str, obj: Any) -> Any:
    """The C function a module's Python function of the same name wraps (signal.signal -> _signal.signal)."""
    if not isinstance(obj, types.FunctionType):
        return None
    accel = sys.modules.get(_ACCELERATORS.get(modname, "")) or None
    if accel is None or accel.__name__ == modname:
        return None
    inner = getattr(accel, name, None)
    if inner is None or inner is obj or not inspect.isroutine(inner) or isinstance(inner, types.FunctionType):
        return None
    # Only when the Python function really calls it: `_signal.NAME` appears in its code.
    names = {ins.argval for co in _code_objects(obj.__code__) for ins in dis.get_instructions(co)}
    return inner if name in names and accel.__name__ in names else None


def support_rows(modules: Sequence[str] = SUPPORT_MODULES) -> list[Support]:
    """Every public function of `modules`, classified against the interposition registry.

    Works whether or not an interposer is installed in this process: a replacement found in a module's
    namespace is looked up as such.
    """
    from .interpose import all_replacements

    registry: dict[int, Any] = {}
    for original, installed in all_replacements().items():
        replacement = installed.__func__ if isinstance(installed, staticmethod) else installed
        registry[id(original)] = replacement
        registry[id(installed)] = replacement
        registry[id(replacement)] = replacement
    rows = []
    for modname in modules:
        module = importlib.import_module(modname)
        for name, obj in public_callables(module):
            replacement = registry.get(id(obj))
            wrapped = _wrapped_builtin(modname, name, obj)
            if replacement is None and wrapped is not None:
                # signal.signal, socket.getaddrinfo ...: a Python wrapper of the C function of the same name
                replacement = registry.get(id(wrapped))
                if replacement is None:
                    rows.append(Support(modname, name, "none", (), f"Python wrapper of {wrapped.__module__ or ''}."
                                                                   f"{name}"))
                    continue
            if replacement is not None:
                kind, calls, detail = classify_replacement(replacement)
            elif isinstance(obj, types.FunctionType):
                kind, calls, detail = "python", (), ""
            elif isinstance(obj, type) and obj.__module__ == modname and all(
                    b.__module__ in (modname, "builtins", "abc") or b is object for b in obj.__mro__):
                kind, calls, detail = "python", (), "class"
            elif name.removesuffix("_ns") in INSIDE_CALLS:
                # The table says it is answered inside, and the native function already does that (a CPU clock
                # of the enclave's own threads): nothing to replace.
                kind, calls, detail = "inside", (), "the native function, by design (an inside row of the table)"
            else:
                kind, calls, detail = "none", (), ""
            rows.append(Support(modname, name, kind, calls, detail))
    return rows


def render_support(modules: Sequence[str] = SUPPORT_MODULES) -> str:
    rows = support_rows(modules)
    lines = [
        "## POSIX support table",
        "",
        "Generated from the ocall table (`ocall_bridge/calls.py`) and the interposition registry "
        "(`posix_shim.interpose.all_replacements()`); `tests/test_compat.py` fails when this section is out of date "
        "(regenerate it with `python -m posix_shim compat --sections support`).",
        "",
        "* **ocall**: the call leaves the enclave as the named ocall(s) and the host's answer is validated.",
        "* **served inside**: the enclave answers itself (its fd table, cwd, umask, environment, clocks state ...).",
        "* **refused (ENOSYS)**: outside the enclave's POSIX subset: raises `OSError(ENOSYS)` naming the call.",
        "* **pure Python, inside**: a Python function (or class) of the module, not replaced: it runs inside the "
        "enclave and its own calls are the rows above it.",
        "* **not interposed**: the native C function runs unchanged. On the `sim` backend it acts on the host "
        "process directly; for a function taking a file descriptor it sees host fds, not enclave fds.",
        "* *some arguments refused*: served, but some arguments or modes raise ENOSYS.",
        "",
        "The classification reads each replacement's bytecode (never runs it) for the ocalls it makes and the "
        "`Unsupported` it raises. A family can state a refusal explicitly: set `__posix_shim_refused__ = True` on "
        "the replacement, or list its name in the module's `REFUSED` tuple.",
        "",
        "| module | " + " | ".join(KINDS.values()) + " | total |",
        "|" + " --- |" * (len(KINDS) + 2),
    ]
    for modname in modules:
        counts = collections.Counter(r.kind for r in rows if r.module == modname)
        lines.append(f"| `{modname}` | " + " | ".join(str(counts[k]) for k in KINDS) + f" | {sum(counts.values())} |")
    counts = collections.Counter(r.kind for r in rows)
    lines.append("| **all** | " + " | ".join(f"**{counts[k]}**" for k in KINDS) + f" | **{len(rows)}** |")
    lines.append("")
    for modname in modules:
        lines += [f"### `{modname}`", "", "| function | support | detail |", "| --- | --- | --- |"]
        for r in rows:
            if r.module != modname:
                continue
            what = KINDS[r.kind]
            if r.kind == "ocall":
                what += " " + ", ".join(f"`{c}`" for c in r.calls)
            lines.append(f"| `{r.name}` | {what} | {_md(r.detail)} |")
        lines.append("")
    used_by: dict[str, list[str]] = collections.defaultdict(list)
    for r in rows:
        for call in r.calls:
            used_by[call].append(f"{r.module}.{r.name}")
        if r.kind == "inside" and r.name in INSIDE_CALLS:
            used_by[r.name].append(f"{r.module}.{r.name}")
    lines += ["### The ocall table", "",
              "Every row of `ocall_bridge/calls.py`: its wire number (or *inside*), family, whether it may block, "
              "the host resources the policy checks, and the functions above that use it.", "",
              "| call | number | family | blocking | resources | used by | notes |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in CALLS:
        number = "inside" if c.inside else str(c.number)
        res = ", ".join(f"{p}: {k}" for p, k in c.resources)
        users = used_by.get(c.name, [])
        shown = ", ".join(f"`{u}`" for u in users[:6]) + (f" +{len(users) - 6}" if len(users) > 6 else "")
        lines.append(f"| `{c.name}` | {number} | {c.family} | {'yes' if c.blocking else ''} | {res} | {shown} | "
                     f"{_md(c.doc)} |")
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# CPython's regression tests, natively and inside
# ---------------------------------------------------------------------------------------------------------------

# The runner script, written into each scratch directory and run as `python runner.py` and as
# `python -m posix_shim -A runner.py`: the same code both ways.  One line per finished test, flushed, so a run
# cut short by the time cap still counts what it finished; "START" lines name the test that hung.
RUNNER_SOURCE = r'''
import faulthandler, sys, time, unittest
import test.support
module, results_path, per_test = sys.argv[1], sys.argv[2], float(sys.argv[3])
skip = set(sys.argv[4].split("\n")) if len(sys.argv) > 4 and sys.argv[4] else set()
# As `python -m test` without -u (no network, no cpu-heavy tests), plus any resource named for this module.
test.support.use_resources = sys.argv[5].split(",") if len(sys.argv) > 5 and sys.argv[5] else []
out = open(results_path, "a", buffering=1, encoding="utf-8")


def clean(text):
    return str(text).replace("\t", " ").replace("\n", " ")[:300]


def why(err):
    return clean(type(err[1]).__name__ + ": " + str(err[1]))


class Result(unittest.TestResult):
    """One line per test; errors and skips of a class or module fixture get a line of their own."""

    current = None
    status = None

    def startTest(self, test):
        super().startTest(test)
        self.current, self.status, self.t0 = test.id(), None, time.monotonic()
        out.write("START\t%s\n" % self.current)
        faulthandler.dump_traceback_later(per_test, exit=True)

    def _set(self, test, status, reason=""):
        if test.id() != self.current:  # setUpClass / setUpModule (an _ErrorHolder)
            out.write("%s\t%s\t%s\n" % (status, test.id(), clean(reason)))
        elif self.status is None or status in ("fail", "error"):
            self.status = (status, reason)

    def addSuccess(self, test):
        self._set(test, "pass")

    def addFailure(self, test, err):
        self._set(test, "fail", why(err))

    def addError(self, test, err):
        self._set(test, "error", why(err))

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self._set(test, "fail" if issubclass(err[0], test.failureException) else "error", why(err))

    def addSkip(self, test, reason):
        self._set(test, "skip", str(reason))

    def addExpectedFailure(self, test, err):
        self._set(test, "pass", "expected failure")

    def addUnexpectedSuccess(self, test):
        self._set(test, "fail", "unexpected success")

    def stopTest(self, test):
        faulthandler.cancel_dump_traceback_later()
        if test.id() != self.current:  # 3.12+: a skipped test gets stopTest without startTest; its line is out
            return super().stopTest(test)
        status, reason = self.status or ("pass", "")
        out.write("%s\t%s\t%s\t%.2f\n" % (status, self.current, clean(reason), time.monotonic() - self.t0))
        self.current = None
        super().stopTest(test)


def prune(suite):
    kept = unittest.TestSuite()
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            kept.addTest(prune(t))
        elif t.id() not in skip:
            kept.addTest(t)
    return kept


t0 = time.monotonic()
suite = prune(unittest.defaultTestLoader.loadTestsFromName(module))
suite.run(Result())
out.write("DONE\t%.1f\n" % (time.monotonic() - t0))
out.close()
'''


@dataclasses.dataclass
class TestRun:
    """One module's tests, run once (natively or inside one backend)."""

    statuses: dict[str, tuple[str, str]]  # test id -> (pass | fail | error | skip, reason)
    seconds: float
    complete: bool
    note: str = ""
    durations: dict[str, float] = dataclasses.field(default_factory=dict)  # test id -> seconds

    def slowest(self, n: int = 5) -> list[tuple[str, float]]:
        return sorted(self.durations.items(), key=lambda kv: -kv[1])[:n]

    def count(self, *status: str) -> int:
        return sum(1 for s, _ in self.statuses.values() if s in status)


def parse_results(text: str, durations: dict[str, float] | None = None
                  ) -> tuple[dict[str, tuple[str, str]], str | None, bool]:
    """(statuses, the test started but never finished, whether DONE was reached); fills `durations`."""
    statuses: dict[str, tuple[str, str]] = {}
    started = None
    done = False
    for line in text.splitlines():
        parts = line.split("\t")
        if parts[0] == "START" and len(parts) > 1:
            started = parts[1]
        elif parts[0] == "DONE":
            done = True
        elif parts[0] in ("pass", "fail", "error", "skip") and len(parts) > 1:
            statuses[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "")
            if durations is not None and len(parts) > 3:
                try:
                    durations[parts[1]] = float(parts[3])
                except ValueError:
                    pass
            if parts[1] == started:
                started = None
    return statuses, started, done


def run_test_module(module: str, backend: str | None, module_timeout: float, test_timeout: float,
                    say: Callable[[str], None], pythonpath: Sequence[str] = (),
                    resources: Sequence[str] = ()) -> TestRun:
    """Run one regression-test module; a hung or crashing test is recorded and the module restarted without it,
    until it finishes or the module's time budget is spent."""
    scratch = Path(tempfile.mkdtemp(prefix="posix-shim-cpython-"))
    try:
        runner = scratch / "compat_runner.py"
        runner.write_text(RUNNER_SOURCE)
        results = scratch / "results.txt"
        tmp = scratch / "tmp"
        tmp.mkdir()
        env = child_env({"TMPDIR": str(tmp), "PYTHONDONTWRITEBYTECODE": "1"})
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([*pythonpath, env["PYTHONPATH"]])
        statuses: dict[str, tuple[str, str]] = {}
        durations: dict[str, float] = {}
        deadline = time.monotonic() + module_timeout
        t0 = time.monotonic()
        complete = False
        note = ""
        for _attempt in range(20):
            remaining = deadline - time.monotonic()
            if remaining <= 5:
                note = f"time cap of {module_timeout:.0f} s reached"
                break
            skip = "\n".join(statuses)
            cmd = [str(runner), module, str(results), str(test_timeout), skip, ",".join(resources)]
            full = [sys.executable, *cmd] if backend is None else [
                sys.executable, "-m", "posix_shim", "--backend", backend, "-A", *cmd]
            work = scratch / "cwd"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            res = run_command(full, work, remaining, env)
            found, hung, done = parse_results(results.read_text() if results.exists() else "", durations)
            statuses.update(found)
            if done:
                complete = True
                break
            if res.timed_out:
                note = f"time cap of {module_timeout:.0f} s reached"
                if hung:
                    statuses[hung] = ("error", "still running at the module's time cap")
                break
            if hung:
                reason = "hung (per-test timeout)" if "Timeout" in res.stderr else (
                    f"the test process died (exit {res.returncode})")
                exc = uncaught_exception(res.stderr)
                statuses[hung] = ("error", reason if exc is None else f"{reason}: {exc}")
                say(f"    {module}: {hung} {reason}; restarting without it")
                continue
            exc = uncaught_exception(res.stderr)
            tail = res.stderr.strip().splitlines()[-1:] or ["no output"]
            note = f"the test process failed (exit {res.returncode}): {_clip(str(exc) if exc else tail[0], 200)}"
            break
        return TestRun(statuses, time.monotonic() - t0, complete, note, durations)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclasses.dataclass
class ModuleComparison:
    module: str
    native: TestRun
    enclave: dict[str, TestRun]


def test_package_available() -> str | None:
    """None when the `test` package can be used, otherwise why not."""
    try:
        importlib.import_module("test.support")
    except ImportError as exc:
        return f"this interpreter has no usable `test` package ({exc}); install the python3-test package or " \
               f"use a Python built with its test suite"
    return None


def run_cpython(modules: Sequence[str], backends: Sequence[str], module_timeout: float, test_timeout: float,
                say: Callable[[str], None]) -> list[ModuleComparison]:
    out = []
    for i, module in enumerate(modules, 1):
        say(f"[{i}/{len(modules)}] {module}: native ...")
        dotted = module if module.startswith("test.") else f"test.{module}"
        resources = CPYTHON_RESOURCES.get(module, ())
        native = run_test_module(dotted, None, module_timeout, test_timeout, say, resources=resources)
        say(f"    native: {native.count('pass')} passed, {native.count('fail', 'error')} failed, "
            f"{native.count('skip')} skipped in {native.seconds:.0f} s {native.note}")
        enclave = {}
        for backend in backends:
            say(f"    {backend} ...")
            run = run_test_module(dotted, backend, module_timeout, test_timeout, say, resources=resources)
            both = sum(1 for t, (s, _) in native.statuses.items()
                       if s == "pass" and run.statuses.get(t, ("",))[0] == "pass")
            say(f"    {backend}: {run.count('pass')} passed, {run.count('fail', 'error')} failed, "
                f"{run.count('skip')} skipped in {run.seconds:.0f} s; {both} of {native.count('pass')} native "
                f"passes {run.note}")
            enclave[backend] = run
        out.append(ModuleComparison(module, native, enclave))
    return out


def render_cpython(results: Sequence[ModuleComparison], backends: Sequence[str], module_timeout: float,
                   test_timeout: float, unavailable: str | None = None) -> str:
    """The section for these results alone (the command line merges into the stored results instead)."""
    if unavailable:
        return f"## CPython's regression tests\n\nNot run: {unavailable}.\n"
    return compat_store.render(record_cpython(results, backends, module_timeout, test_timeout, {}))


def record_cpython(results: Sequence[ModuleComparison], backends: Sequence[str], module_timeout: float,
                   test_timeout: float, store: dict[str, Any]) -> dict[str, Any]:
    """`store` (compat_store's results) with these modules' entries put in."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    entries = [compat_store.summarize(r.module, r.native, {b: r.enclave[b] for b in backends}, now,
                                      platform.python_version()) for r in results]
    return compat_store.merge(store or {"modules": []}, entries, CPYTHON_MODULES, module_timeout, test_timeout)


# ---------------------------------------------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------------------------------------------

TITLE = """# Compatibility matrix

What runs inside the enclave, on which backend, and which part of POSIX exists there. Generated by
`python -m posix_shim compat` (see `--help`); do not edit by hand: edit compat_tests/ or the code and regenerate.
"""


def _marker(name: str, end: bool = False) -> str:
    return f"<!-- {'END' if end else 'BEGIN'} compat:{name} -->"


def extract_section(document: str, name: str) -> str | None:
    begin, end = _marker(name), _marker(name, True)
    i = document.find(begin)
    j = document.find(end)
    if i < 0 or j < i:
        return None
    return document[i + len(begin):j].strip("\n")


_PLACEHOLDER = {
    "matrix": "## Programs x backends\n\nNot generated yet: run `python -m posix_shim compat`.\n",
    "support": "## POSIX support table\n\nNot generated yet: run `python -m posix_shim compat`.\n",
    "cpython": "## CPython's regression tests\n\nNot generated yet: run `python -m posix_shim compat "
               "--cpython-tests` (it takes several minutes).\n",
}


def assemble(sections: dict[str, str], previous: str | None = None) -> str:
    """The document: regenerated sections, and the others kept from the previous version of the file."""
    parts = [TITLE]
    for name in SECTIONS:
        body = sections.get(name)
        if body is None and previous is not None:
            body = extract_section(previous, name)
        if body is None:
            body = _PLACEHOLDER[name]
        parts.append(f"{_marker(name)}\n{body.strip()}\n{_marker(name, True)}\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run the compatibility corpus natively and inside the enclave on each backend, and write the "
                    "compatibility matrix, the POSIX support table and (opt-in) CPython's regression tests run "
                    "inside, to a Markdown file.",
        epilog="Sections not regenerated by a run are kept from the existing output file. Exit status: 0 when "
               "every program passed or was refused as promised, 1 otherwise, 2 for a usage error.")
    p.add_argument("--backend", default=None, metavar="LIST",
                   help="comma-separated backends (default: every backend this build has: "
                        f"{','.join(available_backends())})")
    p.add_argument("--only", metavar="PATTERN",
                   help="only these programs: comma-separated names or globs (a bare word matches as a substring); "
                        "without --output the report goes to stdout and docs/compat.md is left alone")
    p.add_argument("--output", metavar="FILE", help=f"where to write the report (default: {DEFAULT_OUTPUT}; "
                                                    "'-' for stdout)")
    p.add_argument("--corpus", metavar="DIR", type=Path, default=DEFAULT_CORPUS,
                   help="a corpus directory with programs/ and expectations.toml (default: compat_tests/)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="per program run (default 60)")
    p.add_argument("--sections", metavar="LIST", default=None,
                   help="which sections to regenerate: matrix,support,cpython (default: matrix,support, plus "
                        "cpython with --cpython-tests); cpython without --cpython-tests re-renders the section from "
                        "the stored results, running nothing")
    p.add_argument("--cpython-tests", action="store_true",
                   help="also run CPython's regression tests for these modules natively and inside (minutes)")
    p.add_argument("--cpython-modules", metavar="LIST", default=",".join(CPYTHON_MODULES),
                   help="which test modules (default: %(default)s)")
    p.add_argument("--cpython-results", metavar="FILE", default=str(compat_store.RESULTS_FILE),
                   help="the stored results the section is rendered from; a run merges its modules into it "
                        "(default: docs/compat_cpython.json)")
    p.add_argument("--cpython-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="time cap per test module and run (default 600)")
    p.add_argument("--cpython-test-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="a single test still running after this is recorded as hung (default 30)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    def say(msg: str) -> None:
        if not ns.quiet:
            print(msg, file=sys.stderr, flush=True)

    have = available_backends()
    backends = [b.strip() for b in (ns.backend or ",".join(have)).split(",") if b.strip()]
    for b in backends:
        if b not in have:
            parser.error(f"backend {b!r} is not available in this build (available: {', '.join(have)})")
    if ns.sections is not None:
        wanted = [s.strip() for s in ns.sections.split(",") if s.strip()]
        for s in wanted:
            if s not in SECTIONS:
                parser.error(f"unknown section {s!r}; choose from {', '.join(SECTIONS)}")
    else:
        wanted = ["matrix", "support"] + (["cpython"] if ns.cpython_tests else [])
    output = ns.output if ns.output is not None else ("-" if ns.only else DEFAULT_OUTPUT)

    sections: dict[str, str] = {}
    status = 0
    if "matrix" in wanted:
        try:
            programs = select_programs(load_corpus(ns.corpus), ns.only)
        except CorpusError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        if not programs:
            parser.error(f"--only {ns.only!r} matches no program")
        say(f"{PROG}: {len(programs)} programs x native + {', '.join(backends)}")
        rows = run_matrix(programs, backends, ns.timeout, say)
        sections["matrix"] = render_matrix(rows, backends, ns.timeout)
        bad = [(r.program.name, b) for r in rows for b in backends if not r.verdicts[b].ok]
        if bad:
            status = 1
            say(f"{PROG}: {len(bad)} unexpected result(s): " + ", ".join(f"{n} on {b}" for n, b in bad))
        else:
            say(f"{PROG}: every program as expected")
    if "support" in wanted:
        sections["support"] = render_support()
    if "cpython" in wanted:
        results_path = Path(ns.cpython_results)
        store = compat_store.load(results_path)
        missing = test_package_available() if ns.cpython_tests else None
        if missing:
            say(f"{PROG}: {missing}")
            sections["cpython"] = render_cpython([], backends, ns.cpython_timeout, ns.cpython_test_timeout, missing)
        else:
            if ns.cpython_tests:
                modules = [m.strip() for m in ns.cpython_modules.split(",") if m.strip()]
                say(f"{PROG}: CPython regression tests: {len(modules)} modules x native + {', '.join(backends)}")
                results = run_cpython(modules, backends, ns.cpython_timeout, ns.cpython_test_timeout, say)
                store = record_cpython(results, backends, ns.cpython_timeout, ns.cpython_test_timeout, store)
                compat_store.save(store, results_path)
                say(f"{PROG}: results of {len(modules)} module(s) merged into {results_path}")
            for b, (kept, total) in compat_store.totals(store).items():
                say(f"{PROG}: {b}: {kept} of {total} natively passing tests pass inside"
                    + (f" ({100 * kept / total:.1f} %)" if total else ""))
            sections["cpython"] = compat_store.render(store)

    if output == "-":
        sys.stdout.write(assemble(sections))
        return status
    path = Path(output)
    previous = path.read_text() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(assemble(sections, previous))
    say(f"{PROG}: wrote {path}")
    return status


__all__ = ["main", "NEEDS", "policy_flags", "load_corpus", "judge", "run_matrix", "render_support",
           "support_rows", "classify_replacement", "extract_section", "assemble", "Program", "Verdict"]
