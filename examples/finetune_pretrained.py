"""From a pretrained sphere model to the oblique multi-token model: convert, then fine-tune.

Takes a trained sphere run (CLIP's layout: one class token, EOT pooling, ``Sphere(D)``),
converts it to the ``-oblique`` model of the same towers with
:func:`manifold_align.models.convert.sphere_to_oblique` through the config key
``model.init_from``, fine-tunes it with the shipped config ``finetune-tiny`` (pretrained blocks
at a tenth of the rate of the new tokens and heads) and evaluates three models on the same
held-out data: the sphere source, the converted model at step 0 and the fine-tuned one.

```
<out>/report.md        the table (zero-shot mean top-1, retrieval R@1/5/10 both ways)
<out>/results.json     the same numbers
<out>/finetune/        the fine-tuning run (its checkpoints/step_00000000 is the conversion)
```

Usage (from the repository root, inside the virtual environment):

```bash
manifold-align train --config tiny-sphere --out runs/tiny-sphere
python examples/finetune_pretrained.py --source runs/tiny-sphere --out runs/tiny-finetune
python examples/finetune_pretrained.py --fast --out runs/finetune-smoke   # seconds
```

``--fast`` first trains a very small sphere model for a few steps itself, so it needs no
source; its numbers only show that the path runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from manifold_align.config import ConfigError, load_config
from manifold_align.configs import resolve_config
from manifold_align.evaluate.suite import evaluate_model, summary_metrics, synthetic_heldout
from manifold_align.train import RunConfig, load_trained, train

CONFIG = resolve_config("finetune-tiny", "train")
SMALL = ("model.overrides={vision_width: 32, vision_layers: 1, vision_heads: 2, patch_size: 8,"
         " image_size: 16, text_width: 32, text_layers: 1, text_heads: 2}")
FAST = [
    SMALL,
    "train.steps=3",
    "schedule.warmup_steps=1",
    "data.batch_size=16",
    "data.synthetic.size=64",
    "train.eval_every=0",
    "train.ckpt_every=0",
    "train.log_every=1",
    "train.progress=false",
    "eval.zeroshot_samples=0",
    "eval.retrieval_samples=0",
]
SPHERE_CONFIG = resolve_config("tiny-sphere", "train")
FAST_SPHERE = [*FAST, "model.overrides.token_dim=32"]
FAST_FINETUNE = [*FAST, "model.overrides.tokens=4", "model.overrides.token_dim=8"]
COLUMNS = [
    ("zero-shot mean top-1", "zeroshot/mean_top1"),
    *[(f"{name} R@{k}", f"retrieval/{key}@{k}")
      for name, key in (("image->text", "image_to_text"), ("text->image", "text_to_image"))
      for k in (1, 5, 10)],
]


def evaluate(path: Path, samples: int) -> dict[str, float]:
    """Held-out zero-shot and retrieval of the checkpoint or run at ``path``."""
    model, tokenizer, config = load_trained(path)
    heldout = synthetic_heldout(zeroshot_samples=samples, retrieval_samples=samples,
                                seed=config.data.synthetic.seed, image_size=model.config.image_size)
    with torch.no_grad():
        return summary_metrics(evaluate_model(model, tokenizer, heldout, batch_size=200))


def report(rows: dict[str, dict[str, float]], note: str) -> str:
    """The markdown table of ``rows`` (model -> metrics), with the step-0 retention."""
    lines = [
        "# From a pretrained sphere model to the oblique model" + note, "",
        "| model | " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for label, metrics in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{metrics[key]:.3f}" for _, key in COLUMNS) + " |")
    base = rows["sphere (source)"]["zeroshot/mean_top1"]
    for label, metrics in list(rows.items())[1:]:
        lines.append("")
        lines.append(f"{label}: {metrics['zeroshot/mean_top1'] / base:.1%} of the source's "
                     f"zero-shot mean top-1.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=None,
                        help="a trained sphere run folder or checkpoint (not needed with --fast)")
    parser.add_argument("--out", type=Path, required=True, help="the output folder")
    parser.add_argument("--fast", action="store_true", help="a smoke version (seconds, not minutes)")
    parser.add_argument("--samples", type=int, default=600,
                        help="held-out images for zero-shot and for retrieval")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the fine-tuning config (repeatable)")
    args = parser.parse_args(argv)
    if args.source is None and not args.fast:
        parser.error("--source is required unless --fast")
    if (args.out / "finetune").exists():
        print(f"error: {args.out / 'finetune'} exists; choose another --out", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    samples = 40 if args.fast else args.samples
    try:
        source = args.source
        if args.fast:
            source = args.out / "sphere"
            train(load_config(RunConfig, SPHERE_CONFIG, FAST_SPHERE), source)
        sets = [*(FAST_FINETUNE if args.fast else []), f"model.init_from={source}", *args.overrides]
        config = load_config(RunConfig, CONFIG, sets)
        run = train(config, args.out / "finetune")
    except (ConfigError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = {
        "sphere (source)": evaluate(source, samples),
        "oblique, step 0 (converted)": evaluate(
            args.out / "finetune" / "checkpoints" / "step_00000000", samples),
        f"oblique, step {run.step} (fine-tuned)": evaluate(args.out / "finetune", samples),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    text = report(rows, " (fast smoke run)" if args.fast else "")
    (args.out / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
