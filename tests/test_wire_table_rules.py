"""wire.py's frame-size rule is a check that raises, not an assert: `python -O` keeps it (issue 19).

A row whose answer could exceed MAX_FRAME would make the fast codecs' `tag | length` comparison spill into the
version/kind/call bytes; the check must refuse such a row even in an optimized interpreter.  The negative control
runs the same oversized row through a plain `assert` under -O and shows that nothing stops it.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

_OVERSIZED = (
    "import dataclasses; from ocall_bridge import types as T, wire\n"
    "big = dataclasses.replace(wire.BY_NUMBER[wire.CODECS_BY_NAME['read'].number], name='read_huge',\n"
    "                          results=(T.Field('data', T.Bytes(2 * T.MAX_FRAME)),))\n"
    "cc = wire.CallCodec(big)\n"
)


def _run_optimized(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-O", "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_an_oversized_row_is_refused_even_under_python_O() -> None:
    result = _run_optimized(_OVERSIZED + "wire.check_codecs([cc])")
    assert result.returncode == 1
    assert "TableError: posix_shim: broken table: read_huge: its largest answer is" in result.stderr, result.stderr


def test_the_real_table_passes_under_python_O() -> None:
    result = _run_optimized("from ocall_bridge import wire; wire.check_codecs(wire.CODECS.values()); print('ok')")
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr


def test_negative_control_an_assert_lets_the_oversized_row_through_under_O() -> None:
    result = _run_optimized(_OVERSIZED + "assert cc.answer.max_size <= T.MAX_FRAME\nprint('accepted')")
    assert result.returncode == 0 and result.stdout == "accepted\n", result.stderr
