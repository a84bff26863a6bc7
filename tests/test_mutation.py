"""The mutation run as a test: every check-removing mutant of tests/mutation.py must be killed.

Marked `mutation` and skipped unless asked for (`pytest -m mutation`, or POSIX_SHIM_MUTATION=1): it runs one
pytest per mutant (about 2-3 minutes on two idle cores), which CI does in its own step.
"""

from __future__ import annotations

import pytest

from tests import mutation


@pytest.mark.mutation
def test_every_check_removing_mutant_is_killed(figures: dict[str, int]) -> None:
    lines: list[str] = []
    results = mutation.run(out=lines.append)
    print("\n".join(lines))
    ran = sum(len(v) for v in results.values())
    figures["mutants killed"] = len(results["killed"])
    figures["mutants run"] = ran
    assert ran == len(mutation.MUTANTS)
    assert not results["error"], "\n".join(lines)
    assert not results["survived"], "\n".join(lines)
