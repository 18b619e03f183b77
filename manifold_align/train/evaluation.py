"""The trainer's evaluation callbacks: ``evaluate(model, step) -> {name: value}``.

The held-out synthetic suite is `SyntheticEvaluator` (`manifold_align.evaluate.suite`, the
same suite ``manifold-align eval`` runs); on ``W`` ranks the trainer wraps the model in
`RankSplitEncoder` (`manifold_align.evaluate.ranks`), whose encoders spread their rows over
the ranks and gather the points. Both live with the evaluation and are re-exported here,
where earlier releases documented them.

`BenchmarkEvaluator` adds standard datasets on disk (``eval.benchmarks``: ImageNet-1k
and CIFAR zero-shot, COCO/Flickr30k retrieval, image folders, CLIP_benchmark's webdataset
layout) through [manifold_align.evaluate.standard][manifold_align.evaluate.standard]; each is checked when the evaluator is
built, so a wrong path stops the run before its first step. Its metrics are
``<name>/top1``, ``<name>/top5``, ``<name>/mean_per_class_recall`` or
``<name>/image_to_text@k``, ``<name>/text_to_image@k``, and ``<name>/skipped``. On ``W``
ranks it splits the classes, images and captions over the ranks itself (each rank reads only
its share of the images) and gathers the results. `combine` joins evaluators.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from manifold_align.evaluate.benchmarks import BenchmarkSpec, open_benchmark
from manifold_align.evaluate.ranks import RankSplitEncoder
from manifold_align.evaluate.standard import benchmark_metrics, evaluate_benchmark
from manifold_align.evaluate.suite import SyntheticEvaluator

__all__ = ["BenchmarkEvaluator", "RankSplitEncoder", "SyntheticEvaluator", "benchmark_specs", "combine"]

Evaluator = Callable[[nn.Module, int], dict[str, float]]


class BenchmarkEvaluator:
    """``evaluator(model, step) -> {"<name>/<metric>": value}`` on standard datasets on disk.

    Args:
        specs: the benchmarks ([BenchmarkSpec][manifold_align.evaluate.benchmarks.BenchmarkSpec]).
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
        """Evaluate ``model`` (or a [RankSplitEncoder][manifold_align.evaluate.ranks.RankSplitEncoder] around it: then the work is
        split over the ranks) on every benchmark."""
        split = isinstance(model, RankSplitEncoder)
        inner = model.model if split else model
        out: dict[str, float] = {}
        for bench in self.benchmarks:
            result = evaluate_benchmark(inner, self.tokenize, bench, distributed=split, **self.options)
            out.update(benchmark_metrics(bench.spec.name, result))
        return out


def benchmark_specs(benchmarks: dict[str, Any]) -> list[BenchmarkSpec]:
    """``eval.benchmarks`` (name -> [BenchmarkEntry][manifold_align.train.config.BenchmarkEntry]) as
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
