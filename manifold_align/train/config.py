"""The training run's configuration: a tree of dataclasses read from YAML.

```yaml
model: {name: tiny, overrides: {manifold: oblique, tokens: 4}}
data: {source: synthetic, batch_size: 128, synthetic: {size: 20000, caption_noise: 0.2}}
optim: {lr: 1.0e-3, weight_decay: 0.1}
schedule: {warmup_steps: 100}
train: {steps: 2000, precision: fp32, seed: 0, ckpt_every: 500}
eval: {zeroshot_samples: 1000, retrieval_samples: 1000,
       benchmarks: {imagenet1k: {path: /data/imagenet}}}
```

Load it with ``load_config(RunConfig, path, ["optim.lr=3e-4", ...])`` from
:mod:`manifold_align.config`: unknown keys and bad values raise ``ConfigError`` naming the
dotted key (``train.precision: got 'fp16', expected one of ['fp32', 'bf16']``). The
range checks in ``__post_init__`` raise ``ConfigError`` (a ``ValueError``) the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from manifold_align.config import ConfigError

__all__ = [
    "BenchmarkEntry",
    "CsvSource",
    "DataConfig",
    "EvalConfig",
    "ModelSection",
    "OptimConfig",
    "RunConfig",
    "ScheduleConfig",
    "SyntheticSource",
    "TrainSettings",
    "WebDatasetSource",
]


def _positive(section: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{section}.{name}: expected > 0, got {value}")


def _non_negative(section: str, **values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ConfigError(f"{section}.{name}: expected >= 0, got {value}")


def _betas(key: str, betas: tuple[float, float] | None) -> None:
    if betas is not None and not all(0.0 <= b < 1.0 for b in betas):
        raise ConfigError(f"{key}: expected two numbers in [0, 1), got {list(betas)}")


@dataclass
class ModelSection:
    """Which model: a registered name and field overrides of its ``ModelConfig``.

    ``overrides`` keys are checked against the model registry when the model is built
    (``manifold_align.models.build_model(name, **overrides)``), which names an unknown one.
    """

    name: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("model.name: expected a registered model name, got ''")


@dataclass
class SyntheticSource:
    """The bundled procedurally generated captioned shapes (no download).

    ``appearance`` overrides fields of :class:`manifold_align.data.synthetic.SyntheticConfig`
    (``two_object_fraction``, ``p_shape``, ..., ``texture``, ``jitter``).
    """

    size: int = 20000
    seed: int = 0
    caption_noise: float = 0.2
    appearance: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive("data.synthetic", size=self.size)
        if not 0.0 <= self.caption_noise <= 1.0:
            raise ConfigError(
                f"data.synthetic.caption_noise: expected in [0, 1], got {self.caption_noise}"
            )


@dataclass
class WebDatasetSource:
    """img2dataset-style tar shards (image + ``.txt`` caption), read in a seeded order.

    ``samples_per_epoch`` (over all ranks) fixes every rank's epoch at
    ``samples_per_epoch // (W x data.batch_size)`` batches, so no rank runs out before the
    others (see :mod:`manifold_align.data.sharding`); ``None``: an epoch is one pass over a
    rank's shards (enough on one process; uneven shards can stall a multi-rank run).
    """

    urls: str = ""
    shuffle: int = 1000
    shardshuffle: bool = True
    samples_per_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.samples_per_epoch is not None:
            _positive("data.webdataset", samples_per_epoch=self.samples_per_epoch)


@dataclass
class CsvSource:
    """A CSV/TSV file of image path and caption.

    ``separator``: ``None`` picks tab for ``.tsv`` and comma otherwise; ``image_root``: folder
    that relative image paths are resolved against (default: the table's folder).
    """

    path: str = ""
    image_column: str = "filepath"
    caption_column: str = "caption"
    separator: str | None = None
    image_root: str | None = None


@dataclass
class DataConfig:
    """Where samples come from, how they are tokenized and batched.

    ``tokenizer``: ``"bundled"`` (the vocabulary shipped with the package, trained on the
    synthetic captions), ``"train"`` (learn a ``vocab_size`` byte-level BPE on the training
    captions; CSV source only) or a path to a ``tokenizer.json`` (e.g. CLIP's). The run keeps
    its vocabulary as ``<run>/tokenizer.json``. ``augment`` uses random resized crops (then a
    resumed run matches an uninterrupted one only with ``num_workers = 0``).
    ``batch_size`` is per rank (per GPU): a run on ``W`` ranks trains on global batches of
    ``W x batch_size`` (see docs/scaling.md).
    """

    source: Literal["synthetic", "webdataset", "csv"] = "synthetic"
    synthetic: SyntheticSource = field(default_factory=SyntheticSource)
    webdataset: WebDatasetSource = field(default_factory=WebDatasetSource)
    csv: CsvSource = field(default_factory=CsvSource)
    tokenizer: str = "bundled"
    vocab_size: int = 1024
    batch_size: int = 64
    num_workers: int = 0
    augment: bool = False

    def __post_init__(self) -> None:
        _positive("data", batch_size=self.batch_size, vocab_size=self.vocab_size)
        _non_negative("data", num_workers=self.num_workers)
        if self.source == "webdataset" and not self.webdataset.urls:
            raise ConfigError("data.webdataset.urls: required when data.source is 'webdataset'")
        if self.source == "csv" and not self.csv.path:
            raise ConfigError("data.csv.path: required when data.source is 'csv'")
        if self.tokenizer == "train" and self.source != "csv":
            raise ConfigError(
                f"data.tokenizer: 'train' learns from a CSV's captions; with data.source "
                f"{self.source!r} use 'bundled' or a tokenizer.json path"
            )
        if not self.tokenizer:
            raise ConfigError("data.tokenizer: expected 'bundled', 'train' or a path, got ''")


@dataclass
class OptimConfig:
    """AdamW for Euclidean weights; Riemannian Adam (``riemannian_*``) for manifold parameters."""

    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.2
    riemannian_lr: float | None = None
    riemannian_betas: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _non_negative("optim", lr=self.lr, weight_decay=self.weight_decay)
        _positive("optim", eps=self.eps)
        if self.riemannian_lr is not None:
            _non_negative("optim", riemannian_lr=self.riemannian_lr)
        _betas("optim.betas", self.betas)
        _betas("optim.riemannian_betas", self.riemannian_betas)


@dataclass
class ScheduleConfig:
    """Linear warmup then cosine to ``min_lr`` (see :func:`~manifold_align.train.schedule.cosine_lr`).

    ``total_steps = 0`` means ``train.steps``.
    """

    warmup_steps: int = 0
    total_steps: int = 0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        _non_negative(
            "schedule", warmup_steps=self.warmup_steps, total_steps=self.total_steps,
            min_lr=self.min_lr,
        )


@dataclass
class TrainSettings:
    """The loop: length, accumulation, clipping, precision, seed and cadences.

    ``clip_grad_norm = 0`` disables clipping; ``eval_every = 0`` evaluates only at the end;
    ``ckpt_every = 0`` checkpoints only at the end; ``keep_checkpoints = 0`` keeps all;
    ``debug`` scans every gradient and parameter for NaN/Inf at every step (slower) and
    makes the loss reject non-finite features; ``compile`` runs the model through
    ``torch.compile`` (off by default).
    """

    steps: int = 1000
    grad_accum: int = 1
    clip_grad_norm: float = 1.0
    precision: Literal["fp32", "bf16"] = "fp32"
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    eval_every: int = 0
    ckpt_every: int = 500
    keep_checkpoints: int = 2
    progress: bool = True
    debug: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        _positive("train", steps=self.steps, grad_accum=self.grad_accum, log_every=self.log_every)
        _non_negative(
            "train", clip_grad_norm=self.clip_grad_norm, eval_every=self.eval_every,
            ckpt_every=self.ckpt_every, keep_checkpoints=self.keep_checkpoints,
        )
        if not math.isfinite(self.clip_grad_norm):
            raise ConfigError(f"train.clip_grad_norm: expected a finite number, got {self.clip_grad_norm}")
        if self.device != "auto" and self.device.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"train.device: expected 'auto', 'cpu', 'cuda[:i]' or 'mps', got {self.device!r}")


@dataclass
class BenchmarkEntry:
    """A standard dataset on disk for ``eval.benchmarks`` (see docs/evaluation-standard.md).

    ``path`` is required; the rest override what the benchmark's name implies: a names file,
    a templates file or bundled set, the split, the retrieval image folder, the annotation
    file.
    """

    path: str = ""
    classnames: str | None = None
    templates: str | None = None
    split: str | None = None
    images: str | None = None
    annotations: str | None = None


@dataclass
class EvalConfig:
    """Held-out evaluation sizes (synthetic data), its batch size, and standard benchmarks.

    ``benchmarks`` maps a benchmark name (``imagenet1k``, ``coco``, ``folder/<any>``,
    ``wds/<any>``, ...) to where it is; they are evaluated with the held-out set every
    ``train.eval_every`` steps and at the end, and checked when the run starts.
    ``num_workers``: image-reading processes for the benchmarks.
    """

    zeroshot_samples: int = 1000
    retrieval_samples: int = 1000
    batch_size: int = 256
    num_workers: int = 0
    benchmarks: dict[str, BenchmarkEntry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _non_negative(
            "eval", zeroshot_samples=self.zeroshot_samples,
            retrieval_samples=self.retrieval_samples, num_workers=self.num_workers,
        )
        _positive("eval", batch_size=self.batch_size)
        for name, entry in self.benchmarks.items():
            if not entry.path:
                raise ConfigError(f"eval.benchmarks.{name}.path: required (where the dataset is)")


@dataclass
class RunConfig:
    """A whole training run; every run writes it resolved to ``<run>/config.yaml``."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.schedule.min_lr > self.optim.lr:
            raise ConfigError(
                f"schedule.min_lr: expected <= optim.lr = {self.optim.lr}, got {self.schedule.min_lr}"
            )
        if self.schedule.total_steps and self.schedule.total_steps < self.schedule.warmup_steps:
            raise ConfigError(
                f"schedule.total_steps: expected >= schedule.warmup_steps = "
                f"{self.schedule.warmup_steps}, got {self.schedule.total_steps}"
            )
