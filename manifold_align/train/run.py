"""One training run from a [RunConfig][manifold_align.train.config.RunConfig]: build, train, report.

[train][manifold_align.train.run.train] assembles the pieces the config names (tokenizer, model, optimizers, data,
evaluator), runs [fit][manifold_align.train.trainer.fit], and leaves a run folder:

```
<run>/config.yaml        the resolved config
<run>/model.yaml         the resolved model config (with the tokenizer's vocabulary)
<run>/tokenizer.json     the vocabulary (also inside every checkpoint)
<run>/metrics.jsonl      one record per logged step and per evaluation
<run>/checkpoints/       step_XXXXXXXX/ directories and the ``latest`` pointer
<run>/plots/*.png        loss, scale and evaluation curves
<run>/summary.md         the last metrics, for people
```

[load_trained][manifold_align.train.run.load_trained] rebuilds a trained model (and its tokenizer) from a run folder or a
checkpoint directory alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from manifold_align.config import ConfigError, from_dict, to_dict
from manifold_align.data.collate import Collate
from manifold_align.data.synthetic import SyntheticCaptions, SyntheticConfig
from manifold_align.data.tokenizer import (
    Tokenizer,
    clip_tokenizer,
    default_tokenizer,
    wordpiece_tokenizer,
)
from manifold_align.data.transforms import ImageTransform
from manifold_align.files import apply_umask, write_atomic
from manifold_align.models.registry import ModelConfig, build_model, model_config
from manifold_align.models.two_tower import TwoTower
from manifold_align.run_folder import RunFolder, RunFolderError, open_run_folder
from manifold_align.train.batches import MapBatches, StreamBatches
from manifold_align.train.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    read_state,
    verify_checkpoint,
)
from manifold_align.train.config import RunConfig
from manifold_align.train.distributed import close_distributed, init_distributed, world
from manifold_align.train.init_from import (
    check_tokenizer,
    initialize_from,
    load_source,
    save_initial_checkpoint,
)
from manifold_align.train.metrics import plot_metrics
from manifold_align.train.optimizers import build_optimizers
from manifold_align.train.trainer import Evaluate, fit

__all__ = [
    "RunResult",
    "build_batches",
    "build_evaluator",
    "build_run_model",
    "load_trained",
    "resolve_device",
    "seed_everything",
    "train",
]

TOKENIZER_FILE = "tokenizer.json"
WORDPIECE_PREFIX = "wordpiece:"
"""``data.tokenizer: wordpiece:<vocab.txt>`` selects BERT's WordPiece over that vocabulary."""


@dataclass
class RunResult:
    """What [train][manifold_align.train.run.train] returns.

    Attributes:
        run_dir: the run folder.
        step: optimizer steps done.
        train: the last training record (loss, scale, ...), or ``None``.
        eval: the last evaluation record, or ``None``.
        model: the trained model (eval mode).
        tokenizer: its tokenizer.
        plots: the PNG files written.
    """

    run_dir: Path
    step: int
    train: dict[str, Any] | None
    eval: dict[str, Any] | None
    model: TwoTower
    tokenizer: Tokenizer
    plots: list[Path]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; anything else as ``torch.device``.

    Raises:
        ConfigError: ``train.device`` names a device this machine lacks (CUDA or MPS
            unavailable, or a CUDA index past the last GPU).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} asked for, but CUDA is not available")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ConfigError(f"train.device: {name!r} asked for, but this machine has {count} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device: {name!r} asked for, but MPS is not available")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the legacy global generator is the one to seed
    torch.manual_seed(seed)


def _synthetic_appearance(config: RunConfig) -> SyntheticConfig:
    try:
        return SyntheticConfig(**config.data.synthetic.appearance)
    except TypeError as exc:
        valid = ", ".join(f.name for f in dataclasses.fields(SyntheticConfig))
        raise ConfigError(f"data.synthetic.appearance: {exc}; valid keys here: {valid}") from None
    except ValueError as exc:
        raise ConfigError(f"data.synthetic.appearance.{exc}") from None


def _load_tokenizer(config: RunConfig, context_length: int) -> Tokenizer:
    """The tokenizer a fresh run starts with (see ``DataConfig.tokenizer``)."""
    spec = config.data.tokenizer
    if spec == "bundled":
        return default_tokenizer(context_length)
    if spec == "clip":
        return clip_tokenizer(context_length)
    if spec == "train":
        from manifold_align.data.tabular import read_captions

        try:
            captions = list(read_captions(config.data.csv.path,
                                          caption_column=config.data.csv.caption_column,
                                          separator=config.data.csv.separator))
            return Tokenizer.train(captions, config.data.vocab_size, context_length=context_length)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"data: {exc}") from None
    if spec.startswith(WORDPIECE_PREFIX):
        try:
            return wordpiece_tokenizer(spec[len(WORDPIECE_PREFIX):], context_length)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"data.tokenizer: {exc}") from None
    try:
        return Tokenizer.load(spec, context_length)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"data.tokenizer: {exc}") from None


def build_run_model(config: RunConfig, tokenizer: Tokenizer) -> TwoTower:
    """The model ``config.model`` names, sized to ``tokenizer``'s vocabulary and end token.

    Raises:
        ConfigError: unknown model name or override key (named as ``model.overrides.<key>``),
            or an invalid resulting model config.
    """
    overrides = dict(config.model.overrides)
    valid = {f.name for f in dataclasses.fields(ModelConfig)}
    for key in overrides:
        if key not in valid:
            raise ConfigError(
                f"unknown key model.overrides.{key}; valid keys here: {', '.join(sorted(valid))}"
            )
    vocab = overrides.setdefault("vocab_size", tokenizer.vocab_size)
    if vocab < tokenizer.vocab_size:
        raise ConfigError(
            f"model.overrides.vocab_size: {vocab} is smaller than the tokenizer's "
            f"vocabulary of {tokenizer.vocab_size}"
        )
    overrides.setdefault("eot_id", tokenizer.eot_id)
    try:
        return build_model(config.model.name, **overrides)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model: {exc}") from None


def _context_length(config: RunConfig) -> int:
    try:
        base = model_config(config.model.name)
    except ValueError as exc:
        raise ConfigError(f"model.{exc}") from None
    return int(config.model.overrides.get("context_length", base.context_length))


def build_batches(config: RunConfig, tokenizer: Tokenizer, image_size: int) -> Any:
    """This rank's training batch source for ``config.data`` (``MapBatches``/``StreamBatches``).

    On ``W`` ranks a map-style source yields this rank's ``data.batch_size`` samples of each
    global batch of ``W x data.batch_size`` (the same global batches as one process with that
    batch); webdataset readers split the shards by rank.
    """
    data = config.data
    seed = config.train.seed
    rank, world_size = world()
    global_batch = data.batch_size * world_size
    transform = ImageTransform(image_size, train=data.augment, seed=seed if data.augment else None)
    collate = Collate(tokenizer, transform)
    guard = {"max_consecutive_skips": data.max_consecutive_skips}
    if data.source == "synthetic":
        syn = data.synthetic
        dataset = SyntheticCaptions(
            "train", syn.size, syn.seed, image_size, syn.caption_noise, _synthetic_appearance(config)
        )
        if global_batch > syn.size:
            raise ConfigError(
                f"data.batch_size: {data.batch_size} x {world_size} rank(s) exceeds "
                f"data.synthetic.size {syn.size}"
            )
        return MapBatches(dataset, global_batch, seed, collate, data.num_workers, rank, world_size)
    if data.source == "csv":
        from manifold_align.data.tabular import CaptionTable

        csv = data.csv
        try:
            dataset = CaptionTable(csv.path, image_column=csv.image_column,
                                   caption_column=csv.caption_column, separator=csv.separator,
                                   image_root=csv.image_root,
                                   max_image_pixels=data.max_image_pixels)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"data.csv: {exc}") from None
        if global_batch > len(dataset):
            raise ConfigError(
                f"data.batch_size: {data.batch_size} x {world_size} rank(s) exceeds the "
                f"{len(dataset)} rows of {csv.path}"
            )
        return MapBatches(dataset, global_batch, seed, collate, data.num_workers, rank, world_size,
                          source=f"data.csv.path {csv.path!r}", **guard)
    from manifold_align.data.webdataset import WebDatasetReader

    wds = data.webdataset
    epoch = {} if wds.samples_per_epoch is None else {
        "samples_per_epoch": wds.samples_per_epoch, "batch_size": data.batch_size}
    try:
        reader = WebDatasetReader(wds.urls, shuffle=wds.shuffle, seed=seed,
                                  shardshuffle=wds.shardshuffle, rank=rank, world_size=world_size,
                                  allow_pipe=wds.allow_pipe,
                                  max_image_pixels=data.max_image_pixels, **epoch)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"data.webdataset: {exc}") from None
    return StreamBatches(reader, data.batch_size, collate, data.num_workers,
                         source=f"data.webdataset.urls {wds.urls!r}", **guard)


def build_evaluator(config: RunConfig, tokenizer: Tokenizer, image_size: int) -> Evaluate | None:
    """Periodic evaluation: the synthetic held-out set (synthetic source, ``eval`` sizes > 0)
    and the standard datasets of ``eval.benchmarks``; ``None`` when there is neither.

    Raises:
        ConfigError: a benchmark that cannot be opened (named as ``eval.benchmarks``).
    """
    from manifold_align.evaluate.suite import SyntheticEvaluator
    from manifold_align.train.evaluation import BenchmarkEvaluator, benchmark_specs, combine

    ev = config.eval
    parts: list[Evaluate] = []
    if config.data.source == "synthetic" and (ev.zeroshot_samples or ev.retrieval_samples):
        parts.append(SyntheticEvaluator(
            tokenizer, image_size, seed=config.data.synthetic.seed,
            zeroshot_samples=ev.zeroshot_samples, retrieval_samples=ev.retrieval_samples,
            batch_size=ev.batch_size, appearance=_synthetic_appearance(config),
            precision=config.train.precision,
        ))
    if ev.benchmarks:
        try:
            parts.append(BenchmarkEvaluator(benchmark_specs(ev.benchmarks), tokenizer, batch_size=ev.batch_size,
                                            precision=config.train.precision, num_workers=ev.num_workers))
        except ValueError as exc:
            raise ConfigError(f"eval.benchmarks: {exc}") from None
    return combine(parts)


def train(
    config: RunConfig,
    run_dir: str | Path,
    resume: str | Path | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Train the run ``config`` describes into ``run_dir``; see the module docstring.

    Rank 0 holds ``run_dir``'s lock for the whole run (see
    [open_run_folder][manifold_align.run_folder.open_run_folder]); nothing in ``run_dir`` changes
    before the resume (if any) is accepted.

    Args:
        config: the resolved run configuration.
        run_dir: the run folder; a fresh run refuses one that already holds checkpoints.
        resume: ``"latest"`` (this run's newest checkpoint) or a checkpoint/run directory;
            checkpoints of ``run_dir`` newer than it are moved into
            ``checkpoints/superseded-<time>/``.
        overwrite: write into a non-empty folder of another kind, or start a fresh run in a
            folder holding one (its checkpoints are moved aside, not deleted).

    Raises:
        ConfigError: a bad config discovered while building (model name or override,
            tokenizer file, batch size).
        RunFolderError: ``run_dir`` is in use by another process (named), holds someone
            else's files, or holds a link out of it.
        FileExistsError: a fresh run into a folder that already holds a run.
        CheckpointError: ``resume`` not found, damaged, or from another configuration.
        NonFiniteError: training diverged (the step and the quantity are named).
    """
    run_dir = Path(run_dir)
    ckpt_root = run_dir / "checkpoints"
    device = resolve_device(config.train.device)
    env = init_distributed(device, timeout_s=config.train.collective_timeout_s)
    try:
        if env.world_size > 1 and device.type == "cuda":
            device = torch.device("cuda", env.local_rank)
        with _locked(run_dir, env.rank == 0, overwrite) as folder:
            checkpoint = None
            if resume is not None:
                checkpoint = find_checkpoint(resume, ckpt_root)
            elif (ckpt_root / "latest").exists() and not overwrite:
                raise FileExistsError(
                    f"{run_dir} already holds a run; continue it with --resume latest, choose "
                    f"another --out, or pass --overwrite to start afresh (its checkpoints are "
                    f"moved into checkpoints/superseded-<time>/)"
                )
            return _train(config, run_dir, checkpoint, device, folder)
    finally:
        close_distributed(env)


@contextlib.contextmanager
def _locked(run_dir: Path, main: bool, overwrite: bool) -> Iterator[RunFolder | None]:
    """Rank 0 claims ``run_dir``; every rank learns whether it succeeded."""
    with contextlib.ExitStack() as stack:
        folder, error = None, None
        if main:
            try:
                folder = stack.enter_context(open_run_folder(run_dir, "train", overwrite))
            except RunFolderError as exc:
                error = str(exc)
            except OSError as exc:  # unreadable folder: every rank must hear of it
                error = f"cannot use the run folder {run_dir}: {exc}"
        if world()[1] > 1:
            box = [error]
            torch.distributed.broadcast_object_list(box, src=0)
            error = box[0]
        if error is not None:
            raise RunFolderError(error)
        yield folder


def _write_run_files(folder: RunFolder, config: RunConfig, model: TwoTower, tokenizer: Tokenizer) -> None:
    """The run's own files, written (atomically, never through a link) once a resume is accepted."""
    run_dir = folder.path
    folder.claim()
    write_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
    write_atomic(run_dir / "model.yaml", yaml.safe_dump(dataclasses.asdict(model.config), sort_keys=False))
    tmp = run_dir / f".tmp-{TOKENIZER_FILE}"
    tokenizer.save(tmp)
    apply_umask(tmp)
    os.replace(tmp, run_dir / TOKENIZER_FILE)


def _checkpoint_tokenizer(checkpoint: Path, context_length: int) -> Tokenizer:
    """The tokenizer stored in ``checkpoint``, verified against its checksum manifest."""
    file = checkpoint / TOKENIZER_FILE
    verify_checkpoint(checkpoint, [TOKENIZER_FILE])
    try:
        return Tokenizer.load(file, context_length)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: not a readable tokenizer ({exc})") from None


def _train(
    config: RunConfig, run_dir: Path, checkpoint: Path | None, device: torch.device,
    folder: RunFolder | None,
) -> RunResult:
    main = folder is not None
    seed_everything(config.train.seed)
    context_length = _context_length(config)
    source = None
    if checkpoint is None and config.model.init_from is not None:
        source = load_source(config.model.init_from)
    if checkpoint is not None and (checkpoint / TOKENIZER_FILE).is_file():
        tokenizer = _checkpoint_tokenizer(checkpoint, context_length)
    elif source is not None and source.tokenizer is not None:
        tokenizer = source.tokenizer
    else:
        tokenizer = _load_tokenizer(config, context_length)
    model = build_run_model(config, tokenizer)
    if source is not None:
        check_tokenizer(source, model, tokenizer)
        initialize_from(model, source.model, tokenizer.sot_id)
    model = model.to(device)
    if world()[1] > 1:
        from manifold_align.losses.distributed import to_distributed

        model.loss = to_distributed(model.loss)
    image_size = model.config.image_size
    batches = build_batches(config, tokenizer, image_size)
    evaluate = build_evaluator(config, tokenizer, image_size)
    optim = config.optim
    optimizers = build_optimizers(
        model, optim.lr, optim.betas, optim.eps, optim.weight_decay,
        optim.riemannian_lr, optim.riemannian_betas, optim.lr_scale,
    )

    def accepted() -> None:
        assert folder is not None
        _write_run_files(folder, config, model, tokenizer)
        if source is not None:  # the converted model as a resumable, evaluable step 0
            save_initial_checkpoint(run_dir, model, optimizers, to_dict(config),
                                    config.data.batch_size * world()[1], world()[1],
                                    {TOKENIZER_FILE: run_dir / TOKENIZER_FILE})

    last = fit(model, optimizers, batches, config, run_dir, evaluate=evaluate,
               resume=checkpoint, checkpoint_files={TOKENIZER_FILE: run_dir / TOKENIZER_FILE},
               on_accept=accepted)
    plots = plot_metrics(run_dir / "metrics.jsonl", run_dir / "plots") if main else []
    model.eval()
    result = RunResult(run_dir, last["step"], last["train"], last["eval"], model, tokenizer, plots)
    if main:
        write_summary(result, config)
    return result


def write_summary(result: RunResult, config: RunConfig) -> Path:
    """``<run>/summary.md``: model, steps, last training metrics and evaluation, plots."""
    lines = [
        f"# Training run `{result.run_dir.name}`",
        "",
        f"Model `{config.model.name}` {dict(config.model.overrides) or ''} on "
        f"`{result.model.manifold!r}`, {result.step} steps of batch {config.data.batch_size}, "
        f"data `{config.data.source}`, seed {config.train.seed}.",
        "",
    ]
    if result.train:
        lines += ["| training metric | value |", "|---|---|"]
        for key in ("loss", "scale", "pos_sim", "neg_sim", "gap_logits", "data/skipped"):
            if isinstance(result.train.get(key), (int, float)):
                lines.append(f"| {key} | {result.train[key]:.4g} |")
        lines.append("")
    if result.eval:
        lines += ["| evaluation | value |", "|---|---|"]
        for key, value in result.eval.items():
            if key not in ("kind", "step") and isinstance(value, (int, float)):
                lines.append(f"| {key} | {value:.4f} |")
        lines.append("")
    lines += [f"![{p.stem}](plots/{p.name})" for p in result.plots]
    return write_atomic(result.run_dir / "summary.md", "\n".join(lines) + "\n")


def load_trained(
    path: str | Path,
    device: str | torch.device | None = None,
    *,
    config: RunConfig | None = None,
) -> tuple[TwoTower, Tokenizer, RunConfig]:
    """Rebuild a trained model from a run folder (its ``latest`` checkpoint) or a checkpoint.

    Reads only the checkpoint's ``state.json`` (config), ``tokenizer.json`` and
    ``model.safetensors``; nothing is unpickled. ``config``: the run config already read from
    that ``state.json`` (with evaluation settings changed), so that it is read once.

    Returns:
        ``(model in eval mode, tokenizer, run config)``.

    Raises:
        CheckpointError: nothing complete at ``path``, a damaged file (named), or weights
            that do not fit the model.
    """
    ckpt = find_checkpoint(path, Path(path) / "checkpoints")
    if config is None:
        config = from_dict(RunConfig, read_state(ckpt)["config"])
    tokenizer = _checkpoint_tokenizer(ckpt, _context_length(config))
    model = build_run_model(config, tokenizer)
    if device is not None:
        model = model.to(device)
    load_checkpoint(ckpt, model, None, restore_random=False)
    model.eval()
    return model, tokenizer, config
