"""`python -m posix_shim compat [OPTIONS]`: run what is asked, print the report or write it where asked.

The report goes to stdout unless `--out FILE` names a file: a command run from any folder must not write into
that folder's docs/.  Writing into an existing file keeps the sections this run did not regenerate, which is how
the repository's page is maintained (`python -m posix_shim compat --out docs/compat.md`; `--sections support`
for the fast part alone).  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import store as compat_store
from .corpus import DEFAULT_CORPUS, CorpusError, available_backends, load_corpus, run_matrix, select_programs
from .cpython import CPYTHON_MODULES, record_cpython, render_cpython, run_cpython, test_package_available
from .render import DOCS_COMMAND, SECTIONS, assemble, render_matrix, render_support

PROG = "posix-shim compat"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run the compatibility corpus natively and inside the enclave on each backend, and report the "
                    "compatibility matrix, the POSIX support table and (opt-in) CPython's regression tests run "
                    "inside, as Markdown on stdout or in the file --out names.",
        epilog=f"The repository's page: {DOCS_COMMAND}. Writing into an existing file keeps the sections this run "
               "did not regenerate. Exit status: 0 when every program passed or was refused as promised, 1 "
               "otherwise, 2 for a usage error.")
    p.add_argument("--backend", default=None, metavar="LIST",
                   help="comma-separated backends (default: every backend of this build: "
                        f"{','.join(available_backends())})")
    p.add_argument("--only", metavar="PATTERN",
                   help="only these programs: comma-separated names or globs (a bare word matches as a substring)")
    p.add_argument("-o", "--out", "--output", dest="out", metavar="FILE", default="-",
                   help="write the report to FILE, keeping the sections of an existing FILE that this run does not "
                        "regenerate (default: '-', stdout)")
    p.add_argument("--corpus", metavar="DIR", type=Path, default=DEFAULT_CORPUS,
                   help="a corpus directory with programs/ and expectations.toml (default: compat_tests/ of this "
                        "checkout)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="per program run (default 60)")
    p.add_argument("--sections", metavar="LIST", default=None,
                   help="which sections to generate: matrix,support,cpython (default: matrix,support, plus cpython "
                        "with --cpython-tests); cpython without --cpython-tests renders the stored results, running "
                        "nothing")
    p.add_argument("--cpython-tests", action="store_true",
                   help="also run CPython's regression tests for these modules natively and inside (most of an "
                        "hour)")
    p.add_argument("--cpython-modules", metavar="LIST", default=",".join(CPYTHON_MODULES),
                   help="which test modules (default: %(default)s)")
    p.add_argument("--cpython-results", metavar="FILE", default=None,
                   help="the stored results the cpython section is rendered from, and that a --cpython-tests run "
                        "merges its modules into (default: read this checkout's docs/compat_cpython.json, and "
                        "save nothing)")
    p.add_argument("--cpython-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="time cap per test module and run (default 600)")
    p.add_argument("--cpython-test-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="a single test still running after this is recorded as hung (default 30)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def _matrix(ns: argparse.Namespace, parser: argparse.ArgumentParser, backends: list[str],
            say: Callable[[str], None]) -> tuple[str | None, int]:
    """(the matrix section, exit status); None and 2 for an unusable corpus."""
    try:
        programs = select_programs(load_corpus(ns.corpus), ns.only)
    except CorpusError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return None, 2
    if not programs:
        parser.error(f"--only {ns.only!r} matches no program")
    say(f"{PROG}: {len(programs)} programs x native + {', '.join(backends)}")
    rows = run_matrix(programs, backends, ns.timeout, say)
    bad = [(r.program.name, b) for r in rows for b in backends if not r.verdicts[b].ok]
    if bad:
        say(f"{PROG}: {len(bad)} unexpected result(s): " + ", ".join(f"{n} on {b}" for n, b in bad))
    else:
        say(f"{PROG}: every program as expected")
    return render_matrix(rows, backends, ns.timeout), 1 if bad else 0


def _cpython(ns: argparse.Namespace, backends: list[str], say: Callable[[str], None]) -> str:
    """The cpython section: the stored results, with this run's modules merged in when it runs any."""
    results_path = Path(ns.cpython_results) if ns.cpython_results else compat_store.RESULTS_FILE
    store = compat_store.load(results_path)
    if ns.cpython_tests:
        missing = test_package_available()
        if missing:
            say(f"{PROG}: {missing}")
            return render_cpython([], backends, ns.cpython_timeout, ns.cpython_test_timeout, missing)
        modules = [m.strip() for m in ns.cpython_modules.split(",") if m.strip()]
        say(f"{PROG}: CPython regression tests: {len(modules)} modules x native + {', '.join(backends)}")
        results = run_cpython(modules, backends, ns.cpython_timeout, ns.cpython_test_timeout, say)
        store = record_cpython(results, backends, ns.cpython_timeout, ns.cpython_test_timeout, store)
        if ns.cpython_results:
            compat_store.save(store, results_path)
            say(f"{PROG}: results of {len(modules)} module(s) merged into {results_path}")
        else:
            say(f"{PROG}: results not saved (--cpython-results FILE keeps them)")
    for b, (kept, total) in compat_store.totals(store).items():
        say(f"{PROG}: {b}: {kept} of {total} natively passing tests pass inside"
            + (f" ({100 * kept / total:.1f} %)" if total else ""))
    return compat_store.render(store)


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

    sections: dict[str, str] = {}
    status = 0
    if "matrix" in wanted:
        matrix, status = _matrix(ns, parser, backends, say)
        if matrix is None:
            return status
        sections["matrix"] = matrix
    if "support" in wanted:
        sections["support"] = render_support()
    if "cpython" in wanted:
        sections["cpython"] = _cpython(ns, backends, say)

    if ns.out == "-":
        sys.stdout.write(assemble(sections))
        return status
    path = Path(ns.out)
    previous = path.read_text() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(assemble(sections, previous))
    say(f"{PROG}: wrote {path}")
    return status
