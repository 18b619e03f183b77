"""``manifold-align simulate``: run a sweep of toy equilibrium simulations and report it.

``manifold-align simulate --config FILE [--set key=value ...] --out DIR`` writes to ``DIR``:
``config.yaml`` (the resolved settings), ``results.json`` (one record per run),
``trajectories.npz``, PNG plots and ``summary.md``, holding the folder's lock meanwhile; a
folder of another kind (a training run, other files) is refused unless ``--overwrite``. See
``configs/simulate/`` for the standard sweeps and
:class:`manifold_align.simulate.config.SweepConfig` for every key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from manifold_align.config import ConfigError, dump_config, load_config
from manifold_align.run_folder import RunFolderError, open_run_folder
from manifold_align.simulate.config import SweepConfig

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config``, ``--set`` (repeatable), ``--out`` and ``--quiet`` to ``parser``."""
    parser.add_argument("--config", type=Path, default=None, help="sweep YAML (configs/simulate/*.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set steps=300 --set 'noise=[0.2, 0.5]' (repeatable)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out that is not a simulation's output")


def run(args: argparse.Namespace) -> int:
    """Load the config, run the sweep, write the report. Returns 0, or 2 on a config error or
    an unusable ``--out`` (in use, someone else's files, a link out of it)."""
    try:
        cfg = load_config(SweepConfig, args.config, args.overrides)
    except ConfigError as exc:
        print(f"manifold-align simulate: config error: {exc}", file=sys.stderr)
        return 2
    # Heavy imports only once the config is known to be good.
    from manifold_align.simulate.report import write_report
    from manifold_align.simulate.sweep import run_sweep

    out: Path = args.out
    try:
        with open_run_folder(out, "simulate", overwrite=args.overwrite) as folder:
            folder.claim()
            dump_config(cfg, out / "config.yaml")
            progress = None if args.quiet else (lambda line: print(line, file=sys.stderr))
            result = run_sweep(cfg, progress=progress)
            write_report(result, out, name=cfg.name)
    except RunFolderError as exc:
        print(f"manifold-align simulate: error: {exc}", file=sys.stderr)
        return 2
    n = len(result.records)
    print(f"{n} runs x {cfg.steps} steps in {result.seconds:.1f} s; report in {out}/summary.md")
    return 0
