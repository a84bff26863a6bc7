"""`python -m benchmarks --plot out.svg`: each figure's cost against native, one bar per backend, drawn from the
figures of the very run that produced them (nothing here is a constant).

matplotlib is an optional extra (`pip install 'posix_shim[plot]'`): the runtime never imports it, and the
benchmark command checks for it *before* measuring anything, so a missing extra costs seconds, not a run.

What a bar shows: how many times slower the enclave is than native Python, the same way up for every unit.
`ratio` in the JSON is enclave / native, which is above 1 for a slower time but *below* 1 for a slower
throughput; on one chart that would put a 10x slower read next to a 10x slower `stat` at opposite ends, so
throughput figures are drawn as native / enclave (the tick label says "inverted").  The axis turns
logarithmic when the bars span more than an order of magnitude (a cached clock read and a process start-up
differ by 100x and more), so neither end is flattened.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

EXTRA_HINT = "pip install 'posix_shim[plot]'"
THROUGHPUT_UNITS = ("MiB/s", "req/s")
LOG_SPAN = 10.0  # larger / smaller bar above which the axis is logarithmic


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed: the message names the extra that brings it."""


class Measured(Protocol):
    """What a bar needs from a figure (benchmarks.run.Figure has it)."""

    name: str
    backend: str
    native: float
    enclave: float
    unit: str


def require() -> None:
    """Raise PlotUnavailable unless matplotlib can be imported; called before any benchmark runs."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PlotUnavailable(f"--plot needs matplotlib, which is not installed ({exc}); install the plot extra: "
                              f"{EXTRA_HINT}") from None


def slowdown(fig: Measured) -> float:
    """How many times slower the enclave is than native (below 1: faster), whatever the unit."""
    if fig.unit in THROUGHPUT_UNITS:
        return fig.native / fig.enclave if fig.enclave else math.inf
    return fig.enclave / fig.native if fig.native else math.inf


def render(figures: Sequence[Measured], path: str | Path, title: str = "") -> None:
    """Draw `figures` as grouped bars (one group per figure name, one bar per backend) into `path` (SVG, or the
    format its suffix names)."""
    require()
    import matplotlib
    from matplotlib.figure import Figure as MplFigure  # no pyplot: no global state, no display backend

    names: list[str] = []
    backends: list[str] = []
    values: dict[tuple[str, str], float] = {}
    units: dict[str, str] = {}
    for fig in figures:
        if fig.name not in names:
            names.append(fig.name)
        if fig.backend not in backends:
            backends.append(fig.backend)
        values[fig.name, fig.backend] = slowdown(fig)
        units[fig.name] = fig.unit
    if not names:
        raise ValueError("no figures to plot")

    finite = [v for v in values.values() if math.isfinite(v) and v > 0]
    log = bool(finite) and max(finite) / min(finite) > LOG_SPAN
    width = 0.8 / len(backends)
    colours = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")
    # Text stays text in the SVG (the default turns glyphs into paths): smaller, searchable, and the figure
    # names can be checked.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "posix_shim"}):
        mfig = MplFigure(figsize=(max(6.0, 0.75 * len(names) + 2.5), 5.0), layout="constrained")
        ax = mfig.add_subplot()
        for i, backend in enumerate(backends):
            xs = [j + (i - (len(backends) - 1) / 2) * width for j, name in enumerate(names)
                  if (name, backend) in values]
            ys = [values[name, backend] for name in names if (name, backend) in values]
            bars = ax.bar(xs, ys, width, label=backend, color=colours[i % len(colours)])
            ax.bar_label(bars, labels=[_short(y) for y in ys], fontsize=7, rotation=90, padding=2)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        if log:
            from matplotlib.ticker import FuncFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([f"{n} (inverted)" if units[n] in THROUGHPUT_UNITS else n for n in names],
                           rotation=40, ha="right", fontsize=8)
        ax.set_ylabel("times slower than native" + (" (log scale)" if log else ""))
        ax.margins(y=0.15)
        ax.legend(title="backend")
        text = title or "posix_shim: cost against native Python, same run"
        ax.set_title("\n".join(textwrap.fill(part, 80) for part in text.split("\n")), fontsize=9)
        # SVG unless the name asks for another format matplotlib knows (out.png); no date: the same run gives the
        # same file.
        fmt = Path(path).suffix.lstrip(".").lower() or "svg"
        mfig.savefig(str(path), format=fmt, metadata={"Date": None} if fmt == "svg" else None)


def _short(value: float) -> str:
    if not math.isfinite(value):
        return "inf"
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def title_for(meta: dict[str, Any]) -> str:
    """A chart title that says how the figures were taken."""
    return (f"posix_shim, enclave against native in the same run ({meta.get('mode', 'full')}: medians of "
            f"{meta.get('rounds', '?')} rounds, python {meta.get('python', '?')}, {meta.get('cpus', '?')} cpus)\n"
            "bar = times slower than native (throughputs inverted); dashed line = native")
