"""CI's small run of tests/fuzz.py: every decoder and the host dispatch, with the counts taken from the run."""

from __future__ import annotations

import os

from tests import fuzz

EXAMPLES = int(os.environ.get("POSIX_SHIM_FUZZ_EXAMPLES", "3000"))


def test_decoders_and_host_dispatch_raise_nothing_unexpected(figures: dict[str, int]) -> None:
    lines: list[str] = []
    tallies = fuzz.run(EXAMPLES, seed=int(os.environ.get("POSIX_SHIM_FUZZ_SEED", "1")), out=lines.append)
    for t in tallies:
        assert t.unexpected == 0, "\n".join(lines)
        assert t.examples == EXAMPLES and t.decoded + t.refused == t.examples
        assert t.decoded > 0 and t.refused > 0  # both ways were exercised, not one of them only
        figures[f"fuzz examples run: {t.target} (tests/fuzz.py)"] = (
            figures.get(f"fuzz examples run: {t.target} (tests/fuzz.py)", 0) + t.examples)
