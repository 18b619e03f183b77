"""``manifold-align simulate``: run a sweep of toy equilibrium simulations and report it.

``manifold-align simulate --config FILE [--set key=value ...] --out DIR`` writes to ``DIR``:
``config.yaml`` (the resolved settings), ``results.json`` (one record per run),
``trajectories.npz``, PNG plots and ``summary.md``, holding the folder's lock meanwhile; a
folder of another kind (a training run, other files) is refused unless ``--overwrite``.
``--config`` is a YAML file or the name of a shipped sweep (``manifold-align configs --kind
simulate`` lists them: ``quick``, ``standard``, ...); see
`manifold_align.simulate.config.SweepConfig` for every key.
Exit status 0, or 2 for bad input (a config key, a file, an unusable or busy ``--out``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from manifold_align.cli.options import add_config_option, add_set_option, check_out_folder
from manifold_align.config import dump_config, load_config
from manifold_align.configs import resolve_config
from manifold_align.run_folder import open_run_folder
from manifold_align.simulate.config import SweepConfig

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config``, ``--set`` (repeatable), ``--out`` and ``--quiet`` to ``parser``."""
    add_config_option(
        parser, "sweep YAML, or a shipped sweep's name (manifold-align configs --kind simulate)"
    )
    add_set_option(
        parser, "override a setting, e.g. --set steps=300 --set 'noise=[0.2, 0.5]' (repeatable)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out that is not a simulation's output")


def run(args: argparse.Namespace) -> int:
    """Load the config, run the sweep, write the report; returns 0.

    Raises:
        ConfigError, UsageError, RunFolderError, OSError: bad input, answered by
            `manifold_align.cli.errors` (an unusable ``--out``: in use, someone else's
            files, a link out of it).
    """
    path = None if args.config is None else resolve_config(args.config, "simulate")
    cfg = load_config(SweepConfig, path, args.overrides)
    out: Path = args.out
    check_out_folder(out)
    # Heavy imports only once the config is known to be good.
    from manifold_align.simulate.report import write_report
    from manifold_align.simulate.sweep import run_sweep

    with open_run_folder(out, "simulate", overwrite=args.overwrite) as folder:
        folder.claim()
        dump_config(cfg, out / "config.yaml")
        progress = None if args.quiet else (lambda line: print(line, file=sys.stderr))
        result = run_sweep(cfg, progress=progress)
        write_report(result, out, name=cfg.name)
    n = len(result.records)
    print(f"{n} runs x {cfg.steps} steps in {result.seconds:.1f} s; report in {out}/summary.md")
    return 0
