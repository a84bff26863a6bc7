"""The ocall table's own rules are checks that raise, not asserts: `python -O` keeps them (issue 19).

Each case builds a broken copy of the table in a `python -O` interpreter and hands it to the same check the
module runs at import.  The negative control runs the same broken table through a plain `assert` under -O and
shows that nothing stops it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

CASES = {
    "duplicate name": (
        "from ocall_bridge import calls; calls.check_table(calls.CALLS + (calls.BY_NAME['open'],))",
        "two rows named 'open'"),
    "duplicate number": (
        "import dataclasses; from ocall_bridge import calls\n"
        "twin = dataclasses.replace(calls.BY_NAME['read'], name='read_again')\n"
        "calls.check_table(calls.CALLS + (twin,))",
        "rows 'read' and 'read_again' share number"),
    "form with no row": (
        "import dataclasses; from ocall_bridge import native\n"
        "first = native.NATIVE[0]\n"
        "bad = dataclasses.replace(first, forms=(dataclasses.replace(first.forms[0], row='nope'),))\n"
        "native.check_map((bad,))",
        "which is no table row"),
}


def _run_optimized(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-O", "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_table_is_refused_even_under_python_O(case: str) -> None:
    code, message = CASES[case]
    result = _run_optimized(code)
    assert result.returncode == 1
    assert "TableError: posix_shim: broken table: " in result.stderr and message in result.stderr, result.stderr


def test_negative_control_an_assert_lets_the_same_table_through_under_O() -> None:
    result = _run_optimized("from ocall_bridge import calls\n"
                            "table = calls.CALLS + (calls.CALLS[0],)\n"
                            "assert len({c.name for c in table}) == len(table)\n"
                            "print('accepted', len(table))")
    assert result.returncode == 0 and result.stdout.startswith("accepted"), result.stderr
