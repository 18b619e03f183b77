"""Periodic evaluation during training on the bundled synthetic data's held-out splits.

A thin adapter from :mod:`manifold_align.evaluate.suite` (the same suite ``manifold-align
eval`` runs) to the trainer's ``evaluate(model, step) -> {name: value}`` callback. The
held-out images are rendered once, when the evaluator is built, so each periodic evaluation
costs only the forward passes:

* zero-shot classification of each attribute (shape, colour, size, position) on the
  ``zeroshot`` split, the task's prompt ensemble averaged on the manifold, top-1 and top-5
  (capped at the number of classes) next to chance ``k / C``;
* image-to-text and text-to-image recall@1/5/10 on the ``retrieval`` split (distinct clean
  captions);
* geometry: the similarity gap (also in logits), alignment and uniformity.

:class:`BenchmarkEvaluator` adds standard datasets on disk (``eval.benchmarks``: ImageNet-1k
and CIFAR zero-shot, COCO/Flickr30k retrieval, image folders, CLIP_benchmark's webdataset
layout) through :mod:`manifold_align.evaluate.standard`; each is checked when the evaluator is
built, so a wrong path stops the run before its first step. Its metrics are
``<name>/top1``, ``<name>/top5``, ``<name>/mean_per_class_recall`` or
``<name>/image_to_text@k``, ``<name>/text_to_image@k``, and ``<name>/skipped``. On ``W``
ranks it splits the classes, images and captions over the ranks itself (each rank reads only
its share of the images) and gathers the results. :func:`combine` joins evaluators.

On ``W`` ranks every rank calls the evaluator with :class:`RankSplitEncoder` around the
model: each encoder call encodes ``ceil(n / W)`` of its ``n`` rows on each rank and gathers
the points, so the forward passes are spread over the ranks and every rank then holds all the
points (the metrics, cheap next to the encoders, are computed on each; rank 0 logs them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from manifold_align.data.synthetic import SyntheticConfig
from manifold_align.evaluate.benchmarks import BenchmarkSpec, open_benchmark
from manifold_align.evaluate.standard import benchmark_metrics, evaluate_benchmark
from manifold_align.evaluate.suite import evaluate_model, summary_metrics, synthetic_heldout

__all__ = ["BenchmarkEvaluator", "RankSplitEncoder", "SyntheticEvaluator", "benchmark_specs", "combine"]

Evaluator = Callable[[nn.Module, int], dict[str, float]]


class RankSplitEncoder(nn.Module):
    """A two-tower model whose ``encode_image``/``encode_text`` split their rows over the ranks.

    For ``n`` input rows on ``W`` ranks, rank ``r`` encodes rows ``r m .. r m + m - 1`` with
    ``m = ceil(n / W)`` (the last rows repeated where ``W m > n``), the ranks all-gather their
    ``m`` points and every rank returns the ``n`` points in input order. Every rank must make
    the same calls with the same row counts (a deterministic evaluation does). Everything
    else (``manifold``, ``temperature``, ``vision``, ...) is the wrapped model's. On one
    process it is the model itself.

    Args:
        model: the two-tower model (unwrapped, not the DDP module).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    def _split(self, encode: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return encode(rows)
        rank, world = dist.get_rank(), dist.get_world_size()
        n = rows.shape[0]
        m = -(-n // world)
        index = torch.arange(rank * m, (rank + 1) * m, device=rows.device).clamp_(max=n - 1)
        local = encode(rows[index]).contiguous()
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local)
        return torch.cat(parts)[:n]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``model.encode_image`` on this rank's rows, gathered: ``(n, *point_shape)``."""
        return self._split(self.model.encode_image, images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``model.encode_text`` on this rank's rows, gathered: ``(n, *point_shape)``."""
        return self._split(self.model.encode_text, tokens)


class SyntheticEvaluator:
    """``evaluator(model, step) -> {metric: value}`` on held-out synthetic images.

    Metric names: ``zeroshot/<attribute>/top1``, ``.../top5`` (or ``top{C}`` when the task has
    fewer than 5 classes), ``zeroshot/<attribute>/chance_top1``, ``zeroshot/mean_top1``,
    ``retrieval/image_to_text@k``, ``retrieval/text_to_image@k``, ``geometry/gap``,
    ``geometry/gap_logits``, ``geometry/alignment``, ``geometry/uniformity_image``.

    Args:
        tokenize: ``list of B strings -> (B, L)`` token ids (the run's tokenizer).
        image_size: side of the rendered images (the model's ``image_size``).
        seed: the synthetic data seed (the held-out splits never share an item with ``train``).
        zeroshot_samples: images for zero-shot classification (``0`` skips it).
        retrieval_samples: image-caption pairs for retrieval (``0`` skips it).
        batch_size: images or captions per forward pass.
        appearance: the training data's appearance settings.
        precision: ``"fp32"`` or ``"bf16"`` (autocast for the encoders).

    Raises:
        ValueError: if both sample counts are ``0``, ``batch_size < 1``, or the retrieval
            split has too few distinct captions.
    """

    def __init__(
        self,
        tokenize: Callable[[list[str]], torch.Tensor],
        image_size: int,
        seed: int = 0,
        zeroshot_samples: int = 1000,
        retrieval_samples: int = 1000,
        batch_size: int = 256,
        appearance: SyntheticConfig | None = None,
        precision: str = "fp32",
    ) -> None:
        if zeroshot_samples <= 0 and retrieval_samples <= 0:
            raise ValueError("zeroshot_samples, retrieval_samples: at least one must be > 0")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.tokenize = tokenize
        self.batch_size = batch_size
        self.precision = precision
        self.heldout = synthetic_heldout(
            zeroshot_samples=zeroshot_samples, retrieval_samples=retrieval_samples, seed=seed,
            image_size=image_size, config=appearance,
        )

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, step: int = 0) -> dict[str, float]:
        """Evaluate ``model`` (a two-tower model) now; ``step`` is for the caller's logs."""
        results = evaluate_model(model, self.tokenize, self.heldout, batch_size=self.batch_size,
                                 precision=self.precision)
        out = summary_metrics(results)
        for attribute, res in results.get("zeroshot", {}).items():
            for key, value in res.items():
                if key.startswith(("top", "chance_top")):
                    out[f"zeroshot/{attribute}/{key}"] = float(value)
        return out


class BenchmarkEvaluator:
    """``evaluator(model, step) -> {"<name>/<metric>": value}`` on standard datasets on disk.

    Args:
        specs: the benchmarks (:class:`~manifold_align.evaluate.benchmarks.BenchmarkSpec`).
        tokenize: the run's tokenizer.
        batch_size: images or prompts per forward pass (per rank).
        precision: ``"fp32"`` or ``"bf16"``.
        num_workers: image-reading processes.

    Raises:
        ValueError: a benchmark that cannot be opened (missing path, a class folder without a
            name, repeated names, templates without a placeholder, ...), naming it.
    """

    def __init__(
        self,
        specs: list[BenchmarkSpec],
        tokenize: Callable[[list[str]], torch.Tensor],
        *,
        batch_size: int = 256,
        precision: str = "fp32",
        num_workers: int = 0,
    ) -> None:
        self.benchmarks = [open_benchmark(spec) for spec in specs]
        self.tokenize = tokenize
        self.options = {"batch_size": batch_size, "precision": precision, "num_workers": num_workers}

    @torch.no_grad()
    def __call__(self, model: nn.Module, step: int = 0) -> dict[str, float]:
        """Evaluate ``model`` (or a :class:`RankSplitEncoder` around it: then the work is
        split over the ranks) on every benchmark."""
        split = isinstance(model, RankSplitEncoder)
        inner = model.model if split else model
        out: dict[str, float] = {}
        for bench in self.benchmarks:
            result = evaluate_benchmark(inner, self.tokenize, bench, distributed=split, **self.options)
            out.update(benchmark_metrics(bench.spec.name, result))
        return out


def benchmark_specs(benchmarks: dict[str, Any]) -> list[BenchmarkSpec]:
    """``eval.benchmarks`` (name -> :class:`~manifold_align.train.config.BenchmarkEntry`) as
    benchmark specs.

    Raises:
        ValueError: an unknown name (naming it).
    """
    return [BenchmarkSpec(name, **dataclasses.asdict(entry)) for name, entry in benchmarks.items()]


def combine(evaluators: list[Evaluator]) -> Evaluator | None:
    """One evaluator that runs each of ``evaluators`` and merges their metrics (``None`` for
    none, the evaluator itself for one)."""
    if len(evaluators) <= 1:
        return evaluators[0] if evaluators else None

    def evaluate(model: nn.Module, step: int = 0) -> dict[str, float]:
        out: dict[str, float] = {}
        for evaluator in evaluators:
            out.update(evaluator(model, step))
        return out

    return evaluate
