"""The contrastive trainer: config, schedule, parameter groups, checkpoints, metrics, the loop.

* [RunConfig][manifold_align.train.config.RunConfig]: the run's dataclass tree, loaded with
  ``manifold_align.config.load_config(RunConfig, path, overrides)``.
* [train][manifold_align.train.run.train]: build everything a config names, train, write the
  run folder; [load_trained][manifold_align.train.run.load_trained] rebuilds a trained model.
* [fit][manifold_align.train.trainer.fit]: the loop itself, for your own model and data.
* [build_optimizers][manifold_align.train.optimizers.build_optimizers]: AdamW + Riemannian Adam groups.
* [cosine_lr][manifold_align.train.schedule.cosine_lr]: warmup then cosine, stateless.
* [save_checkpoint][manifold_align.train.checkpoint.save_checkpoint] /
  [load_checkpoint][manifold_align.train.checkpoint.load_checkpoint]: atomic, pickle-free, resumable.
* ``manifold-align train``: `manifold_align.cli.train`.
"""

from manifold_align.train.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from manifold_align.train.config import RunConfig
from manifold_align.train.guard import NonFiniteError
from manifold_align.train.metrics import MetricsWriter, plot_metrics, read_metrics
from manifold_align.train.optimizers import build_optimizers, split_parameters
from manifold_align.train.run import RunResult, load_trained, train
from manifold_align.train.schedule import cosine_lr, lr_factor
from manifold_align.train.trainer import fit

__all__ = [
    "CheckpointError",
    "MetricsWriter",
    "NonFiniteError",
    "RunConfig",
    "RunResult",
    "build_optimizers",
    "cosine_lr",
    "find_checkpoint",
    "fit",
    "load_checkpoint",
    "load_trained",
    "lr_factor",
    "plot_metrics",
    "read_metrics",
    "save_checkpoint",
    "split_parameters",
    "train",
]
