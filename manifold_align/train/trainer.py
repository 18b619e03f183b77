"""The training loop, in one function a reader can hold in their head.

Per optimizer step ``s`` (0-based):

1. every group's rate is ``initial_lr * lr_factor(s)`` (warmup, then cosine);
2. ``grad_accum`` micro-batches: forward under autocast (bfloat16 if asked; the losses keep
   their arithmetic in float32), ``loss / grad_accum`` backward; negatives come from within
   each micro-batch;
3. the NaN/Inf guard checks the loss and the total gradient norm (and, in debug mode, every
   gradient and parameter, by name);
4. gradients are clipped to ``clip_grad_norm``, every optimizer steps, and the temperature is
   projected back under its cap (``clamp_``);
5. metrics every ``log_every`` steps, evaluation every ``eval_every`` steps, and a checkpoint
   every ``ckpt_every`` steps, each also after the last step.

On ``W`` ranks (a ``torch.distributed`` default group, e.g. from ``torchrun``) the model is
wrapped in ``DistributedDataParallel``; every rank takes its ``data.batch_size`` share of each
global batch of ``W x data.batch_size``; the micro-steps but the last run under ``no_sync()``
(one gradient all-reduce per optimizer step); when a rank lost samples to unreadable data,
every rank keeps its first ``min_r b_r`` pairs (at least 2, else the batch is dropped); the
logged loss is the mean of the ranks' shares
(the global loss); rank 0 alone writes metrics and checkpoints (all ranks wait at a barrier
around each); every rank runs ``evaluate`` on a
[RankSplitEncoder][manifold_align.evaluate.ranks.RankSplitEncoder], which spreads the encoding over
the ranks, and rank 0 logs the result.

The data position (global micro-batches consumed) and the skipped-sample count are part of every
checkpoint, so ``resume`` continues with exactly the batches the uninterrupted run would
have used; a checkpoint also records the global batch, and resumes on any number of ranks
whose ``W x data.batch_size`` equals it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from manifold_align.config import to_dict
from manifold_align.data.skipped import SkippedSamples
from manifold_align.evaluate.ranks import RankSplitEncoder
from manifold_align.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from manifold_align.train.config import RunConfig
from manifold_align.train.distributed import barrier, world
from manifold_align.train.guard import check_scalar, check_tensors
from manifold_align.train.lineage import supersede
from manifold_align.train.metrics import MetricsError, MetricsWriter, read_metrics
from manifold_align.train.progress import Progress
from manifold_align.train.schedule import lr_factor

__all__ = ["RESUMABLE_KEYS", "BatchSource", "fit"]

#: Config keys that may change between a run and its resumption; every other key must match.
RESUMABLE_KEYS = (
    "train.steps",
    "train.log_every",
    "train.eval_every",
    "train.ckpt_every",
    "train.keep_checkpoints",
    "train.progress",
    "train.progress_interval_s",
    "train.device",
    "train.debug",
    "train.compile",
    "train.collective_timeout_s",
    "data.num_workers",
    "data.batch_size",  # per rank; the global batch (checked separately) must not change
    "data.max_consecutive_skips",  # only when to give up: raise it and resume
    "eval",
)

Evaluate = Callable[[torch.nn.Module, int], Mapping[str, float]]


class BatchSource(Protocol):
    """What the loop needs from the data layer."""

    def iterate(self, start: int) -> Iterator[Any]:
        """Endless micro-batches after the first ``start``.

        A batch is ``(images, tokens)`` or ``(images, tokens, skipped)`` (a
        [Batch][manifold_align.data.collate.Batch]) where ``skipped`` is the
        [SkippedSamples][manifold_align.data.skipped.SkippedSamples] record of its unreadable samples.
        """
        ...


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fit(
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    batches: BatchSource,
    config: RunConfig,
    run_dir: str | Path,
    evaluate: Evaluate | None = None,
    resume: str | Path | None = None,
    checkpoint_files: Mapping[str, str | Path] | None = None,
    on_accept: Callable[[], None] | None = None,
    progress_stream: TextIO | None = None,
    clock: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``config.train.steps`` optimizer steps; return the last records.

    Writes ``<run_dir>/metrics.jsonl`` and checkpoints under ``<run_dir>/checkpoints``.

    Args:
        model: ``model(images, tokens)`` returns ``LossOutput(loss, diagnostics)``; a
            ``model.temperature`` with ``clamp_()``, if present, is projected after each step,
            and so is ``model.manifold`` (a learnable curvature; a no-op otherwise).
            Already on its device; not yet wrapped (``fit`` wraps it in DDP on several ranks;
            its loss should already be the distributed one there, see
            [to_distributed][manifold_align.losses.distributed.to_distributed]).
        optimizers: from [manifold_align.train.optimizers.build_optimizers][manifold_align.train.optimizers.build_optimizers]; each group's
            ``initial_lr`` is its base rate.
        batches: the data, see `BatchSource`.
        config: the resolved run configuration.
        run_dir: the run folder.
        evaluate: ``evaluate(model, step) -> {name: value}``, called in eval mode without
            gradients every ``eval_every`` steps (``0``: never) and after the last step; on
            several ranks every rank calls it (with the same arguments) on a
            [RankSplitEncoder][manifold_align.evaluate.ranks.RankSplitEncoder].
        resume: a checkpoint directory to continue from (see
            [find_checkpoint][manifold_align.train.checkpoint.find_checkpoint]).
        checkpoint_files: files copied into every checkpoint (``{name: path}``).
        on_accept: called on rank 0 once ``resume`` (if any) is loaded and accepted and the
            checkpoints it supersedes are moved aside, before anything else is written into
            ``run_dir`` (a refused resume changes nothing there); it may write a first
            checkpoint (``model.init_from`` does).
        progress_stream: where progress goes (``sys.stderr`` when ``None``): a tqdm bar if
            it is a terminal, else a plain line every ``train.progress_interval_s`` seconds
            (`Progress`).
        clock: the progress lines' clock (``time.monotonic`` when ``None``), for tests.

    Checkpoints of ``run_dir`` newer than the one resumed from (all of them for a fresh
    run) are moved aside first ([supersede][manifold_align.train.lineage.supersede]);
    rotation never deletes the checkpoint resumed from.

    Returns:
        ``{"train": last train record, "eval": last eval record or None, "step": int}``;
        after a resume, records not written again come from ``metrics.jsonl`` (a run killed
        between its last checkpoint and its summary still reports them).

    Raises:
        NonFiniteError: the step and the non-finite quantity.
        CheckpointError: ``resume`` belongs to another configuration or model, or to another
            global batch (``W x data.batch_size``), or the run's ``metrics.jsonl`` has a
            damaged line before its last (named; nothing in ``run_dir`` has changed).
    """
    run_dir = Path(run_dir)
    tc, sc = config.train, config.schedule
    device = next(model.parameters()).device
    config_tree = to_dict(config)
    total = sc.total_steps or tc.steps
    min_ratio = sc.min_lr / config.optim.lr if config.optim.lr > 0 else 0.0

    rank, world_size = world()
    main = rank == 0
    global_batch = config.data.batch_size * world_size

    step, consumed, skipped = 0, 0, SkippedSamples()
    if resume is not None:
        state = load_checkpoint(resume, model, optimizers, config_tree, RESUMABLE_KEYS,
                                defaults=to_dict(type(config)()))
        then = state["extra"].get("global_batch", state["config"]["data"]["batch_size"])
        if then != global_batch:
            raise CheckpointError(
                f"{resume}: written with a global batch of {then}; this run has "
                f"{config.data.batch_size} x {world_size} rank(s) = {global_batch}; set "
                f"data.batch_size to {then} / (number of ranks)"
            )
        step = state["step"]
        consumed = state["extra"]["batches"]
        skipped = SkippedSamples.from_dict(state["extra"]["skipped"])
    if tc.debug and hasattr(getattr(model, "loss", None), "check_finite"):
        model.loss.check_finite = True
    ddp = None
    engine: torch.nn.Module = model
    if world_size > 1:
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        engine = ddp
    if tc.compile:
        engine = torch.compile(engine)
    history, damaged = None, None
    if main and resume is not None:  # a damaged file stops the resume before anything moves
        try:
            history = read_metrics(run_dir / "metrics.jsonl")
        except MetricsError as exc:
            damaged = (f"cannot resume {run_dir}: {exc}; repair or delete that line (the run "
                       f"folder is unchanged)")
    if world_size > 1 and resume is not None:  # every rank stops, none waits for rank 0
        box = [damaged]
        dist.broadcast_object_list(box, src=0)
        damaged = box[0]
    if damaged is not None:
        raise CheckpointError(damaged)
    if main:
        supersede(run_dir / "checkpoints", step if resume is not None else -1,
                  metrics=run_dir / "metrics.jsonl")
        if on_accept is not None:
            on_accept()
    metrics = MetricsWriter(run_dir / "metrics.jsonl", resume_step=step if resume else None,
                            records=history) if main else None
    params = [p for p in model.parameters() if p.requires_grad]
    temperature = getattr(model, "temperature", None)
    last: dict[str, Any] = {"train": None, "eval": None, "step": step}
    if metrics is not None and resume is not None:  # the records a killed run wrote last
        for r in metrics.kept:
            if r.get("kind") in ("train", "eval"):
                last[r["kind"]] = r

    def record(kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
        if metrics is None:
            return {"kind": kind, "step": step, **values}
        return metrics.write(kind, step, values)

    def checkpoint() -> None:
        barrier()
        if main:
            extra = {"batches": consumed, "skipped": skipped.to_dict(), "global_batch": global_batch,
                     "world_size": world_size}
            save_checkpoint(run_dir / "checkpoints", step, model, optimizers, extra, config_tree,
                            keep=tc.keep_checkpoints, files=checkpoint_files,
                            protect=[resume] if resume is not None else [])
        barrier()

    def run_eval() -> None:
        if evaluate is None:
            return
        model.eval()
        with torch.no_grad(), _autocast(device, tc.precision):
            values = dict(evaluate(RankSplitEncoder(model) if world_size > 1 else model, step))
        model.train()
        last["eval"] = record("eval", values)

    bar = Progress(tc.steps, step, enabled=main and tc.progress,
                   interval_s=tc.progress_interval_s, stream=progress_stream, clock=clock)
    data = batches.iterate(consumed)

    def usable(size: int) -> int:
        # Batches that lost all but one sample to unreadable data carry no contrastive signal.
        # On several ranks the distributed loss needs the same size everywhere: every rank
        # keeps the first n = min over ranks of its pairs (one small all-reduce). Dropping the
        # whole global batch instead would, at a 1% skip rate and 256 pairs a rank on 8 ranks,
        # drop nearly every batch for ever (P(no rank lost one) = 0.99^2048 ~ 1e-9).
        if world_size > 1:
            smallest = torch.tensor([size], device=device)
            dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
            size = int(smallest[0])
        return size if size >= 2 else 0

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal consumed, skipped
        while True:
            batch = next(data)
            consumed += 1
            if len(batch) == 3:
                skipped += batch[2]
            n = usable(batch[0].shape[0])
            if n:
                return batch[0][:n], batch[1][:n]
    model.train()
    tick = time.perf_counter()
    try:
        while step < tc.steps:
            factor = lr_factor(step, sc.warmup_steps, total, min_ratio)
            for opt in optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = group["initial_lr"] * factor

            loss_sum = torch.zeros((), device=device)
            for micro in range(tc.grad_accum):
                images, tokens = next_batch()
                images = images.to(device, non_blocking=True)
                tokens = tokens.to(device, non_blocking=True)
                last_micro = micro == tc.grad_accum - 1
                sync = ddp.no_sync() if ddp is not None and not last_micro else contextlib.nullcontext()
                with sync:
                    with _autocast(device, tc.precision):
                        out = engine(images, tokens)
                    (out.loss / tc.grad_accum).backward()
                loss_sum += out.loss.detach().float()
            if world_size > 1:  # each rank holds its share; their mean is the global loss
                dist.all_reduce(loss_sum)
                loss_sum /= world_size
            loss = float(loss_sum) / tc.grad_accum
            check_scalar(step, "loss", loss)

            if tc.debug:
                check_tensors(step, model, "gradient")
            max_norm = tc.clip_grad_norm if tc.clip_grad_norm > 0 else math.inf
            try:  # raises before scaling, so a bad gradient is still there to be named
                norm = torch.nn.utils.clip_grad_norm_(params, max_norm, error_if_nonfinite=True)
            except RuntimeError:
                check_tensors(step, model, "gradient")
                raise
            grad_norm = float(norm)
            for opt in optimizers.values():
                opt.step()
            for opt in optimizers.values():
                opt.zero_grad(set_to_none=True)
            if temperature is not None and hasattr(temperature, "clamp_"):
                temperature.clamp_()
            manifold = getattr(getattr(model, "module", model), "manifold", None)
            if manifold is not None and hasattr(manifold, "clamp_"):
                manifold.clamp_()  # a learnable Lorentz curvature into its bounds
            if tc.debug:
                check_tensors(step, model, "parameter")
            step += 1
            bar.update(1, loss=loss)

            if step % tc.log_every == 0 or step == tc.steps:
                now = time.perf_counter()
                diag = {k: float(v) for k, v in out.diagnostics.items()}
                last["train"] = record("train", {
                    "loss": loss,
                    "lr": config.optim.lr * factor,
                    "grad_norm": grad_norm,
                    **diag,
                    "batches": consumed,
                    **skipped.as_metrics(),
                    "seconds": now - tick,
                })
                tick = now
                bar.set_postfix(loss=f"{loss:.4f}", scale=f"{diag.get('scale', math.nan):.3g}")
            if (tc.eval_every and step % tc.eval_every == 0) or step == tc.steps:
                run_eval()
            if (tc.ckpt_every and step % tc.ckpt_every == 0) or step == tc.steps:
                checkpoint()
        bar.close()
    finally:
        bar.close(last_line=False)  # after an error: the error is the last line
        if metrics is not None:
            metrics.close()
    last["step"] = step
    return last
