"""The report as Markdown: the matrix and support sections, and the document that holds the three sections.

Rendering is kept apart from running so that a test can re-render a section from committed facts (the matrix's
verdicts, the support table's declarations, the stored CPython results) and compare it with the published page.
"""

from __future__ import annotations

import collections
import datetime
import os
import platform
from collections.abc import Sequence

from ocall_bridge.calls import CALLS

from .corpus import NEEDS, Program, Row, policy_flags
from .runs import REPO
from .support import KINDS, SUPPORT_MODULES, support_rows

SECTIONS = ("matrix", "support", "cpython")

# The command that writes the repository's own page (docs/compat.md); the page and its tests name it.
DOCS_COMMAND = "python -m posix_shim compat --out docs/compat.md"


def md(text: str) -> str:
    """Text safe inside one table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------------------------
# The matrix
# ---------------------------------------------------------------------------------------------------------------

_STATUS_TEXT = {"pass": "pass", "refused": "refused as promised", "fail": "**FAIL**", "broken": "**BROKEN**"}


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
            lines.append(f"{i}. `{name}` on `{b}`: {md(reason)}")
        lines.append("")
    refused = [(r.program.name, b, r.verdicts[b].reason) for r in rows for b in backends
               if r.verdicts[b].status == "refused"]
    if refused:
        lines += ["### Refusals (as promised)", ""]
        for name, b, reason in refused:
            lines.append(f"* `{name}` on `{b}`: `{md(reason)}`")
        lines.append("")
    lines += ["### What the grants mean", "",
              "`needs` in expectations.toml become these flags on top of the default policy:", ""]
    for need, (what, _) in NEEDS.items():
        lines.append(f"* `{need}` ({what}): `{' '.join(policy_flags([need]))}`")
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# The support table
# ---------------------------------------------------------------------------------------------------------------


def render_support(modules: Sequence[str] = SUPPORT_MODULES) -> str:
    rows = support_rows(modules)
    lines = [
        "## POSIX support table",
        "",
        "Generated from the ocall table (`ocall_bridge/calls.py`), the interposition registry "
        "(`posix_shim.interpose.all_replacements()`) and what each replacement declares; `tests/test_compat.py` "
        "fails when this section is out of date (regenerate it with "
        "`python -m posix_shim compat --sections support --out docs/compat.md`).",
        "",
        "* **ocall**: the call leaves the enclave as the named ocall(s) and the host's answer is validated.",
        "* **served inside**: the enclave answers itself (its fd table, cwd, umask, environment, clocks state ...).",
        "* **refused (ENOSYS)**: outside the enclave's POSIX subset: raises `OSError(ENOSYS)` naming the call.",
        "* **pure Python, inside**: a Python function (or class) of the module, not replaced: it runs inside the "
        "enclave and its own calls are the rows above it.",
        "* **replaced, undeclared**: the enclave replaces it, but the replacement does not declare the rows it "
        "uses, so this table does not say what it does.",
        "* **not interposed**: the native C function runs unchanged. On the `sim` backend it acts on the host "
        "process directly; for a function taking a file descriptor it sees host fds, not enclave fds.",
        "* *refuses ...*: served, but the arguments or modes named raise ENOSYS.",
        "",
        "Each replacement states its rows next to its code: `@uses(\"open\", \"fstat\", partial=\"...\")` "
        "(`ocall_bridge.calls.uses`; tests/ocall_reach.py checks every declaration against the code). A refusal "
        "is stated with `__posix_shim_refused__ = True` on the replacement, or its name in the module's "
        "`REFUSED` tuple. Nothing here is inferred from the code.",
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
            lines.append(f"| `{r.name}` | {what} | {md(r.detail)} |")
        lines.append("")
    used_by: dict[str, list[str]] = collections.defaultdict(list)
    for r in rows:
        for call in (*r.calls, *r.inside):
            used_by[call].append(f"{r.module}.{r.name}")
    lines += ["### The ocall table", "",
              "Every row of `ocall_bridge/calls.py`: its wire number (or *inside*), family, whether it may block, "
              "the host resources the policy checks, and the functions above that declare they use it.", "",
              "| call | number | family | blocking | resources | used by | notes |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in CALLS:
        number = "inside" if c.inside else str(c.number)
        res = ", ".join(f"{p}: {k}" for p, k in c.resources)
        users = used_by.get(c.name, [])
        shown = ", ".join(f"`{u}`" for u in users[:6]) + (f" +{len(users) - 6}" if len(users) > 6 else "")
        lines.append(f"| `{c.name}` | {number} | {c.family} | {'yes' if c.blocking else ''} | {res} | {shown} | "
                     f"{md(c.doc)} |")
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------------------------------------------

TITLE = f"""# Compatibility matrix

What runs inside the enclave, on which backend, and which part of POSIX exists there. Generated by
`{DOCS_COMMAND}` (see `--help`); do not edit by hand: edit compat_tests/ or the code and
regenerate.
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


PLACEHOLDER = {
    "matrix": "## Programs x backends\n\nNot generated by this run: `python -m posix_shim compat --sections matrix`.\n",
    "support": "## POSIX support table\n\nNot generated by this run: `python -m posix_shim compat --sections "
               "support`.\n",
    "cpython": "## CPython's regression tests\n\nNot generated by this run: `python -m posix_shim compat "
               "--sections cpython` renders the stored results, `--cpython-tests` runs them (most of an hour).\n",
}


def assemble(sections: dict[str, str], previous: str | None = None) -> str:
    """The document: regenerated sections, and the others kept from the previous version of the file."""
    parts = [TITLE]
    for name in SECTIONS:
        body = sections.get(name)
        if body is None and previous is not None:
            body = extract_section(previous, name)
        if body is None:
            body = PLACEHOLDER[name]
        parts.append(f"{_marker(name)}\n{body.strip()}\n{_marker(name, True)}\n")
    return "\n".join(parts)
