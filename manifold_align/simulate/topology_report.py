"""The part of a sweep's report that compares topologies: one figure and one table.

* ``gap_by_topology.png`` (when the sweep spans more than one kind of topology: sphere,
  oblique, Lorentz, product): measured gap against noise, one panel per temperature, one series
  per manifold, with the theory's $g^\\star(p)$ (dashed) and each manifold's ceiling
  $G_{\\max} = t_{\\max} G_1$ (dotted, where it falls inside the panel).
* `topology_table`: per manifold and noise, the ceiling $G_1$ at scale 1, $g^\\star$,
  whether a temperature is needed, the radius a `Lorentz` factor needs, and per temperature
  the measured gap against the reachable gap $\\min(g^\\star, G_{\\max})$.

Both use the runs with the first run's batch size and concept count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from manifold_align import plot_style
from manifold_align.simulate import theory

__all__ = ["plot_gap_by_topology", "spans_topologies", "topology_table"]


def _first_setting(records: list[dict]) -> list[dict]:
    b, c = records[0]["batch_size"], records[0]["concepts"]
    return [r for r in records if r["batch_size"] == b and r["concepts"] == c]


def _ordered(records: list[dict], key: str) -> list:
    return list(dict.fromkeys(r[key] for r in records))


def spans_topologies(records: list[dict]) -> bool:
    """Whether the runs cover more than one kind of topology."""
    return len({r["topology"] for r in records}) > 1


def plot_gap_by_topology(records: list[dict], path: Path) -> None:
    """Write ``gap_by_topology.png`` (module docstring) to ``path``."""
    recs = _first_setting(records)
    temps = _ordered(recs, "temperature_label")
    manifolds = _ordered(recs, "manifold")
    c, b = recs[0]["concepts"], recs[0]["batch_size"]
    noises = sorted(_ordered(recs, "noise"))
    ps = np.linspace(max(min(noises), 0.02), max(max(noises), 0.05), 60)
    g_star = np.array([theory.equilibrium_gap(float(p), 2, c) for p in ps])
    fig, grid = plot_style.panels(len(temps))
    axes = grid[0]
    top = 1.2 * max(max(r["measured_gap"] for r in recs), float(np.max(g_star[np.isfinite(g_star)])))
    for ax, t in zip(axes, temps, strict=True):
        ax.plot(ps, g_star, "k--", lw=1, label="theory $g^*$")
        for i, m in enumerate(manifolds):
            sel = sorted((r for r in recs if r["manifold"] == m and r["temperature_label"] == t),
                         key=lambda r: r["noise"])
            if not sel:
                continue
            ax.plot([r["noise"] for r in sel], [r["measured_gap"] for r in sel], "o-", color=f"C{i}",
                    ms=4, label=m)
            if sel[0]["max_gap"] is not None and sel[0]["max_gap"] < top:
                ax.axhline(sel[0]["max_gap"], color=f"C{i}", ls=":", lw=1)
        ax.set_title(f"temperature {t} (B={b}, C={c})")
        ax.set_xlabel("caption noise p")
        ax.set_ylabel("measured gap (dotted: ceiling)")
        ax.set_ylim(0, top)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left")
    plot_style.save(fig, path)


def _num(x: float | None) -> str:
    return "inf" if x is None else f"{x:.2f}"


def topology_table(records: list[dict]) -> list[str]:
    """Markdown lines of the per-topology table (module docstring)."""
    recs = _first_setting(records)
    temps = _ordered(recs, "temperature_label")
    c, b = recs[0]["concepts"], recs[0]["batch_size"]
    lines = [
        f"## Topologies (B={b}, C={c})",
        "",
        "G_1: the largest mean gap at scale 1 (sphere C/(C-1), oblique k C/(C-1), Lorentz "
        "D_C(R) within its radius R, product the sum; `manifold_align.simulate.topology`); "
        "a temperature is needed where g* > G_1; R_min: the radius the Lorentz factor needs "
        "for g* at scale 1. Per temperature: measured gap / reachable gap min(g*, t_max G_1).",
        "",
        "| manifold | G_1 | noise | g* | needs temperature | R_min | "
        + " | ".join(f"{t}: measured / reachable" for t in temps) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(temps),
    ]
    for m in _ordered(recs, "manifold"):
        for p in sorted(_ordered([r for r in recs if r["manifold"] == m], "noise")):
            rs = {r["temperature_label"]: r for r in recs if r["manifold"] == m and r["noise"] == p}
            r0 = next(iter(rs.values()))
            cells = [
                f"{_num(rs[t]['measured_gap'])} / {_num(rs[t]['reachable_gap'])}" if t in rs else "-"
                for t in temps
            ]
            radius = "-" if r0["min_lorentz_radius"] is None else _num(r0["min_lorentz_radius"])
            lines.append(
                f"| `{m}` | {_num(r0['ceiling'])} | {p:g} | {_num(r0['predicted_gap'])} | "
                f"{'yes' if r0['needs_temperature'] else 'no'} | {radius} | " + " | ".join(cells) + " |"
            )
    return [*lines, ""]
