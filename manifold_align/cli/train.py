"""``manifold-align train``: train a two-tower model from a YAML config.

```bash
manifold-align train --config tiny-oblique --set train.steps=500 --out runs/ob
manifold-align train --out runs/ob --resume latest      # after a kill: continue exactly
```

``--config`` is a YAML file or the name of a shipped run (``manifold-align configs --kind
train`` lists them). Exit status: 0 on success; 2 for a bad config, a bad override, an unusable run folder or
checkpoint, or a write that fails (a full disk: the last complete checkpoint stays as it was),
with one line naming the key, the file or the mismatch; 3 when training stops on a
non-finite loss, gradient or parameter (the message names the step and the quantity).
Under ``torchrun`` every rank runs this command and rank 0 alone prints the result:

```bash
torchrun --nproc_per_node=2 -m manifold_align.cli train --config tiny-oblique \
    --set train.device=cpu --set train.steps=20 --out runs/ddp
```
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from manifold_align.cli.errors import UsageError, fail
from manifold_align.cli.options import add_config_option, add_set_option, check_out_folder

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``train``'s options to ``parser``."""
    add_config_option(
        parser, "YAML run config, or a shipped config's name (manifold-align configs); "
        "default when resuming: <out>/config.yaml",
    )
    add_set_option(
        parser, "override a config value by dotted key, e.g. --set optim.lr=3e-4 (repeatable)"
    )
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<config name>)")
    parser.add_argument(
        "--resume", metavar="latest|PATH",
        help="continue from this run's latest checkpoint, or from a checkpoint/run folder",
    )
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress (a bar on a terminal, else a line every "
                        "train.progress_interval_s seconds)")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="write into a non-empty --out that is not this run (its other files are kept; "
        "an earlier run's checkpoints move to checkpoints/superseded-<time>/)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``manifold-align train``; returns the exit status (0, or 3 on divergence).

    Raises:
        ConfigError, UsageError, CheckpointError, RunFolderError, OSError: bad input or a
            failed write, answered by `manifold_align.cli.errors` (status 2, one line).
    """
    from manifold_align.config import load_config
    from manifold_align.configs import resolve_config
    from manifold_align.train.config import RunConfig
    from manifold_align.train.guard import NonFiniteError
    from manifold_align.train.run import train

    config_path = None if args.config is None else resolve_config(args.config, "train")
    out = args.out
    if out is None:
        if config_path is None:
            raise UsageError("give --config FILE|NAME (and --out DIR to choose the run folder)")
        out = Path("runs") / config_path.stem
    if config_path is None:
        if args.resume is None:
            raise UsageError("give --config FILE|NAME, or --resume with an existing run folder")
        config_path = out / "config.yaml"
    overrides = list(args.overrides)
    if args.no_progress:
        overrides.append("train.progress=false")
    config = load_config(RunConfig, config_path, overrides)
    check_out_folder(out)
    try:
        result = train(config, out, resume=args.resume, overwrite=args.overwrite)
    except NonFiniteError as exc:
        return fail("train", str(exc), status=3, label="stopped")
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:  # a write without a name: say where
            exc.filename = str(out)
        raise
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports for the run
        return 0
    print(f"trained {result.step} steps; run folder {result.run_dir} (summary.md, plots/)")
    if result.eval:
        mean = result.eval.get("zeroshot/mean_top1")
        r1 = result.eval.get("retrieval/image_to_text@1")
        if mean is not None:
            print(f"zero-shot mean top-1 {mean:.3f}")
        if r1 is not None:
            print(f"retrieval image->text R@1 {r1:.3f}")
    return 0

