"""The compatibility report: docs/compat.md stays current, the runner judges runs the way the corpus promises, the
support table says what replacements declare, and the command writes only where it is asked to."""

from __future__ import annotations

import ast
import errno
import importlib
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from ocall_bridge.calls import ocalls_of, uses
from posix_shim.compat import corpus, cpython, render, support
from posix_shim.compat import store as compat_store
from posix_shim.compat.corpus import Program, Verdict
from posix_shim.compat.runs import RunResult, uncaught_exception

REPO = Path(__file__).resolve().parents[1]

DOC = REPO / "docs" / "compat.md"


# -- docs/compat.md is current ----------------------------------------------------------------------------------


# The support table in docs/compat.md is generated on the oldest supported Python; newer ones add functions.
DOCS_PYTHON = (3, 11)


def _rows_by_section(table: str) -> dict[tuple[str, str], str]:
    """(### heading, first cell) -> the whole row, for every row under a ### heading of the support section."""
    rows: dict[tuple[str, str], str] = {}
    heading = ""
    for line in table.splitlines():
        if line.startswith("### "):
            heading = line
        elif heading and line.startswith("| `"):
            rows[(heading, line.split(" | ", 1)[0])] = line
    return rows


def test_support_table_in_docs_is_current() -> None:
    """Adding an ocall row or an interposed function without regenerating the docs fails here."""
    assert DOC.exists(), "docs/compat.md is missing: run `python -m posix_shim compat --out docs/compat.md`"
    committed = render.extract_section(DOC.read_text(), "support")
    assert committed is not None, f"docs/compat.md has no support section: run `{render.DOCS_COMMAND}`"
    fresh = render.render_support().strip("\n")
    if sys.version_info[:2] != DOCS_PYTHON:
        # Another Python: every row the docs have reads the same, and a function only this Python has is served
        # or refused - never passed through to the native one (docs/python-versions.md lists them).
        old, new = _rows_by_section(committed), _rows_by_section(fresh)
        changed = [f"{new[k]}  (docs: {old[k]})" for k in new if k in old and new[k] != old[k]]
        assert not changed, "rows differ from docs/compat.md's:\n" + "\n".join(changed)
        passed_through = [new[k] for k in new if k not in old and "not interposed" in new[k]]
        assert not passed_through, (f"functions new in Python {sys.version_info[0]}.{sys.version_info[1]} run "
                                    "natively inside the enclave; serve or refuse them:\n" + "\n".join(passed_through))
        return
    if committed != fresh:
        import difflib

        diff = "\n".join(list(difflib.unified_diff(committed.splitlines(), fresh.splitlines(), "docs/compat.md",
                                                   "regenerated", lineterm=""))[:40])
        pytest.fail("docs/compat.md's support table is out of date; regenerate it with "
                    f"`python -m posix_shim compat --sections support --out docs/compat.md`:\n{diff}")


def test_docs_has_every_section_and_every_program() -> None:
    text = DOC.read_text()
    for name in render.SECTIONS:
        assert render.extract_section(text, name) is not None, name
    matrix = render.extract_section(text, "matrix") or ""
    for program in corpus.load_corpus(corpus.DEFAULT_CORPUS):
        assert f"[{program.name}](" in matrix, f"{program.name} is missing from the matrix in docs/compat.md"


# -- the matrix in docs/compat.md is current ---------------------------------------------------------------------
# The matrix comes from running programs, so it has a date and timings no test can reproduce.  What is checked:
# every deterministic line (summary counts, table rows with the committed verdicts and ratios, what the grants
# mean) against a re-render from the corpus and the committed verdicts; that a program the docs call failing still
# fails (a fix without a regenerated page is caught, fast: nothing runs while the page lists no failure); and, when
# POSIX_SHIM_COMPAT_MATRIX=1 (.ci/run sets it), every verdict against a fresh run of the whole corpus.

_CELL = re.compile(r"^(pass|refused as promised|\*\*FAIL\*\*|\*\*BROKEN\*\*)(?: x([0-9.]+))?(?: \[\d+\])?$")
_STATUS = {"pass": "pass", "refused as promised": "refused", "**FAIL**": "fail", "**BROKEN**": "broken"}
REGENERATE = "regenerate it with `python -m posix_shim compat --sections matrix --out docs/compat.md`"


def _committed_matrix() -> tuple[str, list[str], dict[str, dict[str, Verdict]]]:
    """(the matrix section, its backends, program -> backend -> the committed verdict)."""
    matrix = render.extract_section(DOC.read_text(), "matrix")
    assert matrix is not None, f"docs/compat.md has no matrix section: {REGENERATE}"
    lines = matrix.splitlines()
    header = next(line for line in lines if line.startswith("| program |"))
    backends = re.findall(r"`(\w+)`", header)
    verdicts: dict[str, dict[str, Verdict]] = {}
    notes = [m.group(1) for m in re.finditer(r"^\d+\. `\w+` on `\w+`: (.*)$", matrix, re.M)]
    for line in lines:
        name = re.match(r"^\| (?:\[(\w+)\]\(|`(\w+)`)", line)
        if not name:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")][4:]
        row = {}
        for backend, cell in zip(backends, cells, strict=True):
            m = _CELL.match(cell)
            assert m, f"docs/compat.md: cannot read the cell {cell!r}"
            status = _STATUS[m.group(1)]
            reason = notes.pop(0) if status in ("fail", "broken") else ""
            row[backend] = Verdict(status, reason, float(m.group(2)) if m.group(2) else None)
        verdicts[name.group(1) or name.group(2)] = row
    return matrix, backends, verdicts


def _deterministic(matrix: str) -> list[str]:
    """The lines of a matrix section that depend neither on when or how fast it ran nor on refusal texts: the
    table, the summary counts and what the grants mean."""
    return [line for line in matrix.splitlines() if line.startswith(("| ", "* `")) and "` on `" not in line]


def test_matrix_in_docs_matches_the_corpus_and_its_own_counts() -> None:
    matrix, backends, committed = _committed_matrix()
    programs = corpus.load_corpus(corpus.DEFAULT_CORPUS)
    assert sorted(committed) == sorted(p.name for p in programs), f"programs differ from the corpus: {REGENERATE}"
    dummy = RunResult(0, "", "", 1.0)
    rows = [corpus.Row(p, dummy, [], committed[p.name]) for p in programs]
    fresh = render.render_matrix(rows, backends, 60)
    want, got = _deterministic(fresh), _deterministic(matrix)
    if want != got:
        import difflib

        diff = "\n".join(list(difflib.unified_diff(got, want, "docs/compat.md", "re-rendered", lineterm=""))[:40])
        pytest.fail(f"docs/compat.md's matrix disagrees with the corpus or with its own counts; {REGENERATE}:\n{diff}")


def test_programs_the_docs_call_failing_still_fail() -> None:
    _, _, committed = _committed_matrix()
    failing = [(name, b) for name, row in committed.items() for b, v in row.items() if not v.ok]
    available = set(corpus.available_backends())
    programs = {p.name: p for p in corpus.load_corpus(corpus.DEFAULT_CORPUS)}
    for name, backend in failing:
        if backend not in available:
            continue
        verdict = corpus.run_matrix([programs[name]], [backend], timeout=60)[0].verdicts[backend]
        assert not verdict.ok, f"docs/compat.md says {name} fails on {backend}, but it now passes: {REGENERATE}"


@pytest.mark.skipif(os.environ.get("POSIX_SHIM_COMPAT_MATRIX") != "1",
                    reason="runs the whole corpus on every backend (minutes): POSIX_SHIM_COMPAT_MATRIX=1 (.ci/run)")
def test_matrix_verdicts_in_docs_are_current() -> None:
    _, backends, committed = _committed_matrix()
    backends = [b for b in backends if b in corpus.available_backends()]
    rows = corpus.run_matrix(corpus.load_corpus(corpus.DEFAULT_CORPUS), backends, timeout=60)
    stale = [f"{r.program.name} on {b}: docs say {committed[r.program.name][b].status}, a fresh run gives "
             f"{r.verdicts[b].status} {r.verdicts[b].reason}".rstrip()
             for r in rows for b in backends if r.verdicts[b].status != committed[r.program.name][b].status]
    assert not stale, f"docs/compat.md is stale; {REGENERATE}:\n" + "\n".join(stale)


# -- the support table ------------------------------------------------------------------------------------------


def test_support_rows_cover_every_public_function_of_the_modules() -> None:
    rows = {(r.module, r.name): r for r in support.support_rows()}
    assert rows[("os", "makedirs")].kind == "python"
    assert {r.kind for r in rows.values()} <= set(support.KINDS)
    # Every module listed, and every public function of os is a row.
    assert {m for m, _ in rows} == set(support.SUPPORT_MODULES)
    import os

    assert ("os", "open") in rows and ("os", "scandir") in rows and len([k for k in rows if k[0] == "os"]) > 100
    assert all(callable(getattr(os, n)) for m, n in rows if m == "os")
    # A refusal marked by a family (enclave_libc/process.py's REFUSED) is one whatever else is declared.
    assert rows[("os", "fork")].kind == "refused"


def _replacement_of(module: str, name: str) -> object:
    from posix_shim.interpose import all_replacements

    original = getattr(importlib.import_module(module), name)
    for orig, installed in all_replacements().items():
        if orig is original:
            return installed.__func__ if isinstance(installed, staticmethod) else installed
    raise LookupError(f"{module}.{name} is not interposed")


def _declarations_landed() -> bool:
    return ocalls_of(_replacement_of("os", "stat")) is not None


@pytest.mark.skipif(not _declarations_landed(), reason="the enclave functions do not declare @uses(...) yet")
def test_support_rows_name_what_the_real_replacements_declare() -> None:
    """The real registry, read through the families' own declarations (ocall_bridge.calls.uses)."""
    rows = {(r.module, r.name): r for r in support.support_rows()}
    assert rows[("os", "stat")].kind == "ocall" and rows[("os", "stat")].calls[0] == "stat"
    assert rows[("os", "remove")].calls == ("unlink",)
    assert rows[("os", "getcwd")].kind == "inside"
    assert rows[("fcntl", "ioctl")].kind == "refused"
    undeclared = sorted(f"{m}.{n}" for (m, n), r in rows.items() if r.kind == "undeclared")
    assert not undeclared, "replacements that declare no rows (@uses): " + ", ".join(undeclared)


def test_classification_reads_declarations_not_code() -> None:
    def marked(*args: object) -> None:
        pass

    marked.__posix_shim_refused__ = True  # type: ignore[attr-defined]
    assert support.classify_replacement(marked) == ("refused", (), "")
    marked.__posix_shim_refused__ = "EPERM"  # type: ignore[attr-defined]
    assert support.classify_replacement(marked) == ("refused", (), "EPERM")

    @uses("fstat")
    def declared(fd: int) -> None:
        pass

    assert support.classify_replacement(declared) == ("ocall", ("fstat",), "")

    @uses("fsync", "fstat", partial="O_DIRECT")
    def fsync(fd: int, flag: int) -> None:
        pass

    # The row named like the function first; what it refuses among served arguments in the detail.
    assert support.classify_replacement(fsync) == ("ocall", ("fsync", "fstat"), "refuses O_DIRECT")

    @uses("getcwd", "stat")
    def getcwd() -> None:
        pass

    assert support.classify_replacement(getcwd) == ("inside", ("stat",), "asks stat")

    @uses()
    def pure(x: int) -> int:
        return x

    assert support.classify_replacement(pure) == ("inside", (), "")

    # Negative control: code that makes an ocall but declares nothing is shown as undeclared, never inferred.
    def undeclared(fd: int) -> object:
        from enclave_libc import runtime

        return runtime.RT.ocall.fstat(fd)

    assert support.classify_replacement(undeclared)[:2] == ("undeclared", ())

    class Sock:
        """A replacement class is declared by its methods."""

        @uses("send")
        def send(self, data: bytes) -> None:
            pass

        @uses("recv", partial="MSG_OOB")
        def recv(self, n: int) -> None:
            pass

        def fileno(self) -> int:
            return 3

    assert support.classify_replacement(Sock) == ("ocall", ("recv", "send"), "refuses MSG_OOB")


def test_support_section_renders_a_fake_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path from registry to Markdown, on a module of our own: rows, counts and 'used by'."""
    fake = types.ModuleType("fakeposix")

    def fstat(fd: int) -> None: ...
    def mkfifo(path: str) -> None: ...
    def chmod(path: str) -> None: ...
    def helper(path: str) -> None: ...
    def native(fd: int) -> None: ...

    for fn in (fstat, mkfifo, chmod, helper, native):
        fn.__module__ = "fakeposix"
    fake.__all__ = ["fstat", "mkfifo", "chmod", "helper", "native"]  # type: ignore[attr-defined]
    fake.__dict__.update(fstat=len, mkfifo=abs, chmod=hash, helper=helper, native=repr)

    @uses("fstat")
    def enclave_fstat(fd: int) -> None: ...

    def enclave_mkfifo(path: str) -> None: ...

    enclave_mkfifo.__posix_shim_refused__ = True  # type: ignore[attr-defined]

    def enclave_chmod(path: str) -> None: ...

    monkeypatch.setitem(sys.modules, "fakeposix", fake)
    monkeypatch.setattr("posix_shim.interpose.all_replacements",
                        lambda: {len: enclave_fstat, abs: enclave_mkfifo, hash: enclave_chmod})
    rows = {r.name: (r.kind, r.calls) for r in support.support_rows(["fakeposix"])}
    assert rows == {"fstat": ("ocall", ("fstat",)), "mkfifo": ("refused", ()), "chmod": ("undeclared", ()),
                    "helper": ("python", ()), "native": ("none", ())}
    text = render.render_support(["fakeposix"])
    assert "| `fakeposix` | 1 | 0 | 1 | 1 | 1 | 1 | 5 |" in text
    assert "| `fstat` | ocall `fstat` |  |" in text
    assert "| `chmod` | replaced, undeclared | declares no rows (`@uses`) |" in text
    assert "| `fstat` | " in text and "| `fakeposix.fstat` |" in text  # the ocall table's "used by"


# -- judging one run --------------------------------------------------------------------------------------------


def _prog(expect: str = "native", err: str | None = None) -> Program:
    return Program("p", Path("p.py"), "misc", expect, err)


def _run(code: int | None, out: str = "", err: str = "", seconds: float = 1.0) -> RunResult:
    return RunResult(code, out, err, seconds)


TRACEBACK_ENOSYS = textwrap.dedent("""\
    Traceback (most recent call last):
      File "x.py", line 3, in <module>
        mmap.mmap(f.fileno(), 0)
    enclave_libc.errors.Unsupported: posix_shim: mmap() is outside the enclave's supported POSIX subset: no
    """)


def test_judge_pass_and_first_difference() -> None:
    native = _run(0, "a\nb\nc\n", seconds=0.5)
    assert corpus.judge(_prog(), native, _run(0, "a\nb\nc\n", seconds=1.0)) == corpus.Verdict("pass", "", 2.0)
    v = corpus.judge(_prog(), native, _run(0, "a\nX\nc\n"))
    assert v.status == "fail" and v.reason == "line 2: native 'b', enclave 'X'"
    v = corpus.judge(_prog(), native, _run(1, "a\n", "Traceback (most recent call last):\n  File ..\n"
                                                   "PermissionError: [Errno 13] posix_shim: open('/x') denied\n"))
    assert v.status == "fail" and v.reason == "exit 1: PermissionError: [Errno 13] posix_shim: open('/x') denied"
    assert corpus.judge(_prog(), native, _run(None, "a\n")).status == "fail"
    assert corpus.judge(_prog(), _run(1, ""), _run(0, "")).status == "broken"


def test_judge_refusal_needs_the_promised_errno_and_a_prefix() -> None:
    native = _run(0, "size: 4096\nmore\n")
    ok = corpus.judge(_prog("refused", "ENOSYS"), native, _run(1, "size: 4096\n", TRACEBACK_ENOSYS))
    assert ok.status == "refused" and "mmap()" in ok.reason
    wrong = corpus.judge(_prog("refused", "ENOENT"), native, _run(1, "", TRACEBACK_ENOSYS))
    assert wrong.status == "fail" and "ENOSYS" in wrong.reason and "expected ENOENT" in wrong.reason
    ran = corpus.judge(_prog("refused", "ENOSYS"), native, _run(0, native.stdout))
    assert ran.status == "fail" and "identical to native" in ran.reason
    garbage = corpus.judge(_prog("refused", "ENOSYS"), native, _run(1, "other\n", TRACEBACK_ENOSYS))
    assert garbage.status == "fail" and "printed before" in garbage.reason


def test_uncaught_exception_reads_errno_from_text_or_type() -> None:
    assert uncaught_exception(TRACEBACK_ENOSYS).errno == errno.ENOSYS
    chained = ("Traceback (most recent call last):\n  x\nKeyError: 1\n\nDuring handling of the above exception, "
               "another exception occurred:\n\nTraceback (most recent call last):\n  y\n"
               "FileNotFoundError: [Errno 2] No such file or directory: 'f'\n")
    exc = uncaught_exception(chained)
    assert exc.type_name == "FileNotFoundError" and exc.errno == errno.ENOENT
    assert uncaught_exception("just text\n") is None


# -- needs -> flags, and the corpus file ------------------------------------------------------------------------


def test_needs_become_policy_flags_the_real_cli_takes() -> None:
    assert corpus.policy_flags([]) == []
    assert corpus.policy_flags(["net"]) == ["--allow-net=127.0.0.1,::1,localhost"]
    tmp = corpus._tmp_dirs()[0]
    assert corpus.policy_flags(["tmp"]) == [f"--allow-read={tmp}", f"--allow-write={tmp}"]
    assert corpus.policy_flags(["tmp", "tmp"]) == corpus.policy_flags(["tmp"])
    with pytest.raises(ValueError):
        corpus.policy_flags(["gpu"])
    # The real CLI accepts what the mapping produces (compat itself never imports the CLI: no cycle).
    from posix_shim.cli import build_parser

    for need in corpus.NEEDS:
        flags = corpus.policy_flags([need])
        assert flags
        build_parser().parse_args(flags)


def test_corpus_file_is_valid_and_errors_name_the_key(tmp_path: Path) -> None:
    programs = corpus.load_corpus(corpus.DEFAULT_CORPUS)
    assert len(programs) >= 25 and all(p.path.is_file() for p in programs)
    (tmp_path / "programs").mkdir()
    (tmp_path / "programs" / "a.py").write_text("print(1)\n")
    (tmp_path / "expectations.toml").write_text('[programs.a]\nfile = "a.py"\nexpect = "refused"\n')
    with pytest.raises(corpus.CorpusError, match=r"\[programs.a\].*errno"):
        corpus.load_corpus(tmp_path)
    (tmp_path / "expectations.toml").write_text('[programs.a]\nfile = "a.py"\nneeds = ["gpu"]\n')
    with pytest.raises(corpus.CorpusError, match="unknown need 'gpu'"):
        corpus.load_corpus(tmp_path)
    assert [p.name for p in corpus.select_programs(programs, "json*,mmap")] == ["json_csv", "mmap_file"]


def test_assemble_keeps_sections_it_did_not_regenerate() -> None:
    first = render.assemble({"matrix": "## M\nold matrix", "support": "## S\nold", "cpython": "## C\nslow run"})
    second = render.assemble({"support": "## S\nnew"}, previous=first)
    assert render.extract_section(second, "support") == "## S\nnew"
    assert render.extract_section(second, "matrix") == "## M\nold matrix"
    assert render.extract_section(second, "cpython") == "## C\nslow run"


# -- end to end, through the real CLI, on the sim backend -------------------------------------------------------


def test_real_corpus_programs_on_sim() -> None:
    programs = corpus.select_programs(corpus.load_corpus(corpus.DEFAULT_CORPUS), "json_csv,file_io_modes,mmap_file")
    rows = corpus.run_matrix(programs, ["sim"], timeout=30)
    verdicts = {r.program.name: r.verdicts["sim"] for r in rows}
    assert verdicts["json_csv"].status == "pass", verdicts["json_csv"].reason
    assert verdicts["file_io_modes"].status == "pass", verdicts["file_io_modes"].reason
    assert verdicts["mmap_file"].status == "refused", verdicts["mmap_file"].reason
    text = render.render_matrix(rows, ["sim"], 30)
    assert "| [json_csv](../compat_tests/programs/json_csv.py) | files | native | default | pass x" in text


def _write_corpus(root: Path) -> None:
    progs = root / "programs"
    progs.mkdir()
    (progs / "same.py").write_text("import os\nos.mkdir('d')\nprint(sorted(os.listdir('.')))\n")
    # Natively os.open is the C builtin; inside the enclave it is the enclave's Python function (installed as a
    # staticmethod so it does not bind as a class attribute).
    (progs / "differs.py").write_text("import os\nprint('start')\nprint(type(os.open).__name__)\n")
    (progs / "refuses.py").write_text("import errno, os\nprint('before')\n"
                                      "if type(os.open).__name__ != 'builtin_function_or_method':\n"
                                      "    raise OSError(errno.ENOSYS, 'pretend refusal')\nprint('after')\n")
    (root / "expectations.toml").write_text(textwrap.dedent("""\
        [programs.same]
        file = "same.py"
        [programs.differs]
        file = "differs.py"
        [programs.refuses]
        file = "refuses.py"
        expect = "refused"
        errno = "ENOSYS"
        """))


def _compat(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posix_shim", "compat", *args], capture_output=True, text=True,
                          timeout=90, cwd=cwd)


def test_cli_writes_the_matrix_and_reports_failures(tmp_path: Path) -> None:
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    _write_corpus(corpus_dir)
    out = tmp_path / "report" / "compat.md"
    proc = _compat("--backend", "sim", "--corpus", str(corpus_dir), "--out", str(out), "--timeout", "30",
                   cwd=tmp_path)
    # One program differs, so the command says so with exit status 1; progress went to stderr, nothing to stdout.
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert "[3/3] same: native" in proc.stderr and "differs on sim" in proc.stderr, proc.stderr
    text = out.read_text()
    matrix = render.extract_section(text, "matrix")
    assert matrix is not None
    assert "| `same` | misc | native | default | pass x" in matrix
    assert "| refused (ENOSYS) | default | refused as promised x" in matrix
    assert "`differs` on `sim`: line 2: native 'builtin_function_or_method', enclave 'staticmethod'" in matrix
    assert render.extract_section(text, "support") == render.render_support().strip("\n")
    # A second run into the same file regenerates only what it is asked for and keeps the rest.
    out.write_text(text.replace("| `same` | misc |", "| `same` | kept |"))
    again = _compat("--sections", "support", "--out", str(out), "-q", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == "", again.stderr
    assert "| `same` | kept |" in out.read_text()
    # --output is the older spelling of --out.
    old = _compat("--sections", "support", "--output", str(tmp_path / "old.md"), "-q", cwd=tmp_path)
    assert old.returncode == 0 and (tmp_path / "old.md").read_text().startswith("# Compatibility matrix")


def test_cli_prints_to_stdout_and_never_writes_the_current_folder(tmp_path: Path) -> None:
    """Run from a folder that has a docs/compat.md of its own (a user's project): the report goes to stdout and
    the folder is left exactly as it was, whatever the options."""
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    _write_corpus(corpus_dir)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "compat.md").write_text("the user's own file\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = _compat("--backend", "sim", "--corpus", str(corpus_dir), "--only", "same", "-q", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("# Compatibility matrix")
    assert "| `same` |" in proc.stdout and "`differs`" not in proc.stdout
    assert render.extract_section(proc.stdout, "support") == render.render_support().strip("\n")
    stored = _compat("--sections", "cpython", "-q", cwd=tmp_path)  # renders the stored results, runs nothing
    assert stored.returncode == 0 and "## CPython's regression tests" in stored.stdout, stored.stderr
    assert (docs / "compat.md").read_text() == "the user's own file\n"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    bad = _compat("--corpus", str(corpus_dir), "--only", "nothing", cwd=tmp_path)
    assert bad.returncode == 2 and "matches no program" in bad.stderr
    missing = _compat("--corpus", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2 and "--corpus DIR" in missing.stderr


def test_package_entry_point_and_docs_command() -> None:
    """`python -m posix_shim.compat` is the same command; the page names the command that writes it."""
    proc = subprocess.run([sys.executable, "-m", "posix_shim.compat", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "--out" in proc.stdout and "--cpython-tests" in proc.stdout
    assert f"`{render.DOCS_COMMAND}`" in DOC.read_text()


# -- CPython's test runner, on a tiny test module ---------------------------------------------------------------


def test_regression_test_runner_counts_and_survives_a_hang(tmp_path: Path) -> None:
    (tmp_path / "tiny_tests.py").write_text(textwrap.dedent("""\
        import os, time, unittest

        class T(unittest.TestCase):
            def test_a_pass(self):
                with open("f", "w") as f:
                    f.write("x")
                self.assertEqual(os.path.getsize("f"), 1)

            def test_b_fail(self):
                self.assertEqual(1, 2)

            @unittest.skip("not here")
            def test_c_skip(self):
                pass

            def test_d_hang(self):
                time.sleep(60)

            def test_e_after_the_hang(self):
                pass
        """))
    notes: list[str] = []
    for backend in (None, "sim"):
        run = cpython.run_test_module("tiny_tests", backend, module_timeout=40, test_timeout=2, say=notes.append,
                                     pythonpath=[str(tmp_path)])
        status = {t.rsplit(".", 1)[1]: s for t, (s, _) in run.statuses.items()}
        assert status == {"test_a_pass": "pass", "test_b_fail": "fail", "test_c_skip": "skip",
                          "test_d_hang": "error", "test_e_after_the_hang": "pass"}, (backend, run)
        assert run.complete
        assert 0 <= run.durations[next(t for t in run.statuses if t.endswith("test_a_pass"))] < 5
    assert any("test_d_hang hung" in n for n in notes)
    comparison = cpython.ModuleComparison("tiny_tests", run, {"sim": run})
    text = cpython.render_cpython([comparison], ["sim"], 40, 2)
    assert "| `tiny_tests` | 2 / 2 / 1 | 2 / 2 / 1 | 2 of 2 (100 %) |" in text


def test_runner_is_a_standalone_script() -> None:
    """The runner is measured inside the enclave as a program: it imports the standard library and nothing of
    posix_shim (or the enclave would be timing us), and it is a real file, linted and type-checked."""
    tree = ast.parse(cpython.RUNNER.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported and imported - {"__future__", "_typeshed"} <= set(sys.stdlib_module_names), imported


def test_missing_test_package_is_reported() -> None:
    text = cpython.render_cpython([], ["sim"], 1, 1, unavailable="no test package")
    assert "Not run: no test package." in text



# -- CPython's regression tests: the published section is the stored results, rendered ---------------------------


def test_cpython_section_in_docs_is_rendered_from_the_stored_results() -> None:
    """The figures in docs/compat.md come from docs/compat_cpython.json and nowhere else: a hand edit of either,
    or a run that updated one and not the other, fails here (re-render with
    `python -m posix_shim compat --sections cpython --out docs/compat.md`)."""
    store = compat_store.load()
    assert store["modules"], "docs/compat_cpython.json holds no results"
    assert compat_store.problems(store) == []
    assert render.extract_section(DOC.read_text(), "cpython") == compat_store.render(store).strip("\n")
    # Every module the issue measures is in the file, each on both backends.
    names = {e["module"] for e in store["modules"]}
    assert set(cpython.CPYTHON_MODULES) <= names
    assert all(set(e["backends"]) == {"sim", "process"} for e in store["modules"])


def _entry(module: str, native_pass: int, lost: dict[str, str]) -> dict:
    return {"module": module, "generated": "2026-01-01 00:00 UTC", "python": "3.11.7",
            "native": {"pass": native_pass, "fail": 0, "skip": 1, "seconds": 1.0, "note": ""},
            "backends": {"sim": {"pass": native_pass - len(lost), "fail": len(lost), "skip": 1,
                                 "kept": native_pass - len(lost), "seconds": 2.0, "note": "", "slowest": [],
                                 "lost": lost}}}


def test_stored_results_merge_by_module_and_group_causes() -> None:
    lost_a = {"m.T.test_1": "Unsupported: posix_shim: fork() is outside the enclave's supported POSIX subset",
              "m.T.test_2": "AssertionError: 493 != 509", "m.T.test_3": "AssertionError: 1 != 2"}
    store = compat_store.merge({"modules": []}, [_entry("test_b", 5, {}), _entry("test_a", 10, lost_a)],
                               ["test_a", "test_b"], 300, 20)
    assert [e["module"] for e in store["modules"]] == ["test_a", "test_b"]
    text = compat_store.render(store)
    assert "| `test_a` | 10 / 0 / 1 | 7 / 3 / 1 | 7 of 10 (70 %) |" in text
    assert "**`sim`: 12 of the 15 tests that pass natively also pass inside the enclave (80.0 %).**" in text
    assert "| 2 | `AssertionError: N != N` | `m.T.test_2` |" in text
    assert "| 1 | `starts a process" in text
    # A rerun of one module replaces its entry and keeps the other.
    again = compat_store.merge(store, [_entry("test_a", 10, {})], ["test_a", "test_b"], 300, 20)
    assert compat_store.totals(again) == {"sim": (15, 15)}
    assert compat_store.problems(again) == []
    broken = _entry("test_c", 3, {"x": "y"})
    broken["backends"]["sim"]["kept"] = 3
    assert compat_store.problems({"modules": [broken]}) == ["test_c on sim: kept 3 + lost 1 != native passes 3",
                                                             "test_c on sim: kept 3 > passed 2"]
