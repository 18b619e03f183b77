"""The main demo: CLIP's sphere against the oblique multi-token model, on bundled data.

Trains the ``tiny`` configuration twice on the procedurally generated captioned shapes with
caption noise (the shipped configs ``tiny-sphere`` and ``tiny-oblique``),
evaluates both on held-out images (zero-shot classification of shape, colour, size and
position; image-text retrieval) and writes a report into the run folder:

```
<out>/report.md                 the table of both models, chance levels, wall times
<out>/curves.png                training loss, learned scale and zero-shot accuracy of both
<out>/sphere/, <out>/oblique/   each run's folder (config, metrics, checkpoints, plots)
```

Usage (from the repository root, inside the virtual environment):

```bash
python examples/demo.py                           # the full demo into runs/demo/<date-time>
python examples/demo.py --out runs/smoke --fast   # a smoke version of the same path
```

The report states the numbers as measured, whichever way they fall.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from manifold_align.config import ConfigError, load_config
from manifold_align.configs import resolve_config
from manifold_align.data.synthetic import ZERO_SHOT_TASKS
from manifold_align.train import RunConfig, load_trained, read_metrics

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "sphere": ("CLIP: Sphere, k = 1, learnable temperature", "tiny-sphere"),
    "oblique": ("Oblique, k tokens, multi-token", "tiny-oblique"),
}
FAST = [
    "train.steps=12",
    "schedule.warmup_steps=3",
    "data.batch_size=32",
    "data.synthetic.size=512",
    "train.eval_every=0",
    "train.ckpt_every=0",
    "train.log_every=2",
    "eval.zeroshot_samples=100",
    "eval.retrieval_samples=100",
]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _launch(name: str, config: str, overrides: list[str], out: Path, threads: int):
    """Start ``manifold-align train`` for one model; its log goes to ``<out>/<name>.log``."""
    cmd = [sys.executable, "-m", "manifold_align.cli", "train", "--config", config,
           "--out", str(out / name), "--no-progress"]
    for item in overrides:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = (out / f"{name}.log").open("w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log


def _train_all(overrides: list[str], out: Path, sequential: bool) -> dict[str, dict]:
    """Train every model; side by side (the cores split between them) unless ``sequential``."""
    cores = _cores()
    threads = cores if sequential else max(1, cores // len(MODELS))
    batches = [[n] for n in MODELS] if sequential else [list(MODELS)]
    runs: dict[str, dict] = {}
    for batch in batches:
        procs = {}
        for name in batch:
            print(f"== {name}: {MODELS[name][0]} (--config {MODELS[name][1]}), "
                  f"{threads} thread(s)", flush=True)
            procs[name] = (*_launch(name, MODELS[name][1], overrides, out, threads),
                           time.perf_counter())
        last_print = 0.0
        while procs:
            time.sleep(1.0)
            status = []
            for name, (proc, log, start) in list(procs.items()):
                records = read_metrics(out / name / "metrics.jsonl")
                step = max((r["step"] for r in records if r["kind"] == "train"), default=0)
                status.append(f"{name} step {step}")
                if proc.poll() is not None:
                    log.close()
                    if proc.returncode != 0:
                        raise SystemExit(f"demo: training {name} failed (exit {proc.returncode}); "
                                         f"see {out / (name + '.log')}")
                    runs[name] = {"wall": time.perf_counter() - start,
                                  "records": read_metrics(out / name / "metrics.jsonl")}
                    del procs[name]
            if time.perf_counter() - last_print >= 20.0 or not procs:
                print("   " + " | ".join(status), flush=True)
                last_print = time.perf_counter()
    for name, run in runs.items():
        run["train"] = next((r for r in reversed(run["records"]) if r["kind"] == "train"), {})
        run["eval"] = next((r for r in reversed(run["records"]) if r["kind"] == "eval"), {})
        run["model"], _, run["config"] = load_trained(out / name)
    return {name: runs[name] for name in MODELS}  # the table's column order, not finishing order


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(runs: dict[str, dict], config: RunConfig) -> list[str]:
    names = list(runs)
    evals = {n: runs[n]["eval"] for n in names}
    head = "| metric | chance | " + " | ".join(names) + " |"
    lines = [head, "|---|---|" + "---|" * len(names)]
    for attribute, task in ZERO_SHOT_TASKS.items():
        c = len(task.classnames)
        k5 = min(5, c)
        for k in (1, k5):
            key = f"zeroshot/{attribute}/top{k}"
            label = f"zero-shot {attribute} top-{k} ({c} classes)"
            lines.append(
                f"| {label} | {k / c:.3f} | "
                + " | ".join(_fmt(evals[n].get(key)) for n in names) + " |"
            )
    chance_mean = sum(1 / len(t.classnames) for t in ZERO_SHOT_TASKS.values()) / len(ZERO_SHOT_TASKS)
    lines.append(
        f"| **zero-shot mean top-1** | {chance_mean:.3f} | "
        + " | ".join(f"**{_fmt(evals[n].get('zeroshot/mean_top1'))}**" for n in names) + " |"
    )
    n_ret = config.eval.retrieval_samples
    for direction, label in (("image_to_text", "image→text"), ("text_to_image", "text→image")):
        for k in (1, 5, 10):
            key = f"retrieval/{direction}@{k}"
            lines.append(
                f"| retrieval {label} R@{k} ({n_ret} pairs) | {min(1.0, k / n_ret):.3f} | "
                + " | ".join(_fmt(evals[n].get(key)) for n in names) + " |"
            )
    for key, label in (("geometry/gap", "held-out similarity gap pos − neg"),
                       ("geometry/gap_logits", "held-out gap in logits scale·(pos − neg)"),
                       ("geometry/alignment", "alignment E‖x − y‖² (lower: closer pairs)"),
                       ("geometry/uniformity_image", "uniformity of images (lower: more spread)")):
        lines.append(f"| {label} | | " + " | ".join(_fmt(evals[n].get(key)) for n in names) + " |")
    for key, label in (("scale", "learned scale 1/τ"), ("pos_sim", "mean positive similarity"),
                       ("neg_sim", "mean negative similarity"), ("gap_logits", "last batch's logit gap"),
                       ("loss", "final training loss")):
        lines.append(
            f"| {label} | | "
            + " | ".join(_fmt(runs[n]["train"].get(key)) for n in names) + " |"
        )
    lines.append("| wall time (s) | | " + " | ".join(f"{runs[n]['wall']:.0f}" for n in names) + " |")
    return lines


def _smooth(values: list[float], width: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= width:
            acc -= values[i - width]
        out.append(acc / min(i + 1, width))
    return out


def _curves(runs: dict[str, dict], path: Path) -> Path:
    from manifold_align import plot_style

    with plot_style.style():
        fig, axes = plot_style.panels(1, 3, size=(7.6, 2.7), sharex=True)  # stacked: page width
        axes = [row[0] for row in axes]
        for name, run in runs.items():
            train_recs = [r for r in run["records"] if r["kind"] == "train"]
            steps = [r["step"] for r in train_recs]
            axes[0].plot(steps, _smooth([r["loss"] for r in train_recs], 5), label=name)
            axes[1].plot(steps, [r["scale"] for r in train_recs], label=name)
            ev = [r for r in run["records"] if r["kind"] == "eval" and "zeroshot/mean_top1" in r]
            axes[2].plot([r["step"] for r in ev], [r["zeroshot/mean_top1"] for r in ev],
                         marker="o", label=name)
        chance = sum(1 / len(t.classnames) for t in ZERO_SHOT_TASKS.values()) / len(ZERO_SHOT_TASKS)
        plot_style.chance_line(axes[2], chance)
        titles = ("training loss (moving average of 5 logs)", "learned scale 1/τ",
                  "zero-shot mean top-1 (held-out)")
        for ax, title in zip(axes, titles):
            ax.set_title(title)
            ax.legend()
        axes[-1].set_xlabel("step")
        return plot_style.save(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default: runs/demo/<UTC date-time>); must be empty")
    parser.add_argument("--fast", action="store_true", help="a smoke version (seconds, not minutes)")
    parser.add_argument("--sequential", action="store_true",
                        help="train one model after the other on all cores (default: side by "
                             "side, the cores split between them)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override applied to both runs (repeatable)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path("runs/demo") / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    if args.out.exists() and any(args.out.iterdir()):
        print(f"demo: {args.out} is not empty; choose another --out", file=sys.stderr)
        return 2
    overrides = [*(FAST if args.fast else []), *args.overrides]
    for config in (c for _, c in MODELS.values()):
        try:
            load_config(RunConfig, resolve_config(config, "train"), overrides)  # a bad override fails here, naming the key
        except ConfigError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 2
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    runs = _train_all(overrides, args.out, args.sequential)
    total = time.perf_counter() - total

    cfg = runs["sphere"]["config"]
    models = {n: runs[n]["model"] for n in runs}
    lines = [
        "# Demo: CLIP's sphere vs the oblique multi-token model" + (" (fast smoke run)" if args.fast else ""),
        "",
        f"Both models: the `tiny` towers, {cfg.train.steps} steps of batch {cfg.data.batch_size} "
        f"on {cfg.data.synthetic.size} bundled synthetic captioned images with caption noise "
        f"{cfg.data.synthetic.caption_noise} (that fraction of captions belongs to another image), "
        f"seed {cfg.train.seed}. Evaluation on held-out images: zero-shot on "
        f"{cfg.eval.zeroshot_samples} one-object images, retrieval on {cfg.eval.retrieval_samples} "
        "image-caption pairs (clean captions).",
        "",
    ]
    for name, (description, config) in MODELS.items():
        m = models[name]
        params = sum(p.numel() for p in m.parameters())
        lines.append(f"- **{name}**: {description}; embedding manifold `{m.manifold!r}`, "
                     f"similarity range {m.manifold.similarity_range}, temperature "
                     f"{m.temperature!r}, {params:,} parameters; config "
                     f"`{config}` (shipped: `manifold-align configs {config}`).")
    lines += ["", *_table(runs, cfg), ""]
    _curves(runs, args.out / "curves.png")
    lines += [
        "![training curves](curves.png)",
        "",
        f"Total wall time {total:.0f} s ({total / 60:.1f} min) on {platform.machine()} with "
        f"{_cores()} cores, the two runs "
        f"{'one after the other' if args.sequential else 'side by side, the cores split between them'}"
        "; each run's own plots, metrics, checkpoints and log are in its folder. Numbers as "
        "measured, not selected.",
        "",
    ]
    (args.out / "report.md").write_text("\n".join(lines))
    print("\n".join(_table(runs, cfg)))
    print(f"report: {args.out / 'report.md'}  (total {total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
