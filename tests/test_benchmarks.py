"""Smoke test of the benchmark command: it runs, and its JSON has the promised shape.  No timing is asserted:
this machine is shared and noisy, and docs/performance.md holds the measured figures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS = {"name", "backend", "native", "enclave", "ratio", "unit"}


def test_quick_run_writes_every_promised_key(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert isinstance(figures, list) and figures
    for fig in figures:
        assert set(fig) == KEYS, fig
        assert fig["backend"] in ("sim", "process")
        assert fig["unit"] in ("us", "ms", "MiB/s", "req/s")
        for key in ("native", "enclave", "ratio"):
            assert isinstance(fig[key], float | int) and math.isfinite(fig[key]) and fig[key] > 0, fig
        assert math.isclose(fig["ratio"], fig["enclave"] / fig["native"], rel_tol=1e-2)
    names = {(f["name"], f["backend"]) for f in figures}
    # The file figures exist since the foundation: they must always be measured on sim.  (--quick copies a
    # tree of 200 files; a full run, 1,000.)
    for name in ("ocall_pread_16B", "ocall_stat", "pread_16B", "stat", "write_16B", "read_1MiB", "write_1MiB",
                 "startup", "copytree_200"):
        assert (name, "sim") in names, done.stdout
    # Whatever is not measured is said so, never silently dropped.
    for name in ("time", "monotonic", "echo_16B", "asyncio_echo_1000", "http_100", "pread_16B", "startup"):
        for backend in ("sim", "process"):
            if (name, backend) not in names:
                assert any(line.split()[:2] == [name, backend] and "skipped:" in line
                           for line in done.stdout.splitlines()), (name, backend, done.stdout)
