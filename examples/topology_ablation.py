"""The range argument in a trained model: sphere vs oblique with the temperature held fixed.

The equilibrium argument (docs/tutorials/equilibrium.md) says that under caption noise the
softmax loss wants a logit gap that a similarity range of ``[-1, 1]`` cannot give at scale 1,
while ``Oblique(k, d)`` (range ``[-k, k]``) can; and that what matters is the reachable logit
range, not the manifold: a sphere whose *fixed* scale equals ``k`` should behave like the
oblique model at scale 1. This script trains three conditions with the library's own trainer
(``manifold_align.train.train``) on the bundled synthetic data:

* ``sphere-s1``: the shipped ``tiny-sphere`` config with ``temperature: fixed``, scale 1;
* ``oblique-s1``: the shipped ``tiny-oblique`` config (``Oblique(8, 16)``), fixed scale 1;
* ``sphere-sk``: the sphere again, fixed scale ``k = 8`` (the control: same logit range as
  the oblique model).

Everything else (data, steps, batch, schedule, seed) is the same across conditions; each
condition runs once per seed (``train.seed``: initialisation and batch order). The report
gives, per condition, mean and standard deviation over the seeds of the held-out logit gap
``scale x (pos - neg)``, the training loss (mean of the last five logged steps, noisy
captions included), the zero-shot mean top-1 and image-to-text / text-to-image R@1:

```
<out>/ablation.md    the table (mean ± std over seeds) and the settings
<out>/ablation.json  every run's numbers and the summary
<out>/ablation.png   the four metrics per condition, one dot per seed
<out>/runs/<condition>-seed<s>/   each run's folder (config, metrics, final checkpoint)
```

Usage (repository root, inside the virtual environment):

```bash
python examples/topology_ablation.py --out runs/ablation            # the tutorial's table
python examples/topology_ablation.py --out runs/ablation-smoke --fast
```
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from manifold_align.config import ConfigError, load_config
from manifold_align.configs import resolve_config
from manifold_align.models.registry import model_config
from manifold_align.train import RunConfig, read_metrics, train

SPHERE = resolve_config("tiny-sphere", "train")
OBLIQUE = resolve_config("tiny-oblique", "train")
K = model_config("tiny-oblique").tokens

#: condition -> (description, config file, overrides of its own)
CONDITIONS: dict[str, tuple[str, Path, list[str]]] = {
    "sphere-s1": ("Sphere(128), fixed scale 1 (logits in [-1, 1])", SPHERE,
                  ["model.overrides.temperature=fixed", "model.overrides.temperature_init=1.0"]),
    "oblique-s1": (f"Oblique({K}, 16), fixed scale 1 (logits in [-{K}, {K}])", OBLIQUE,
                   ["model.overrides.temperature=fixed", "model.overrides.temperature_init=1.0"]),
    "sphere-sk": (f"Sphere(128), fixed scale {K} (logits in [-{K}, {K}]; the control)", SPHERE,
                  ["model.overrides.temperature=fixed", f"model.overrides.temperature_init={K}.0"]),
}

#: the measured budget (the tutorial's table): see the training tutorial for the wall time
BUDGET = ["train.steps=70", "schedule.warmup_steps=7", "data.batch_size=64",
          "eval.zeroshot_samples=300", "eval.retrieval_samples=300"]
FAST = ["train.steps=3", "schedule.warmup_steps=1", "data.batch_size=16",
        "data.synthetic.size=128", "eval.zeroshot_samples=32", "eval.retrieval_samples=32"]
COMMON = ["train.eval_every=0", "train.ckpt_every=0", "train.keep_checkpoints=1",
          "train.log_every=5", "train.progress=false", "train.device=cpu"]

METRICS = {
    "gap_logits": ("held-out logit gap", "geometry/gap_logits"),
    "loss": ("training loss (last 5 logs)", None),
    "zeroshot_top1": ("zero-shot mean top-1", "zeroshot/mean_top1"),
    "i2t_r1": ("image→text R@1", "retrieval/image_to_text@1"),
    "t2i_r1": ("text→image R@1", "retrieval/text_to_image@1"),
}


def _configs(overrides: list[str]) -> dict[str, RunConfig]:
    """Every condition's config with ``overrides``; a bad override raises ``ConfigError``."""
    return {name: load_config(RunConfig, path, [*own, *overrides])
            for name, (_, path, own) in CONDITIONS.items()}


def _run(config: RunConfig, run_dir: Path, threads: int = 1) -> dict[str, float]:
    """Train one run with the library's trainer and read its final numbers."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    result = train(config, run_dir)
    wall = time.perf_counter() - start
    logs = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]
    row = {"wall_s": wall, "scale": float(result.model.temperature.scale),
           "loss": statistics.fmean(r["loss"] for r in logs[-5:])}
    for key, (_, metric) in METRICS.items():
        if metric is not None:
            row[key] = float(result.eval[metric])
    return row


def _summary(runs: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict[str, list[float]]]:
    """``{condition: {metric: [mean, std]}}`` over seeds (std 0 for a single seed)."""
    out = {}
    for name, by_seed in runs.items():
        out[name] = {}
        for key in METRICS:
            values = [row[key] for row in by_seed.values()]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[name][key] = [statistics.fmean(values), std]
    return out


def _table(summary: dict[str, dict[str, list[float]]]) -> list[str]:
    lines = ["| condition | " + " | ".join(label for label, _ in METRICS.values()) + " |",
             "|---|" + "---|" * len(METRICS)]
    for name, stats in summary.items():
        cells = [f"{stats[k][0]:.3f} ± {stats[k][1]:.3f}" for k in METRICS]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return lines


def _figure(runs: dict[str, dict[int, dict[str, float]]], path: Path) -> None:
    from manifold_align import plot_style

    names = list(runs)
    keys = [k for k in METRICS if k != "t2i_r1"]
    with plot_style.style():
        fig, grid = plot_style.panels(2, (len(keys) + 1) // 2)  # two wide: readable on a page
        for ax, key in zip([ax for row in grid for ax in row], keys):
            for i, name in enumerate(names):
                values = [row[key] for row in runs[name].values()]
                mean = statistics.fmean(values)
                ax.bar(i, mean, color=f"C{i}", alpha=0.45)
                ax.scatter([i] * len(values), values, color=f"C{i}", s=18, zorder=3)
            ax.set_xticks(range(len(names)), names, rotation=15)
            ax.set_title(METRICS[key][0])
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle("bars: mean over seeds; dots: one run each")
        plot_style.save(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder; must be empty")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="train.seed of each repeat (default: 0 1 2)")
    parser.add_argument("--fast", action="store_true", help="a smoke version (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads a run (default 1)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs side by side in separate processes (default 1)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override applied to every run (repeatable)")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        print(f"topology_ablation: {args.out} is not empty; choose another --out", file=sys.stderr)
        return 2
    overrides = [*BUDGET, *COMMON, *(FAST if args.fast else []), *args.overrides]
    try:
        configs = _configs(overrides)
    except ConfigError as exc:
        print(f"topology_ablation: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    runs: dict[str, dict[int, dict[str, float]]] = {name: {} for name in CONDITIONS}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max(1, args.jobs), mp_context=context) as pool:
        futures = {}
        for seed in args.seeds:
            for name, config in configs.items():
                config = dataclasses.replace(
                    config, train=dataclasses.replace(config.train, seed=seed))
                run_dir = args.out / "runs" / f"{name}-seed{seed}"
                futures[name, seed] = pool.submit(_run, config, run_dir, args.threads)
        for (name, seed), future in futures.items():
            runs[name][seed] = row = future.result()
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()),
                  flush=True)
    total = time.perf_counter() - total
    summary = _summary(runs)
    cfg = configs["sphere-s1"]
    settings = (f"{cfg.train.steps} steps of batch {cfg.data.batch_size} on "
                f"{cfg.data.synthetic.size} synthetic images, caption noise "
                f"{cfg.data.synthetic.caption_noise}, seeds {args.seeds}; held-out "
                f"{cfg.eval.zeroshot_samples} zero-shot images, {cfg.eval.retrieval_samples} "
                f"retrieval pairs; {total:.0f} s in all on {platform.machine()}, "
                f"{args.jobs} run(s) side by side, {args.threads} thread(s) each")
    (args.out / "ablation.json").write_text(json.dumps(
        {"settings": settings, "overrides": overrides, "k": K,
         "conditions": {n: d for n, (d, _, _) in CONDITIONS.items()},
         "runs": {n: {str(s): r for s, r in by.items()} for n, by in runs.items()},
         "summary": summary}, indent=2))
    _figure(runs, args.out / "ablation.png")
    lines = [f"# Topology ablation{' (fast smoke run)' if args.fast else ''}", "",
             f"{settings}. Mean ± standard deviation over seeds.", ""]
    lines += [f"- `{n}`: {d}" for n, (d, _, _) in CONDITIONS.items()]
    lines += ["", *_table(summary), "", "![ablation](ablation.png)", ""]
    (args.out / "ablation.md").write_text("\n".join(lines))
    print("\n".join(_table(summary)))
    print(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
