"""One look for every figure the library, the examples and the benchmarks write.

Sizes are for a reader: PNGs at `DPI` (150) dots per inch, no text below `MIN_FONT` points
(so at 150 dpi no letter is under about 17 px tall), tick labels without offset notation
(`1.5e4` written out, never "+1.5e4" in a corner), and a chance level drawn as a dashed line
in the panel of the metric it belongs to, never as a panel of its own.

Use:

    from manifold_align import plot_style

    with plot_style.style():
        fig, axes = plot_style.panels(2)             # 1 x 2, each PANEL_SIZE inches
        axes[0][0].plot(steps, top1, label="top-1")
        plot_style.chance_line(axes[0][0], 0.25)
        plot_style.save(fig, "eval.png")

Figures are bare `matplotlib.figure.Figure` objects rendered by Agg: pyplot's global state
and backend are never touched, so importing this module is safe in any program.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = ["DPI", "MIN_FONT", "PANEL_SIZE", "RC", "chance_line", "panels", "save", "style"]

DPI = 150
"""Dots per inch of every saved PNG."""

MIN_FONT = 8.0
"""The smallest text size (points) in any figure: tick labels and legends."""

PANEL_SIZE = (4.8, 3.4)
"""Width, height in inches of one panel in `panels`."""

RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.08,
    "figure.figsize": PANEL_SIZE,
    "font.size": 10.0,
    "axes.titlesize": 11.0,
    "axes.labelsize": 10.0,
    "xtick.labelsize": 9.0,
    "ytick.labelsize": 9.0,
    "legend.fontsize": 9.0,
    "legend.title_fontsize": 9.0,
    "figure.titlesize": 12.0,
    "axes.formatter.useoffset": False,
    "axes.formatter.limits": (-4, 6),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.5,
    "lines.markersize": 5.0,
    "legend.framealpha": 0.85,
}
"""The rcParams of the style (see `style`)."""

CHANCE = {"color": "0.35", "linestyle": "--", "linewidth": 1.2, "zorder": 1.5}
"""How `chance_line` draws a chance level."""


@contextmanager
def style() -> Iterator[None]:
    """Apply `RC` for the figures made and saved inside the block (`matplotlib.rc_context`).

    Titles, labels and legends take their sizes when created, so build the whole figure
    inside the block; `save` applies the style again while it draws.
    """
    with matplotlib.rc_context(RC):
        yield


def panels(ncols: int = 1, nrows: int = 1, *, size: tuple[float, float] = PANEL_SIZE,
           sharex: bool = False, sharey: bool = False) -> tuple[Figure, list[list[Axes]]]:
    """A figure of `nrows x ncols` panels of `size` inches each, and its axes as rows.

    Raises:
        ValueError: `ncols` or `nrows` below 1.
    """
    if ncols < 1 or nrows < 1:
        raise ValueError(f"panels: ncols and nrows must be >= 1, got ncols={ncols}, nrows={nrows}")
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    return fig, [list(row) for row in axes]


def chance_line(ax: Axes, value: float, label: str | None = "chance") -> Line2D:
    """The chance level `value` as a dashed horizontal line in `ax` (the metric's own panel)."""
    return ax.axhline(value, label=label, **CHANCE)


def save(fig: Figure, path: str | Path) -> Path:
    """Write `fig` to `path` at `DPI` with the style applied while it draws; returns the path.

    A figure made by pyplot is closed afterwards (pyplot keeps it alive otherwise).
    """
    path = Path(path)
    with matplotlib.rc_context(RC):
        fig.savefig(path, dpi=DPI)
    if fig.canvas.manager is not None:  # a pyplot figure
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path
