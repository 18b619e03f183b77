"""Every figure the library writes uses manifold_align.plot_style: 150 dpi, no text under
MIN_FONT points, no offset tick notation, chance levels as dashed lines in their metric's panel."""

from __future__ import annotations

import json

import matplotlib
import pytest
from matplotlib.text import Text

from manifold_align import plot_style
from manifold_align.config import load_config
from manifold_align.simulate.config import SweepConfig
from manifold_align.simulate.report import _panels, write_report
from manifold_align.simulate.sweep import run_sweep
from manifold_align.train.metrics import MetricsWriter, plot_metrics

PIL = pytest.importorskip("PIL.Image")


@pytest.fixture
def saved(monkeypatch):
    """Every figure passed to plot_style.save, by file name."""
    figures = {}
    original = plot_style.save

    def record(fig, path):
        out = original(fig, path)
        figures[out.name] = fig
        return out

    monkeypatch.setattr(plot_style, "save", record)
    return figures


def _visible_texts(fig):
    # Tick labels exist once drawn: plot_style.save has drawn the figure.
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _check_readable(path, fig):
    dpi = PIL.open(path).info["dpi"][0]
    assert dpi >= plot_style.DPI - 0.5, f"{path.name}: {dpi} dpi"
    small = [(t.get_text(), t.get_fontsize()) for t in _visible_texts(fig)
             if t.get_fontsize() < plot_style.MIN_FONT]
    assert not small, f"{path.name}: text under {plot_style.MIN_FONT} pt: {small[:5]}"
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            fmt = axis.get_major_formatter()
            if hasattr(fmt, "get_useOffset"):
                assert not fmt.get_useOffset(), f"{path.name}: offset tick notation"
            assert not axis.get_offset_text().get_text(), f"{path.name}: offset text shown"


def test_style_settings():
    with plot_style.style():
        assert matplotlib.rcParams["savefig.dpi"] >= 150
        assert matplotlib.rcParams["axes.formatter.useoffset"] is False
        assert min(matplotlib.rcParams[k] for k in (
            "xtick.labelsize", "ytick.labelsize", "legend.fontsize")) >= plot_style.MIN_FONT
    with pytest.raises(ValueError, match="ncols"):
        plot_style.panels(0)


def test_training_plots_are_readable_and_chance_shares_the_metric_panel(tmp_path, saved):
    path = tmp_path / "metrics.jsonl"
    with MetricsWriter(path) as w:
        for step in range(1, 6):
            # A scale that moves in its fifth digit made matplotlib write "+1.4285e1" offsets.
            w.write("train", step, {"loss": 2.0 - step / 10, "scale": 14.2857 + 1e-4 * step,
                                    "pos_sim": 0.5, "neg_sim": 0.1})
        for step in (3, 5):
            w.write("eval", step, {"zeroshot/shape/top1": 0.3 + step / 100,
                                   "zeroshot/shape/chance_top1": 1 / 6,
                                   "retrieval/image_to_text@1": 0.1})
    written = plot_metrics(path, tmp_path / "plots")
    assert [p.name for p in written] == ["loss.png", "scale.png", "eval.png"]
    for p in written:
        _check_readable(p, saved[p.name])
    fig = saved["eval.png"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.axison]
    assert titles == ["retrieval/image_to_text@1", "zeroshot/shape/top1"]  # no chance panel
    shape = next(ax for ax in fig.axes if ax.get_title() == "zeroshot/shape/top1")
    chance = [ln for ln in shape.get_lines() if ln.get_linestyle() == "--"]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(1 / 6)


def test_simulation_plots_are_readable(tmp_path, saved):
    cfg = load_config(SweepConfig, None, [
        "noise=[0.2, 0.5]", "manifolds=[sphere:8, oblique:2x4]", "temperatures=[{mode: none}]",
        "steps=20", "log_every=10", "final_window=10",
    ])
    written = write_report(run_sweep(cfg), tmp_path, name="t")
    pngs = [p for p in written if p.suffix == ".png"]
    assert {p.name for p in pngs} >= {"gap_vs_noise.png", "trajectories.png"}
    for p in pngs:
        _check_readable(p, saved[p.name])
    assert json.loads((tmp_path / "results.json").read_text())["runs"]


def test_a_row_of_many_panels_wraps_two_wide():
    fig, axes = _panels(3)
    assert len(axes) == 1 and len(axes[0]) == 3
    assert fig.get_size_inches()[0] <= 2 * 4.6 + 0.01
    assert sum(ax.get_visible() for ax in fig.axes) == 3


def test_the_data_pages_grid_shows_the_items_and_their_captions(tmp_path, saved):
    # examples/synthetic_grid.py makes docs/img/synthetic_grid.png: item i of the dataset,
    # pixel for pixel, under its own caption; empty cells of the last row stay blank.
    import importlib.util
    from pathlib import Path

    import numpy as np

    from manifold_align.data import SyntheticCaptions

    script = Path(__file__).resolve().parents[1] / "examples" / "synthetic_grid.py"
    spec = importlib.util.spec_from_file_location("synthetic_grid", script)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    path = example.grid(tmp_path / "grid.png", count=5, columns=4, seed=3, image_size=32, noise=0.5)
    fig = saved["grid.png"]
    _check_readable(path, fig)
    data = SyntheticCaptions("train", size=5, seed=3, image_size=32, noise=0.5)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 8 and len(shown) == 5
    for i, ax in enumerate(shown):
        image, caption = data[i]
        assert np.array_equal(np.asarray(ax.images[0].get_array()), np.asarray(image))
        assert ax.get_title().replace("\n", " ") == caption
