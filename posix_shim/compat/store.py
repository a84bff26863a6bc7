"""The stored results of CPython's regression tests run inside, and the docs section made from them.

A full run takes most of an hour on a small machine, far too slow for CI, so the run's outcome is kept in a
results file (the repository's docs/compat_cpython.json, or the file `--cpython-results` names) and the section
of docs/compat.md is *rendered from that file*: a fast
test re-renders it and compares, so the published figures can never drift from the measured ones, and a run of
a few modules (`--cpython-modules`) replaces just their entries.  The file keeps, per module and backend, the
counts and each natively passing test that did not pass inside with its reason: enough to regroup the causes
without the run, small enough to review in a diff.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# The repository's stored results (absent from an installed package: then there is nothing stored yet).
RESULTS_FILE = Path(__file__).resolve().parents[2] / "docs" / "compat_cpython.json"
FORMAT = 1

# Known causes, named once: a lost test whose reason matches is counted under the label, so the table says what
# is missing rather than listing the same refusal in twenty wordings.  The first match wins.
CAUSES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), label) for p, label in (
    (r"subprocess\.Popen\(\)|posix_spawnp?\(\)|spawnv\w*\(\)|popen\(\)|fork\w*\(\)|cannot create processes|"
     r"SemLock\(\)|execv\w*\(\)|system\(\)",
     "starts a process (an enclave cannot fork; child enclaves are separate work of issue 18)"),
    (r"^did not run \(time cap\)$", "did not run: the module reached its time cap"),
    (r"^hung \(per-test timeout\)", "hung (per-test timeout)"),
    (r"mmap\(\) is outside", "maps a file (mmap is outside the subset)"),
))

_NORMALIZE = [(re.compile(r"0x[0-9a-f]+"), "0x..."), (re.compile(r"'[^'\s]*'"), "'...'"),
              (re.compile(r"\b\d+\b"), "N"), (re.compile(r"/[^\s:,)]+"), "/...")]


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def cause(reason: str) -> str:
    """The group a lost test belongs to: a known cause's label, or the reason with its particulars taken out."""
    for pattern, label in CAUSES:
        if pattern.search(reason):
            return label
    text = reason
    for pattern, repl in _NORMALIZE:
        text = pattern.sub(repl, text)
    return _clip(text, 140)


def summarize(module: str, native: Any, enclave: dict[str, Any], when: str, python: str) -> dict[str, Any]:
    """One module's entry: `native` and each value of `enclave` are `cpython.TestRun`."""
    native_pass = sorted(t for t, (s, _) in native.statuses.items() if s == "pass")
    entry: dict[str, Any] = {
        "module": module, "generated": when, "python": python,
        "native": {"pass": native.count("pass"), "fail": native.count("fail", "error"),
                   "skip": native.count("skip"), "seconds": round(native.seconds, 1), "note": native.note},
        "backends": {},
    }
    for backend, run in enclave.items():
        lost = {}
        for t in native_pass:
            status, reason = run.statuses.get(t, ("missing", "did not run (time cap)"))
            if status != "pass":
                lost[t] = f"skipped inside: {reason}" if status == "skip" else reason
        entry["backends"][backend] = {
            "pass": run.count("pass"), "fail": run.count("fail", "error"), "skip": run.count("skip"),
            "kept": len(native_pass) - len(lost), "seconds": round(run.seconds, 1), "note": run.note,
            "slowest": [[t, round(d, 1)] for t, d in run.slowest() if d >= 1], "lost": lost,
        }
    return entry


def load(path: Path = RESULTS_FILE) -> dict[str, Any]:
    if not path.exists():
        return {"format": FORMAT, "module_timeout": 0, "test_timeout": 0, "modules": []}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: results format {data.get('format')!r}, expected {FORMAT}")
    return data


def merge(store: dict[str, Any], entries: Iterable[dict[str, Any]], order: Sequence[str], module_timeout: float,
          test_timeout: float) -> dict[str, Any]:
    """The store with these modules' entries replaced; modules listed in `order` first, in that order."""
    by_name = {e["module"]: e for e in store["modules"]}
    for e in entries:
        by_name[e["module"]] = e
    rank = {m: i for i, m in enumerate(order)}
    modules = sorted(by_name.values(), key=lambda e: (rank.get(e["module"], len(rank)), e["module"]))
    return {"format": FORMAT, "module_timeout": module_timeout, "test_timeout": test_timeout, "modules": modules}


def save(store: dict[str, Any], path: Path = RESULTS_FILE) -> None:
    path.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def problems(store: dict[str, Any]) -> list[str]:
    """Inconsistencies inside a results file (a hand edit, a merge gone wrong): each entry's counts must agree."""
    out = []
    for e in store["modules"]:
        native_pass = e["native"]["pass"]
        for b, r in e["backends"].items():
            if r["kept"] + len(r["lost"]) != native_pass:
                out.append(f"{e['module']} on {b}: kept {r['kept']} + lost {len(r['lost'])} != native passes "
                           f"{native_pass}")
            if r["kept"] > r["pass"]:
                out.append(f"{e['module']} on {b}: kept {r['kept']} > passed {r['pass']}")
    return out


_BACKEND_ORDER = {"sim": 0, "process": 1}


def backends_of(store: dict[str, Any]) -> list[str]:
    """The backends in the results, sim and process first (the file itself keeps its keys sorted)."""
    seen = {b for e in store["modules"] for b in e["backends"]}
    return sorted(seen, key=lambda b: (_BACKEND_ORDER.get(b, len(_BACKEND_ORDER)), b))


# The command that measures every module into the repository's results file and page.
RUN_COMMAND = ("python -m posix_shim compat --sections cpython --cpython-tests "
               "--cpython-results docs/compat_cpython.json --out docs/compat.md")


def render(store: dict[str, Any], command: str = RUN_COMMAND) -> str:
    """The docs section, from the stored results only (so a test can re-render it without running anything)."""
    lines = ["## CPython's regression tests", ""]
    modules = store["modules"]
    if not modules:
        return "\n".join(lines + ["Not generated yet: run `python -m posix_shim compat --cpython-tests` (it takes "
                                  "most of an hour).", ""])
    backends = backends_of(store)
    dates = sorted({e["generated"] for e in modules})
    when = dates[0] if len(dates) == 1 else f"between {dates[0]} and {dates[-1]}"
    pythons = ", ".join(sorted({e["python"] for e in modules}))
    lines += [
        f"Measured {when} on Python {pythons} by `{command}` (all modules) or the same with `--cpython-modules "
        "LIST` (those modules, merged into the rest). The run stores its results in "
        "[compat_cpython.json](compat_cpython.json) and this section is rendered from that file: "
        "`python -m posix_shim compat --sections cpython --out docs/compat.md` re-renders it without running "
        "anything, and `tests/test_compat.py` fails when the two disagree. Each module of the "
        "interpreter's own `test` package runs through `unittest` in one process (no `-j`), natively and as "
        "`python -m posix_shim --backend B -A cpython_runner.py` (posix_shim/compat/cpython_runner.py), from a "
        "fresh scratch directory with TMPDIR inside it, "
        "with `test.support.use_resources = []` as `python -m test` has without `-u` (test_socketserver alone gets "
        "`network`: CPython marks the whole module so, yet it only uses loopback). A test still running after "
        f"{store['test_timeout']:.0f} s is recorded as an error and the module restarts without it; each module "
        f"has a cap of {store['module_timeout']:.0f} s per run. *kept* counts the tests that pass natively and "
        "also pass inside.",
        "",
    ]
    header = "| module | native pass / fail / skip |"
    for b in backends:
        header += f" `{b}` pass / fail / skip | `{b}` kept |"
    lines += [header, "|" + " --- |" * (2 + 2 * len(backends))]
    totals = {b: [0, 0] for b in backends}
    causes: dict[str, collections.Counter[str]] = {b: collections.Counter() for b in backends}
    examples: dict[tuple[str, str], str] = {}
    notes = []
    for e in modules:
        n = e["native"]
        row = f"| `{e['module']}` | {n['pass']} / {n['fail']} / {n['skip']} |"
        if n["note"]:
            notes.append(f"`{e['module']}` native: {n['note']}")
        for b in backends:
            r = e["backends"].get(b)
            if r is None:
                row += " not run | |"
                continue
            pct = f" ({100 * r['kept'] / n['pass']:.0f} %)" if n["pass"] else ""
            row += f" {r['pass']} / {r['fail']} / {r['skip']} | {r['kept']} of {n['pass']}{pct} |"
            totals[b][0] += r["kept"]
            totals[b][1] += n["pass"]
            if r["note"]:
                slow = ", ".join(f"`{t.rsplit('.', 2)[-2]}.{t.rsplit('.', 1)[-1]}` {d:.0f} s" for t, d in r["slowest"])
                notes.append(f"`{e['module']}` on `{b}`: {r['note']}" + (f"; slowest inside: {slow}" if slow else ""))
            for t, reason in sorted(r["lost"].items()):
                c = cause(reason)
                causes[b][c] += 1
                examples.setdefault((b, c), t)
        lines.append(row)
    lines.append("")
    for b in backends:
        kept, total = totals[b]
        pct = f" ({100 * kept / total:.1f} %)" if total else ""
        lines += [f"**`{b}`: {kept} of the {total} tests that pass natively also pass inside the enclave{pct}.**", ""]
        if causes[b]:
            lines += [f"Every remaining failure on `{b}` (a test that passes natively), grouped by cause (a known "
                      "cause by name, others after removing numbers, quoted names and paths):", "",
                      "| tests | cause | for example |", "| --- | --- | --- |"]
            for c, count in sorted(causes[b].items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"| {count} | `{_md(c)}` | `{examples[(b, c)]}` |")
            lines.append("")
    if notes:
        lines += ["Notes:", ""] + [f"* {_md(n)}" for n in notes] + [""]
    return "\n".join(lines)


def totals(store: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """backend -> (kept, natively passing), over every stored module."""
    out: dict[str, tuple[int, int]] = {}
    for b in backends_of(store):
        kept = sum(e["backends"][b]["kept"] for e in store["modules"] if b in e["backends"])
        total = sum(e["native"]["pass"] for e in store["modules"] if b in e["backends"])
        out[b] = (kept, total)
    return out
