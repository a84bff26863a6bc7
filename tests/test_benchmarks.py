"""Smoke test of the benchmark command: it runs, and its JSON has the promised shape.  No timing is asserted:
this machine is shared and noisy, and docs/performance.md holds the measured figures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    for name in ("time", "monotonic", "echo_16B", "asyncio_echo_1000", "http_100", "pread_16B", "startup",
                 "cli_json_tool", "cli_zipfile_c", "cli_compileall", "cli_pytest", "cli_asyncio_echo"):
        for backend in ("sim", "process"):
            if (name, backend) not in names:
                assert any(line.split()[:2] == [name, backend] and "skipped:" in line
                           for line in done.stdout.splitlines()), (name, backend, done.stdout)


def test_small_programs_run_natively_and_inside(tmp_path: Path) -> None:
    """`python -m benchmarks.programs` runs each program both ways (one failing inside would raise) and reports
    every row with its ratio; the programs' own output is what the work directory then holds."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "benchmarks.programs", "-n", "1", "--backend", "sim",
                           "--only", "zipfile_c,compileall", "--workdir", str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    wall = lines[2:lines.index(next(line for line in lines if line.strip().startswith("(! marks")))]
    rows = {line.split()[0]: line.split() for line in wall}
    assert set(rows) == {"startup", "zipfile_c", "compileall"}, done.stdout
    assert any("CPU ms" in line for line in lines), done.stdout
    for row in rows.values():
        assert float(row[3].rstrip("x!")) > 0, row
    import zipfile

    with zipfile.ZipFile(tmp_path / "out.zip") as z:
        assert len([n for n in z.namelist() if n.endswith(".txt")]) == 100
    assert len(list((tmp_path / "pkg" / "__pycache__").glob("mod*.pyc"))) == 30


# -- --plot ------------------------------------------------------------------------------------------------


def _fake_figures() -> list:
    from benchmarks.run import Figure

    return [Figure("pread_16B", "sim", 0.3, 3.0, "us"), Figure("pread_16B", "process", 0.3, 15.0, "us"),
            Figure("read_1MiB", "sim", 8000.0, 4000.0, "MiB/s"), Figure("startup", "process", 20.0, 60.0, "ms"),
            Figure("time", "sim", 0.05, 0.5, "us")]


def test_plot_draws_every_figure_of_the_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from benchmarks import plot

    out = tmp_path / "out.svg"
    figures = _fake_figures()
    plot.render(figures, out, plot.title_for({"mode": "quick", "rounds": 3, "python": "3.11", "cpus": 2}))
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for name in {f.name for f in figures}:
        assert name in svg, name
    for backend in ("sim", "process"):
        assert backend in svg
    # The bars are drawn from the figures given, not from constants: a throughput is inverted (8000/4000 = 2.00)
    # and the bar labels carry each value; the ratios span 2 to 50, so the axis is logarithmic.
    assert ">2.00<" in svg and ">50<" in svg and ">10<" in svg
    assert "log scale" in svg


def test_slowdown_is_the_same_way_up_for_every_unit() -> None:
    from benchmarks import plot
    from benchmarks.run import Figure

    assert plot.slowdown(Figure("stat", "sim", 1.0, 4.0, "us")) == 4.0
    assert plot.slowdown(Figure("read_1MiB", "sim", 1000.0, 250.0, "MiB/s")) == 4.0
    assert plot.slowdown(Figure("http_100", "sim", 100.0, 400.0, "req/s")) == 0.25


def test_plot_without_matplotlib_fails_clearly_before_measuring(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    from benchmarks import run

    # A None entry in sys.modules makes `import matplotlib` raise ImportError: matplotlib is absent.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    measured: list[str] = []
    monkeypatch.setattr(run.Bench, "prepare", lambda self: measured.append("prepare"))
    monkeypatch.setattr(run.Bench, "figure", lambda self, *a: measured.append("figure"))
    out = tmp_path / "out.svg"
    assert run.main(["--plot", str(out), "--backend", "sim", "--only", "stat"]) == 2
    captured = capsys.readouterr()
    assert "pip install 'posix_shim[plot]'" in captured.err and "matplotlib" in captured.err
    assert measured == [] and captured.out == "" and not out.exists()
