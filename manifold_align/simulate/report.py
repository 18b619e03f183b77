"""Write a finished sweep to disk: ``results.json``, ``trajectories.npz``, PNG plots and
``summary.md``.

Plots (matplotlib ``Figure`` objects rendered by Agg to PNG in the style of
`manifold_align.plot_style`; pyplot's global state is untouched):

* ``gap_vs_noise.png``: measured gap against noise, one panel per manifold, one series per
  temperature, with the theory's $g^\\star(p)$ (dashed) and each temperature's ceiling
  $G_{\\max}$ (dotted).
* ``scale_vs_noise.png``: the final scale against noise, with the smallest scale the manifold
  needs, $g^\\star / G_1$ ($G_1$ its largest gap at scale 1, $h C/(C-1)$ on unit rows).
* ``predicted_vs_measured.png``: measured gap against the reachable gap $\\min(g^\\star, G_{\\max})$.
* ``trajectories.png``: gap, scale and alignment along training, one column per manifold.
* ``gap_vs_components.png`` (when the sphere and oblique runs without temperature span several similarity ranges
  $h$, e.g. token counts): measured gap against $h$ per noise, with $g^\\star$ and the
  ceiling $h C/(C-1)$.
* ``gap_vs_batch.png`` (when the sweep has several batch sizes): measured gap against $B$ per
  concept count and noise, with $g^\\star$, which does not depend on $B$.
* ``gap_by_topology.png`` (when the sweep spans several kinds of topology): see
  [topology_report][manifold_align.simulate.topology_report].

``summary.md`` holds the theory per setting, the per-topology table
([topology_table][manifold_align.simulate.topology_report.topology_table]) and one row per run.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.lines import Line2D

from manifold_align import plot_style
from manifold_align.simulate import sigmoid_theory, theory, topology_report
from manifold_align.simulate.sweep import SweepResult

__all__ = ["write_report"]


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "inf"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _json_safe(x):
    """Non-finite floats (a diverged run) become ``None`` so that the JSON stays standard."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _unique(records: list[dict], key: str) -> list:
    seen: list = []
    for r in records:
        if r[key] not in seen:
            seen.append(r[key])
    return seen


def _noise_grid(records: list[dict]) -> np.ndarray:
    lo = min(r["noise"] for r in records)
    hi = max(r["noise"] for r in records)
    return np.linspace(max(lo, 0.02), max(hi, 0.05), 60)


def _theory_curve(ps: np.ndarray, concepts: int) -> np.ndarray:
    # g* does not depend on the batch size (theory module docstring); any B >= 2 gives it.
    return np.array([theory.equilibrium_gap(float(p), 2, concepts) for p in ps])


def _panels(n: int, rows: int = 1, width: float = 4.6, height: float = 3.4):
    """`rows x n` panels; a single row of more than two wraps onto a grid two wide (readable
    at the width of a page), still returned as one row of `n` axes."""
    if rows > 1 or n <= 2:
        return plot_style.panels(n, rows, size=(width, height))
    fig, grid = plot_style.panels(2, math.ceil(n / 2), size=(width, height))
    flat = [ax for row in grid for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, [flat[:n]]


def _series_key(r: dict, vary_bc: bool) -> str:
    """A run's series in the noise plots: its temperature, plus ``(B, C)`` when they vary."""
    label = r["temperature_label"]
    return f"{label}, B={r['batch_size']}, C={r['concepts']}" if vary_bc else label


def _plot_vs_noise(records: list[dict], path: Path, *, quantity: str) -> None:
    manifolds = _unique(records, "manifold")
    vary_bc = len({(r["batch_size"], r["concepts"]) for r in records}) > 1
    temps = _unique([{"s": _series_key(r, vary_bc)} for r in records], "s")
    fig, axes = _panels(len(manifolds))
    colors = {t: f"C{i % 10}" for i, t in enumerate(temps)}
    for ax, m in zip(axes[0], manifolds):
        rs = [r for r in records if r["manifold"] == m]
        ps = _noise_grid(rs)
        for c in _unique(rs, "concepts"):
            g = _theory_curve(ps, c)
            ceiling = next(r["ceiling"] for r in rs if r["concepts"] == c)
            if quantity == "gap":
                ax.plot(ps, g, "k--", lw=1, label=f"theory $g^*$ (C={c})")
            elif ceiling:  # an unbounded topology needs no scale at all
                ax.plot(ps, g / ceiling, "k--", lw=1, label=f"needed scale (C={c})")
        for t in temps:
            sel = sorted((r for r in rs if _series_key(r, vary_bc) == t), key=lambda r: r["noise"])
            if not sel:
                continue
            y = [r["measured_gap"] if quantity == "gap" else r["scale"] for r in sel]
            ax.plot([r["noise"] for r in sel], y, "o-", color=colors[t], label=t, ms=4)
            if quantity == "gap" and sel[0]["max_gap"] is not None:
                ax.axhline(sel[0]["max_gap"], color=colors[t], ls=":", lw=1)
        ax.set_title(m)
        ax.set_xlabel("caption noise p")
        ax.set_ylabel("gap (logit units)" if quantity == "gap" else "final scale")
        if quantity == "gap":
            top = max(r["measured_gap"] for r in rs)
            ax.set_ylim(0, 1.25 * max(top, *(x for x in _theory_curve(ps, rs[0]["concepts"]) if math.isfinite(x))))
        else:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    plot_style.save(fig, path)


def _plot_predicted_vs_measured(records: list[dict], path: Path) -> None:
    fig, axes = _panels(1, width=8.2, height=4.4)  # the legend takes the right part
    ax = axes[0][0]
    manifolds = _unique(records, "manifold")
    markers = {t: mk for t, mk in zip(_unique(records, "temperature"), "os^")}
    pts = [r for r in records if r["reachable_gap"] is not None]
    for i, m in enumerate(manifolds):
        for t, mk in markers.items():
            sel = [r for r in pts if r["manifold"] == m and r["temperature"] == t]
            if sel:
                ax.scatter([r["reachable_gap"] for r in sel], [r["measured_gap"] for r in sel],
                           color=f"C{i}", marker=mk, s=22, label=f"{m}, {t}")
    if pts:
        hi = 1.1 * max(max(r["reachable_gap"] for r in pts), max(r["measured_gap"] for r in pts))
        ax.plot([0, hi], [0, hi], "k-", lw=0.8)
        ax.fill_between([0, hi], [0, 0.9 * hi], [0, 1.1 * hi], color="k", alpha=0.08, label="±10%")
    ax.set_xlabel("predicted reachable gap min(g*, G_max)")
    ax.set_ylabel("measured gap")
    fig.legend(loc="outside right upper")  # beside the points, not on them
    ax.grid(alpha=0.3)
    plot_style.save(fig, path)


def _plot_trajectories(result: SweepResult, path: Path) -> None:
    records = result.records
    manifolds = _unique(records, "manifold")
    noises = sorted(_unique(records, "noise"))
    styles = {t: s for t, s in zip(_unique(records, "temperature"), ["-", "--", ":"])}
    cmap = matplotlib.colormaps["viridis"]
    cols = (("gap", "gap (logit units)"), ("scale", "scale"), ("alignment", "alignment"))
    # One row per manifold, one column per quantity: three panels wide whatever the sweep.
    fig, axes = _panels(len(cols), rows=len(manifolds), width=3.6, height=2.5)
    for row, m in enumerate(manifolds):
        for r in (r for r in records if r["manifold"] == m):
            color = cmap(noises.index(r["noise"]) / max(1, len(noises) - 1))
            for col, (key, _) in enumerate(cols):
                axes[row][col].plot(result.steps, result.trajectories[key][r["run"]], styles[r["temperature"]],
                                    color=color, lw=1)
        for col, (key, label) in enumerate(cols):
            ax = axes[row][col]
            ax.set_title(f"{m}: {label}")
            if key == "scale":
                ax.set_yscale("log")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    handles = [Line2D([], [], color=cmap(i / max(1, len(noises) - 1)), label=f"p={p:g}")
               for i, p in enumerate(noises)]
    handles += [Line2D([], [], color="k", ls=s, label=t) for t, s in styles.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 7))
    plot_style.save(fig, path)


def _scale_one_runs(records: list[dict]) -> list[dict]:
    """Runs on unit rows (sphere, oblique) at scale 1 (temperature ``none``) with the first such
    run's ``(B, C)``: their ceiling is ``components`` x C/(C-1)."""
    sel = [r for r in records if r["temperature"] == "none" and r["topology"] in ("sphere", "oblique")]
    if not sel:
        return []
    b, c = sel[0]["batch_size"], sel[0]["concepts"]
    return [r for r in sel if r["batch_size"] == b and r["concepts"] == c]


def _plot_vs_components(records: list[dict], path: Path) -> None:
    noises = sorted(_unique(records, "noise"))
    fig, axes = _panels(1, width=6.6, height=3.8)  # the legend takes the right part
    ax = axes[0][0]
    hs = sorted(_unique(records, "components"))
    concepts = records[0]["concepts"]
    ax.set_title(f"temperature none, B={records[0]['batch_size']}, C={concepts}")
    ax.plot(hs, [theory.max_similarity_gap(concepts, h) for h in hs], "k:", lw=1,
            label="ceiling h C/(C-1) at scale 1")
    for i, p in enumerate(noises):
        sel = sorted((r for r in records if r["noise"] == p), key=lambda r: r["components"])
        ax.plot([r["components"] for r in sel], [r["measured_gap"] for r in sel], "o-", color=f"C{i}",
                ms=4, label=f"p={p:g}")
        g = sel[0]["predicted_gap"]
        if g is not None:
            ax.axhline(g, color=f"C{i}", ls="--", lw=1)
    ax.set_xlabel("similarity range h (tokens)")
    ax.set_ylabel("measured gap (dashed: g*)")
    fig.legend(loc="outside right upper")
    ax.grid(alpha=0.3)
    plot_style.save(fig, path)


def _plot_vs_batch(records: list[dict], path: Path) -> None:
    fig, axes = _panels(1, width=6.6, height=3.8)  # the legend takes the right part
    ax = axes[0][0]
    series = _unique([{"k": (r["manifold"], r["temperature_label"], r["concepts"], r["noise"])} for r in records], "k")
    for i, (m, t, c, p) in enumerate(series):
        sel = sorted(
            (r for r in records if (r["manifold"], r["temperature_label"], r["concepts"], r["noise"]) == (m, t, c, p)),
            key=lambda r: r["batch_size"],
        )
        label = f"C={c}, p={p:g}" + (f", {m}, {t}" if len(series) > 1 and len({s[:2] for s in series}) > 1 else "")
        ax.plot([r["batch_size"] for r in sel], [r["measured_gap"] for r in sel], "o-", color=f"C{i % 10}",
                ms=4, label=label)
        if sel[0]["predicted_gap"] is not None:
            ax.axhline(sel[0]["predicted_gap"], color=f"C{i % 10}", ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size B")
    ax.set_ylabel("measured gap (dashed: g*)")
    fig.legend(loc="outside right upper")
    ax.grid(alpha=0.3)
    plot_style.save(fig, path)


def _summary(result: SweepResult, name: str, plots: list[str]) -> str:
    recs = result.records
    n_runs = len(recs)
    steps = recs[0]["steps"]
    close = [r for r in recs if r["gap_ratio"] is not None and abs(r["gap_ratio"] - 1) <= 0.10]
    finite = [r for r in recs if r["gap_ratio"] is not None]
    lines = [
        f"# Simulation sweep: {name}",
        "",
        f"- {n_runs} runs x {steps} steps in {len(result.group_seconds)} batched groups: "
        f"**{result.seconds:.1f} s** wall time with {result.threads} torch CPU thread(s) "
        f"({os.cpu_count()} CPUs, {platform.machine()}, torch {torch.__version__}; load average "
        f"{os.getloadavg()[0]:.1f} when the report was written).",
        f"- Loss: **{recs[0]['loss']}**. Measured gap within 10% of the reachable gap "
        f"min(g*, G_max): {len(close)} of {len(finite)} runs. Accuracy (share of concepts whose "
        f"own caption is the top match) 1.0 in {sum(r['accuracy'] == 1.0 for r in recs)} of {n_runs} runs.",
        "",
        "Per group: " + ", ".join(f"`{k}` {v:.1f} s" for k, v in result.group_seconds.items()),
        "",
        "## Theory",
        "",
        "g* minimizes the exact expected symmetric InfoNCE at the symmetric equilibrium "
        "(`manifold_align.simulate.theory`), and the sigmoid loss with its bias at its best "
        "(`manifold_align.simulate.sigmoid_theory`: the same g*); t_min = g*(C-1)/C is the "
        "smallest sphere scale, k_min the fewest oblique tokens at scale 1; the loss column is the "
        "sweep's loss.",
        "",
        "| noise | B | C | g* | t_min (sphere) | k_min (oblique) | loss at g* |",
        "|---|---|---|---|---|---|---|",
    ]
    seen = set()
    for r in recs:
        key = (r["noise"], r["batch_size"], r["concepts"])
        if key in seen:
            continue
        seen.add(key)
        eq = theory.equilibrium(*key)
        loss_at_gap = sigmoid_theory.sigmoid_equilibrium(*key).loss if recs[0]["loss"] == "sigmoid" else eq.loss
        lines.append(
            f"| {key[0]:g} | {key[1]} | {key[2]} | {_fmt(eq.gap if math.isfinite(eq.gap) else None)} | "
            f"{_fmt(eq.sphere_scale if math.isfinite(eq.sphere_scale) else None)} | "
            f"{'inf' if math.isinf(eq.oblique_tokens) else int(eq.oblique_tokens)} | {loss_at_gap:.3f} |"
        )
    lines += ["", *topology_report.topology_table(recs)]
    lines += [
        "",
        "## Runs",
        "",
        "Gap = scale x (s+ - s-), read from the parameters at the last step; reachable = "
        "min(g*, G_max) with G_max = max scale x h C/(C-1); loss = mean batch loss over the last "
        "steps against the theory's expected loss at the reachable gap; settle = first step after "
        "which the scale / the similarity gap stays within tolerance of its final value; accuracy = "
        "share of concepts whose own caption is the image's top match.",
        "",
        "| run | manifold | temperature | noise | B | C | scale | s+ | s- | measured gap | accuracy | g* | "
        "reachable | ratio | loss | predicted loss | scale settles | embeddings settle |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        lines.append(
            f"| {r['run']} | {r['manifold']} | {r['temperature_label']} | {r['noise']:g} | "
            f"{r['batch_size']} | {r['concepts']} | {r['scale']:.3g} | {r['pos_sim']:.3f} | "
            f"{r['neg_sim']:.3f} | {r['measured_gap']:.3f} | {r['accuracy']:.3f} | {_fmt(r['predicted_gap'])} | "
            f"{_fmt(r['reachable_gap'])} | {_fmt(r['gap_ratio'])} | {r['final_loss']:.3f} | "
            f"{_fmt(r['predicted_loss'])} | {r['scale_settle_step']} | {r['embedding_settle_step']} |"
        )
    if recs[0]["loss"] == "sigmoid":
        lines += _sigmoid_table(recs)
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def _sigmoid_table(recs: list[dict]) -> list[str]:
    """The sigmoid loss's logits and bias against its theory (``sigmoid_theory``)."""
    lines = [
        "",
        "## Sigmoid loss: logits and bias",
        "",
        "Positive logit v = scale s+ + bias and negative logit u = scale s- + bias against the "
        "theory's u_g + g and u_g at the reachable gap g; the loss fixes the gap and the logits, "
        "not the scale alone, so the predicted bias is u_g - scale s- for the run's own scale and s-.",
        "",
        "| run | manifold | temperature | noise | scale | t_min | bias | predicted bias | v | predicted v | "
        "u | predicted u |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        lines.append(
            f"| {r['run']} | {r['manifold']} | {r['temperature_label']} | {r['noise']:g} | {r['scale']:.3g} | "
            f"{_fmt(r['min_sphere_scale'])} | {r['bias']:.3f} | {_fmt(r['predicted_bias'])} | "
            f"{r['pos_logit']:.3f} | {_fmt(r['predicted_pos_logit'])} | {r['neg_logit']:.3f} | "
            f"{_fmt(r['predicted_neg_logit'])} |"
        )
    return lines


def write_report(result: SweepResult, out: str | Path, name: str = "sweep") -> list[Path]:
    """Write ``results.json``, ``trajectories.npz``, the PNG plots and ``summary.md`` to ``out``.

    ``results.json`` is ``{"name", "seconds", "group_seconds", "torch_threads", "runs": [...]}``
    with one record per run (keys in [manifold_align.simulate.sweep.run_sweep][manifold_align.simulate.sweep.run_sweep]; infinite
    theory values are ``null``). ``trajectories.npz`` holds ``steps`` ``(T,)`` and one
    ``(n_runs, T)`` array per trajectory name.

    Returns:
        The paths written.

    Raises:
        ValueError: an empty result.
    """
    if not result.records:
        raise ValueError("result: the sweep has no runs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    payload = {
        "name": name,
        "seconds": result.seconds,
        "group_seconds": result.group_seconds,
        "torch_threads": result.threads,
        "runs": [{k: _json_safe(v) for k, v in r.items()} for r in result.records],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1, allow_nan=False))
    written.append(out / "results.json")
    np.savez_compressed(out / "trajectories.npz", steps=result.steps, **result.trajectories)
    written.append(out / "trajectories.npz")

    plots = ["gap_vs_noise.png", "scale_vs_noise.png", "predicted_vs_measured.png", "trajectories.png"]
    with plot_style.style():
        _plot_vs_noise(result.records, out / plots[0], quantity="gap")
        _plot_vs_noise(result.records, out / plots[1], quantity="scale")
        _plot_predicted_vs_measured(result.records, out / plots[2])
        _plot_trajectories(result, out / plots[3])
        at_scale_one = _scale_one_runs(result.records)
        if len(_unique(at_scale_one, "components")) > 1:
            plots.append("gap_vs_components.png")
            _plot_vs_components(at_scale_one, out / plots[-1])
        if len(_unique(result.records, "batch_size")) > 1:
            plots.append("gap_vs_batch.png")
            _plot_vs_batch(result.records, out / plots[-1])
        if topology_report.spans_topologies(result.records):
            plots.append("gap_by_topology.png")
            topology_report.plot_gap_by_topology(result.records, out / plots[-1])
    written += [out / p for p in plots]
    (out / "summary.md").write_text(_summary(result, name, plots))
    written.append(out / "summary.md")
    return written
