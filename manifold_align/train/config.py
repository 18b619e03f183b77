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
[manifold_align.config][manifold_align.config]: unknown keys and bad values raise ``ConfigError`` naming the
dotted key (``train.precision: got 'fp16', expected one of ['fp32', 'bf16']``). The
range checks in ``__post_init__`` raise ``ConfigError`` (a ``ValueError``) the same way.
The two open mappings, ``model.overrides`` (fields of
[ModelConfig][manifold_align.models.registry.ModelConfig]) and ``data.synthetic.appearance``
(fields of [SyntheticConfig][manifold_align.data.synthetic.SyntheticConfig]), are checked at load time
too: each key, its type and the resulting model or appearance
(``model.overrides.grad_checkpointing: got 'maybe', expected true or false``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from manifold_align.config import ConfigError, check_fields, check_seed
from manifold_align.data.synthetic import SyntheticConfig
from manifold_align.models.registry import ModelConfig, model_config

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

    ``overrides`` are checked at load time: each key must be a ``ModelConfig`` field and each
    value of its type, and the named model with them must be valid (naming
    ``model.overrides.<field>``). ``vocab_size`` and ``eot_id`` default to the tokenizer's
    when the model is built.

    ``init_from``: start a fresh run from trained weights instead of a random init: a run
    folder or checkpoint of ours (its tokenizer replaces ``data.tokenizer``) or an
    OpenCLIP / Hugging Face checkpoint file or folder (``manifold_align.pretrained``). A sphere
    source and an oblique ``name`` are converted by
    [manifold_align.models.convert.sphere_to_oblique][manifold_align.models.convert.sphere_to_oblique]. Ignored on resume.
    """

    name: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("model.name: expected a registered model name, got ''")
        try:
            base = model_config(self.name)
        except ValueError as exc:
            raise ConfigError(f"model.{exc}") from None
        self.overrides = check_fields(ModelConfig, self.overrides, "model.overrides")
        # eot_id alone is checked against the tokenizer's vocabulary when the model is built
        fields = {k: v for k, v in self.overrides.items()
                  if k != "eot_id" or "vocab_size" in self.overrides}
        try:
            dataclasses.replace(base, **fields)
        except ValueError as exc:  # the registry's message starts with the field's name
            raise ConfigError(f"model.overrides.{exc}") from None
        if self.init_from == "":
            raise ConfigError("model.init_from: expected a path to a run, checkpoint or "
                              "pretrained file, got ''")


@dataclass
class SyntheticSource:
    """The bundled procedurally generated captioned shapes (no download).

    ``appearance`` overrides fields of [manifold_align.data.synthetic.SyntheticConfig][manifold_align.data.synthetic.SyntheticConfig]
    (``two_object_fraction``, ``p_shape``, ..., ``texture``, ``jitter``).
    """

    size: int = 20000
    seed: int = 0
    caption_noise: float = 0.2
    appearance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive("data.synthetic", size=self.size)
        check_seed("data.synthetic.seed", self.seed)
        self.appearance = check_fields(SyntheticConfig, self.appearance, "data.synthetic.appearance")
        try:
            SyntheticConfig(**self.appearance)
        except ValueError as exc:  # SyntheticConfig's message starts with the field's name
            raise ConfigError(f"data.synthetic.appearance.{exc}") from None
        if not 0.0 <= self.caption_noise <= 1.0:
            raise ConfigError(
                f"data.synthetic.caption_noise: expected in [0, 1], got {self.caption_noise}"
            )


@dataclass
class WebDatasetSource:
    """img2dataset-style tar shards (image + ``.txt`` caption), read in a seeded order.

    ``samples_per_epoch`` (over all ranks) fixes every rank's epoch at
    ``samples_per_epoch // (W x data.batch_size)`` batches, so no rank runs out before the
    others (see [manifold_align.data.sharding][manifold_align.data.sharding]); ``None``: an epoch is one pass over a
    rank's shards (enough on one process; uneven shards can stall a multi-rank run).
    ``allow_pipe``: accept ``pipe:`` URLs, which run their text as a shell command; off, so
    a configuration string runs no command unless that was asked for explicitly.
    """

    urls: str = ""
    shuffle: int = 1000
    shardshuffle: bool = True
    samples_per_epoch: int | None = None
    allow_pipe: bool = False

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
    synthetic captions), ``"clip"`` (OpenAI CLIP's BPE, also shipped: 49,408 ids, equal to
    OpenCLIP's tokenizer), ``"train"`` (learn a ``vocab_size`` byte-level BPE on the training
    captions; CSV source only), ``"wordpiece:<path to vocab.txt>"`` (BERT's WordPiece over
    that vocabulary, the paper's released text tower's ids; the ``-release`` configs) or a
    path to a ``tokenizer.json`` (e.g. CLIP's). The run keeps its vocabulary as
    ``<run>/tokenizer.json``. ``augment`` uses random resized crops (then a
    resumed run matches an uninterrupted one only with ``num_workers = 0``).
    ``batch_size`` is per rank (per GPU): a run on ``W`` ranks trains on global batches of
    ``W x batch_size`` (see docs/scaling.md), at least 2 (a contrastive batch needs a
    negative). ``max_consecutive_skips``: training stops with a message counting the skipped
    samples by reason once more than this many were skipped with no batch of two readable
    samples between (it also stops after an epoch's worth of such batches).
    ``max_image_pixels``: images whose header declares more pixels are skipped undecoded
    (``too_many_pixels``; 64 MP by default, at most 192 MB decoded, see
    ``manifold_align.data.transforms.MAX_IMAGE_PIXELS``).
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
    max_consecutive_skips: int = 100_000  # = train.batches.MAX_CONSECUTIVE_SKIPS
    max_image_pixels: int = 64_000_000  # = data.transforms.MAX_IMAGE_PIXELS

    def __post_init__(self) -> None:
        _positive(
            "data", batch_size=self.batch_size, vocab_size=self.vocab_size,
            max_consecutive_skips=self.max_consecutive_skips,
            max_image_pixels=self.max_image_pixels,
        )
        if self.batch_size < 2:
            raise ConfigError(
                f"data.batch_size: expected >= 2 (a contrastive batch needs a negative; a "
                f"batch of one is never trained on), got {self.batch_size}"
            )
        _non_negative("data", num_workers=self.num_workers)
        if self.source == "webdataset" and not self.webdataset.urls:
            raise ConfigError("data.webdataset.urls: required when data.source is 'webdataset'")
        if self.source == "csv" and not self.csv.path:
            raise ConfigError("data.csv.path: required when data.source is 'csv'")
        if self.tokenizer == "train" and self.source != "csv":
            raise ConfigError(
                f"data.tokenizer: 'train' learns from a CSV's captions; with data.source "
                f"{self.source!r} use 'bundled', 'clip' or a tokenizer.json path"
            )
        if not self.tokenizer or self.tokenizer == "wordpiece:":
            raise ConfigError(
                f"data.tokenizer: expected 'bundled', 'clip', 'train', "
                f"'wordpiece:<vocab.txt>' or a path, got {self.tokenizer!r}"
            )


@dataclass
class OptimConfig:
    """AdamW for Euclidean weights; Riemannian Adam (``riemannian_*``) for manifold parameters.

    ``lr_scale``: ``{glob: factor}`` over parameter names (``fnmatch``, e.g.
    ``"vision.transformer.*": 0.1``); a parameter's rate is ``factor x`` its base rate for the
    first glob that matches it (``0`` freezes it), ``1`` where none does. A glob that matches
    no parameter is an error when the optimizers are built.
    """

    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.2
    riemannian_lr: float | None = None
    riemannian_betas: tuple[float, float] | None = None
    lr_scale: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for pattern, factor in self.lr_scale.items():
            if not (isinstance(factor, (int, float)) and not isinstance(factor, bool)
                    and math.isfinite(factor) and factor >= 0):
                raise ConfigError(f"optim.lr_scale.{pattern}: expected a number >= 0, got {factor!r}")
        _non_negative("optim", lr=self.lr, weight_decay=self.weight_decay)
        _positive("optim", eps=self.eps)
        if self.riemannian_lr is not None:
            _non_negative("optim", riemannian_lr=self.riemannian_lr)
        _betas("optim.betas", self.betas)
        _betas("optim.riemannian_betas", self.riemannian_betas)


@dataclass
class ScheduleConfig:
    """Linear warmup then cosine to ``min_lr`` (see [cosine_lr][manifold_align.train.schedule.cosine_lr]).

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


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass
class TrainSettings:
    """The loop: length, accumulation, clipping, precision, seed and cadences.

    ``clip_grad_norm = 0`` disables clipping; ``eval_every = 0`` evaluates only at the end;
    ``ckpt_every = 0`` checkpoints only at the end; ``keep_checkpoints = 0`` keeps all;
    ``debug`` scans every gradient and parameter for NaN/Inf at every step (slower) and
    makes the loss reject non-finite features; ``compile`` runs the model through
    ``torch.compile`` (off by default). ``seed`` is in ``[0, 2**32 - 1]`` (numpy's range).
    ``progress``: a tqdm bar when stderr is a terminal, else (a pipe, a file, SLURM) a plain
    line ``step, steps/s, loss, ETA`` every ``progress_interval_s`` seconds (> 0).
    ``device``: ``auto``, ``cpu``, ``cuda``, ``cuda:<index>`` or ``mps``.
    ``collective_timeout_s``: how long a rank waits at a collective (all-reduce, barrier)
    for the others before the job fails, instead of torch's 30 minutes (docs/scaling.md).
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
    progress_interval_s: float = 30.0
    debug: bool = False
    compile: bool = False
    collective_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        _positive("train", steps=self.steps, grad_accum=self.grad_accum, log_every=self.log_every)
        _non_negative(
            "train", clip_grad_norm=self.clip_grad_norm, eval_every=self.eval_every,
            ckpt_every=self.ckpt_every, keep_checkpoints=self.keep_checkpoints,
        )
        if not (math.isfinite(self.progress_interval_s) and self.progress_interval_s > 0):
            raise ConfigError(
                "train.progress_interval_s: expected a positive number of seconds, got "
                f"{self.progress_interval_s}"
            )
        if not math.isfinite(self.clip_grad_norm):
            raise ConfigError(f"train.clip_grad_norm: expected a finite number, got {self.clip_grad_norm}")
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(
                f"train.device: expected 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps', "
                f"got {self.device!r}"
            )
        check_seed("train.seed", self.seed)
        _positive("train", collective_timeout_s=self.collective_timeout_s)
        if not math.isfinite(self.collective_timeout_s):
            raise ConfigError(
                f"train.collective_timeout_s: expected a finite number of seconds, "
                f"got {self.collective_timeout_s}"
            )


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
