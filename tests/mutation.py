"""Negative controls at scale: remove each boundary check in a copy of the tree and show a test then fails.

`python -m tests.mutation [--list] [NAME ...]` copies the repository to a temporary folder once, runs the union
of the test subsets there unchanged (the baseline must pass), then for each hand-written mutant below: replaces
one snippet of a boundary module with a version missing a check, runs the subset of tests that should notice,
and puts the original back.  A mutant is *killed* when its subset fails (pytest status 1); it *survives* when the
subset passes; anything else (a collection error, a timeout) is reported as an error, never counted as a kill.
The summary line "mutants killed: K of N" is counted from the runs that happened.

Every mutant removes or weakens a check (nothing else): the three of issue 14 (the handle table taking any
number as a host descriptor, `Host._check_resource` gone, the wire decoder's header-length and trailing-bytes
checks gone) and one for each other check of docs/threat-model.md in validate.py, wire.py, host/handles.py,
host/runtime.py, host/confine.py and host/files.py.  A snippet that no longer occurs exactly once in its file
is an error: the list must follow the code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Test subsets: fast, in-process tests that exercise the checks directly (no program runs).
VALIDATE = ["tests/test_validate.py"]
WIRE = ["tests/test_wire.py", "-k", "header_length_other or trailing or another_call_or_sequence or unknown_call "
        "or failed_answer or invalid_text or huge_declared or list_claiming or largest_chunk or path_of_path_max "
        "or field_longer"]
HOST = ["tests/test_hostile.py"]
CONFINE = ["tests/test_policy.py", "-k", "symlinks_out_of_a_root or symlink_cannot_reach or rename_and_link "
           "or unix_socket_paths_are_confined"]
SUBSETS = {"validate": VALIDATE, "wire": WIRE, "host": HOST, "confine": CONFINE}


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    edits: tuple[tuple[str, str], ...]  # (snippet, replacement), each snippet occurring exactly once
    subset: str
    why: str


def m(name: str, file: str, old: str, new: str, subset: str, why: str) -> Mutant:
    return Mutant(name, file, ((old, new),), subset, why)


V, W = "ocall_bridge/validate.py", "ocall_bridge/wire.py"
HT, RT = "ocall_bridge/host/handles.py", "ocall_bridge/host/runtime.py"
CF, FL = "ocall_bridge/host/confine.py", "ocall_bridge/host/files.py"

MUTANTS: tuple[Mutant, ...] = (
    # -- issue 14's three ---------------------------------------------------------------------------------------
    m("handles-take-any-number", HT, '''        if h is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return h

    def pop''', '''        if h is None:
            return Handle(number, number, "file")
        return h

    def pop''', "host", "the handle table accepts any number as a raw host descriptor"),
    m("no-host-policy-recheck", RT, '''        value = args[i]
        if isinstance(t, T.Path)''', '''        return
        value = args[i]
        if isinstance(t, T.Path)''', "host", "Host._check_resource removed"),
    Mutant("no-header-length-or-trailing-bytes", W, (
        ("    if length != len(frame) or length > T.MAX_FRAME:", "    if length > T.MAX_FRAME:"),
        ('''            if end != self.size:
                raise WireError''', '''            if False:
                raise WireError'''),
        ("        if sum(lens) != end - pos:", "        if sum(lens) > end - pos:"),
    ), "wire", "the decoder's header-length and trailing-bytes checks removed"),
    # -- wire.py --------------------------------------------------------------------------------------------------
    m("no-header-length", W, "    if length != len(frame) or length > T.MAX_FRAME:", "    if length > T.MAX_FRAME:",
      "wire", "header length not compared with the bytes received"),
    m("no-trailing-bytes-fixed", W, '''            if end != self.size:
                raise WireError''', '''            if False:
                raise WireError''', "wire", "trailing bytes after an all-fixed body accepted"),
    m("no-length-sum", W, "        if sum(lens) != end - pos:", "        if sum(lens) > end - pos:", "wire",
      "declared lengths need not account for the whole body"),
    m("no-field-limit", W, '''            if n > limit:
                raise WireError(f"{self.what}: field''', '''            if False:
                raise WireError(f"{self.what}: field''', "wire", "a field longer than its type's maximum"),
    m("no-list-count-limit", W, "            if n > t.max or n * (4 + lay.size) > len(b) - 4:",
      "            if n * (4 + lay.size) > len(b) - 4 + 10**9:", "wire", "a list count is believed"),
    m("no-list-trailing", W, '''            if pos != len(b):
                raise WireError(f"list''', '''            if False:
                raise WireError(f"list''', "wire", "bytes after a list's last record"),
    m("no-answer-sequence", W, "    if aseq != seq:", "    if False:", "wire", "an answer for another sequence"),
    m("no-answer-call", W, "    if number != codec.number:", "    if False:", "wire", "an answer for another call"),
    m("no-fast-sequence", W, "                if v[0] == tag | n and v[1] == seq and not v[2] and length == n - size",
      "                if v[0] == tag | n and not v[2] and length == n - size", "wire",
      "the compiled answer decoder ignores the sequence number"),
    m("no-request-kind", W, "    if kind != REQUEST:", "    if False:", "wire", "a frame of another kind taken as a request"),  # noqa: E501
    m("no-version", W, "    if version != WIRE_VERSION:", "    if False:", "wire", "another wire version accepted"),
    m("no-request-errno", W, '''    if err:
        raise WireError(f"request carries errno''', '''    if False:
        raise WireError(f"request carries errno''', "wire", "a request carrying an errno"),
    m("no-path-nul", W, '''    if b"\\0" in p:
        raise WireError("path contains NUL")''', '''    if False:
        raise WireError("path contains NUL")''', "wire", "a path with a NUL inside"),
    m("no-text-nul", W, '''    if "\\0" in s:''', '''    if False:''', "wire", "text with a NUL inside"),
    # -- validate.py --------------------------------------------------------------------------------------------
    m("no-relations", V, "        self.answer = self.ranges + relation_checks(c)",
      "        self.answer = list(self.ranges)", "validate", "every stateless relation"),
    m("no-range-one", V, "        fused = lambda a, v: None if lo0 <= v[i0] <= hi0 else explain(a, v)",
      "        fused = lambda a, v: None", "validate", "the range of a call's only bounded integer"),
    m("no-range-two", V,
      "        fused = lambda a, v: None if lo0 <= v[i0] <= hi0 and lo1 <= v[i1] <= hi1 else explain(a, v)",
      "        fused = lambda a, v: None", "validate", "the ranges of a call's two bounded integers (terminal size)"),
    m("no-range-many", V, '''            for i, lo, hi in bounds:
                if not lo <= v[i] <= hi:''', '''            for i, lo, hi in bounds:
                if False:''', "validate", "the ranges of records with many bounded fields"),
    m("no-bound-len", V, '''            return lambda a, v: None if len(v[i]) <= a[j] else f"{name} is {len(v[i])}, more than''',  # noqa: E501
      '''            return lambda a, v: None if True else f"{name} is {len(v[i])}, more than''', "validate",
      "a byte string or list longer than the request allows"),
    m("no-errno-set", V, '''        if err in self.errnos:
            return None''', '''        if True:
            return None''', "validate", "an errno the call cannot return"),
    m("no-filetype", V, "        if kind not in _FILE_TYPES:", "        if False:", "validate", "a mode without file type"),  # noqa: E501
    m("no-stat-symlink", V, "        if follows and kind == _stat.S_IFLNK:", "        if False:", "validate",
      "stat answering a symlink"),
    m("no-nlink", V, "    return lambda a, v: None if v[0][_ST_NLINK] >= 1 else",
      "    return lambda a, v: None if True else", "validate", "nlink 0 for a name just found"),
    m("no-blksize-pow2", V, "        if lo <= b <= hi and not b & (b - 1):", "        if lo <= b <= hi:", "validate",
      "a blksize that is no power of two"),
    m("no-blksize-range", V, "        if lo <= b <= hi and not b & (b - 1):", "        if not b & (b - 1):",
      "validate", "a blksize of a terabyte"),
    m("no-statvfs", V, "        if st[bfree] > st[blocks] or st[bavail] > st[blocks]:", "        if False:",
      "validate", "more free blocks than blocks"),
    m("no-seek-set", V, '''            return None if position == offset else f"SEEK_SET''', '''            return None if True else f"SEEK_SET''',  # noqa: E501
      "validate", "SEEK_SET answering another position"),
    m("no-dirent-name", V, '''            if not name or name in (b".", b"..") or b"/" in name or b"\\0" in name:''',
      '''            if False:''', "validate", "a directory entry that is a path"),
    m("no-resolver-count", V, "        if len(results) > limit:", "        if False:", "validate",
      "65 resolver answers"),
    m("no-resolver-family", V, "            if family not in families or (asked and family != asked):",
      "            if False:", "validate", "a resolver answer of another family"),
    m("no-fresh-issued", V, '''                if h in self.issued:''', '''                if False:''', "validate",
      "a handle aliasing one handed over before (stdio's included)"),
    m("no-fresh-stdio-range", V, '''            if h < 3:''', '''            if False:''', "validate",
      "a handle 0-2"),
    m("no-listing-repeat", V, "            if len(fresh) != len(names) or not fresh.isdisjoint(seen):",
      "            if False:", "validate", "a listing repeating a name"),
    m("no-listing-end", V, '''                if entries:
                    return "the listing goes on after it ended"''', '''                if False:
                    return "the listing goes on after it ended"''', "validate", "a listing going on after its end"),
    m("no-listing-total", V, "            if len(seen) + len(fresh) > K.MAX_LISTING:", "            if False:",
      "validate", "a listing without end of distinct names"),
    m("no-clock-ahead", V, "            if lo_now > track.hi + drift + slack:", "            if False:", "validate",
      "a clock jumping ahead of the enclave's counter"),
    m("no-clock-behind", V, "            if clock not in _AHEAD_ONLY_CLOCKS and hi_now < track.lo - drift - slack:",
      "            if False:", "validate", "a realtime clock falling behind the counter"),
    m("no-realtime-range", V, "                if clock in _REALTIME_CLOCKS and not K.REALTIME_MIN_NS <= ns <= K.REALTIME_MAX_NS:",  # noqa: E501
      "                if False:", "validate", "a realtime answer of -2**62"),
    m("no-sleep-long", V, "        if slept > elapsed + K.CLOCK_SLACK_NS + K.CLOCK_DRIFT * elapsed:",
      "        if False:", "validate", "a sleep claiming a year"),
    m("no-sleep-early", V, "        if elapsed < asked - 1_000_000:", "        if False:", "validate",
      "a sleep coming back early"),
    m("no-identity-stable", V, "            elif self.ids != ids:", "            elif False:", "validate",
      "an identity changing during the run"),
    # -- host/runtime.py, host/handles.py, host/files.py, host/confine.py ----------------------------------------
    m("no-request-checks", RT, "        for check in entry.request_checks:  # entry.checks.check_request, inlined",
      "        for check in ():", "host", "the host's range checks of requests"),
    m("no-call-allowed", RT, "        if entry.fn is None or not self.access.call_allowed(entry.name):",
      "        if entry.fn is None:", "host", "a call the policy does not enable"),
    m("no-absolute-path", RT, "        if isinstance(t, T.Path) and not value.startswith(b\"/\"):", "        if False:",
      "host", "a relative path resolved against the host's cwd"),
    m("handles-from-zero", HT, "        self._next = 3  # handles 0-2", "        self._next = 0  # handles 0-2", "host",
      "handles 0-2 issued: a stdio number becomes valid"),
    m("no-fd-write-check", FL, '''    denial = host.access.check(call, "write", h.path)
    if denial:
        log.warning''', '''    denial = None
    if denial:
        log.warning''', "host", "fchmod/futime/fchown of a read-only grant"),
    m("no-resolve-beneath", CF, "        return RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS\n",
      "        return RESOLVE_NO_MAGICLINKS\n", "confine", "resolution may leave the root"),
    m("no-realpath-recheck", CF, '''            reason = self.access.check("resolve", kind, real)''',
      '''            reason = None''', "confine", "a symlink's real target not re-checked"),
)


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".git", "__pycache__", ".hypothesis", ".pytest_cache", ".ruff_cache", "*.egg-info")
    shutil.copytree(REPO, dest, ignore=ignore, dirs_exist_ok=True)


def _pytest(tree: Path, args: list[str], timeout: float) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           *args]
    try:
        return subprocess.run(cmd, cwd=tree, env=env, capture_output=True, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return -1


def _one(tree: Path, mu: Mutant, timeout: float) -> tuple[str, str]:
    """(verdict, detail) of one mutant, applied in `tree` and undone afterwards."""
    path = tree / mu.file
    original = path.read_text()
    text = original
    for old, _ in mu.edits:
        if text.count(old) != 1:
            return "error", f"its snippet occurs {text.count(old)} times in {mu.file}"
    for old, new in mu.edits:
        text = text.replace(old, new)
    path.write_text(text)
    started = time.monotonic()
    try:
        status = _pytest(tree, SUBSETS[mu.subset], timeout)
    finally:
        path.write_text(original)
    verdict = {1: "killed", 0: "survived"}.get(status, "error")
    return verdict, f"{mu.file}: {mu.why} ({time.monotonic() - started:.1f} s, pytest status {status})"


def run(names: list[str] | None = None, timeout: float = 120, out: object = None,
        jobs: int = 2) -> dict[str, list[str]]:
    """Run the mutants (all, or those named) and return {"killed": [...], "survived": [...], "error": [...]}.

    `jobs` workers, each with its own copy of the tree (a mutant is applied in one copy only)."""
    say = (lambda s: print(s, flush=True)) if out is None else out  # type: ignore[assignment]
    chosen = [mu for mu in MUTANTS if not names or mu.name in names]
    results: dict[str, list[str]] = {"killed": [], "survived": [], "error": []}
    jobs = max(1, min(jobs, len(chosen)))
    with tempfile.TemporaryDirectory(prefix="posix_shim-mutants-") as tmp:
        trees = [Path(tmp) / f"tree{i}" for i in range(jobs)]
        for tree in trees:
            _copy_tree(tree)
        for subset in sorted({mu.subset for mu in chosen}):
            status = _pytest(trees[0], SUBSETS[subset], timeout)
            if status != 0:
                raise SystemExit(f"baseline: the {subset} tests fail on the unmutated tree (status {status})")
        todo = list(chosen)
        lock = threading.Lock()

        def worker(tree: Path) -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    mu = todo.pop(0)
                verdict, detail = _one(tree, mu, timeout)
                with lock:
                    results[verdict].append(mu.name)
                    say(f"{verdict.upper():<8} {mu.name:<36} {detail}")

        threads = [threading.Thread(target=worker, args=(tree,)) for tree in trees]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ran = sum(len(v) for v in results.values())
    say(f"mutants killed: {len(results['killed'])} of {ran} run ({len(results['survived'])} survived, "
        f"{len(results['error'])} errors)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once, each in its own copy (2)")
    args = parser.parse_args(argv)
    if args.list:
        for mu in MUTANTS:
            print(f"{mu.name:<36} {mu.file:<32} {mu.why}")
        return 0
    results = run(args.names or None, jobs=args.jobs)
    return 0 if not results["survived"] and not results["error"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
