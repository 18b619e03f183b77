"""Evaluate a two-tower model on standard benchmarks, streaming in bounded memory.

[evaluate_benchmarks][manifold_align.evaluate.standard.evaluate_benchmarks] takes any model with ``encode_image``, ``encode_text`` and
``manifold`` (a trained run's, or one loaded from other weights) and a tokenizer, opens every
benchmark first (so a bad names file fails before a model runs), then evaluates each with
[evaluate_benchmark][manifold_align.evaluate.standard.evaluate_benchmark]:

* **zero-shot**: each class's prompts are encoded and averaged on the manifold as soon as the
  class is complete ([build_classifier_from_prompts][manifold_align.evaluate.zeroshot.build_classifier_from_prompts]);
  images are read, encoded and scored a batch at a time against the ``C`` class points, only
  counts kept ([ZeroShotCounts][manifold_align.evaluate.zeroshot.ZeroShotCounts]): top-1, top-5,
  mean per-class recall. No ``N x D`` or ``N x C`` tensor is ever formed
  ([zeroshot_memory][manifold_align.evaluate.standard.zeroshot_memory] is the memory model).
* **retrieval**: image points (``N x D``) and caption points (``M x D``) are kept and ranked
  in chunks ([retrieval_recall][manifold_align.evaluate.retrieval.retrieval_recall]); image->text counts
  a hit when any of the image's captions is in the top ``k``.

An image that is missing or cannot be decoded is counted in ``"skipped"`` and left out (in
retrieval, with its captions). With ``distributed=True`` inside a process group the classes,
images and captions are split over the ranks and the results gathered, so every rank returns
the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from manifold_align.data.skipped import SkippedSample, SkippedSamples
from manifold_align.data.transforms import ImageTransform
from manifold_align.evaluate.benchmarks import (
    BenchmarkSpec,
    RetrievalBenchmark,
    ZeroShotBenchmark,
    open_benchmark,
)
from manifold_align.evaluate.encode import (
    Precision,
    encode_captions,
    encode_images,
    evaluating,
    text_encoder,
)
from manifold_align.evaluate.ranks import (
    all_sum,
    gather_objects,
    gather_rows,
    rank_world,
    shard_bounds,
)
from manifold_align.evaluate.retrieval import retrieval_recall
from manifold_align.evaluate.zeroshot import ZeroShotCounts, build_classifier_from_prompts

__all__ = [
    "ZeroShotMemory",
    "benchmark_metrics",
    "evaluate_benchmark",
    "evaluate_benchmarks",
    "retrieval_chance",
    "zeroshot_memory",
]


def _collate(items: list[tuple[Any, Any]]) -> tuple[torch.Tensor | None, list[Any], list[SkippedSample]]:
    """``(stacked images or None, their targets, markers)`` of one loader batch."""
    good = [(x, t) for x, t in items if not isinstance(x, SkippedSample)]
    markers = [x for x, _ in items if isinstance(x, SkippedSample)]
    images = torch.stack([x for x, _ in good]) if good else None
    return images, [t for _, t in good], markers


def _loader(dataset: torch.utils.data.Dataset, batch_size: int, num_workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate, shuffle=False
    )


def evaluate_benchmarks(
    model: nn.Module,
    tokenize: Callable[[list[str]], torch.Tensor],
    specs: Sequence[BenchmarkSpec | str],
    **options: Any,
) -> dict[str, dict[str, Any]]:
    """Open every benchmark (raising before any encoding), then evaluate each.

    Args:
        model: a two-tower model.
        tokenize: strings -> token ids.
        specs: [BenchmarkSpec][manifold_align.evaluate.benchmarks.BenchmarkSpec] or
            ``"NAME=PATH[,key=value]"`` strings; names must differ.
        **options: passed to [evaluate_benchmark][manifold_align.evaluate.standard.evaluate_benchmark].

    Returns:
        ``{name: evaluate_benchmark(...)}`` in the given order.

    Raises:
        ValueError: a repeated name or anything ` open_benchmark` raises.
    """
    opened = [open_benchmark(s) for s in specs]
    names = [b.spec.name for b in opened]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"benchmark: {repeated} given more than once")
    return {b.spec.name: evaluate_benchmark(model, tokenize, b, **options) for b in opened}


def evaluate_benchmark(
    model: nn.Module,
    tokenize: Callable[[list[str]], torch.Tensor],
    benchmark: ZeroShotBenchmark | RetrievalBenchmark,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    precision: Precision = "fp32",
    chunk_size: int = 1024,
    num_workers: int = 0,
    karcher: bool = False,
    transform: Callable | None = None,
    distributed: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on one opened benchmark (see the module docstring).

    Args:
        model: a two-tower model (``encode_image``, ``encode_text``, ``manifold``); run in
            eval mode and without gradients, its mode restored.
        tokenize: strings -> token ids.
        benchmark: from [open_benchmark][manifold_align.evaluate.benchmarks.open_benchmark].
        batch_size: images or prompts per forward pass.
        device: where to run (the model's device by default).
        precision: ``"bf16"`` for bfloat16 autocast in the towers.
        chunk_size: rows per block of similarities.
        num_workers: ``DataLoader`` worker processes reading and transforming images.
        karcher: average prompt ensembles with the Karcher mean.
        transform: PIL image -> tensor; default CLIP's evaluation transform at
            ``model.vision.image_size``.
        distributed: split the work over the ranks of the current process group.

    Returns:
        zero-shot: ``{"task": "zeroshot", "top1", "top5", "chance_top1", "chance_top5",
        "mean_per_class_recall", "per_class_top1", "num_classes", "num_images",
        "num_templates", "classnames", "templates", "skipped"}``; retrieval:
        ``{"task": "retrieval", "image_to_text@{1,5,10}", "text_to_image@{1,5,10}",
        "chance_...@k", "num_images", "num_captions", "skipped"}``; ``"skipped"`` is a
        [to_dict][manifold_align.data.skipped.SkippedSamples.to_dict].

    Raises:
        ValueError: if no image could be read (zero-shot) or fewer than 2 (retrieval).
    """
    transform = ImageTransform(model.vision.image_size) if transform is None else transform
    rank, world = rank_world(distributed)
    common = {"batch_size": batch_size, "device": device, "precision": precision}
    with evaluating(model), torch.no_grad():
        if isinstance(benchmark, ZeroShotBenchmark):
            out = _zeroshot(model, tokenize, benchmark, transform, rank, world, chunk_size, num_workers, karcher, common)
        else:
            out = _retrieval(model, tokenize, benchmark, transform, rank, world, chunk_size, num_workers, common)
    out["path"] = benchmark.spec.path
    return out


def _skipped(markers: SkippedSamples, world: int) -> dict[str, Any]:
    total = SkippedSamples()
    for part in gather_objects(markers, world):
        total += part
    return total.to_dict()


def _zeroshot(model, tokenize, bench, transform, rank, world, chunk_size, num_workers, karcher, common) -> dict[str, Any]:
    manifold = model.manifold
    prompts = bench.prompts()
    start, stop = shard_bounds(len(prompts), rank, world)
    mine = prompts[start:stop]
    encode = text_encoder(model, common["device"], common["precision"])
    if mine:
        part = build_classifier_from_prompts(encode, tokenize, mine, manifold, karcher=karcher,
                                             batch_size=common["batch_size"])
    else:
        probe = encode(tokenize(prompts[0][:1]))
        part = probe.new_zeros((0, *probe.shape[1:]))
    classes = gather_rows(part, world)
    counts = ZeroShotCounts(len(prompts), (1, 5), device=classes.device)
    skipped = SkippedSamples()
    for images, labels, markers in _loader(bench.dataset(transform, rank, world), common["batch_size"], num_workers):
        skipped.update(markers)
        if images is None:
            continue
        points = encode_images(model, images, **common)
        y = torch.tensor(labels, dtype=torch.long)
        for i in range(0, points.shape[0], chunk_size):
            counts.add(manifold.similarity(points[i : i + chunk_size], classes), y[i : i + chunk_size])
        del images, points  # free this batch before the loader builds the next one
    all_sum(counts.state, world)
    out: dict[str, Any] = {"task": "zeroshot", **counts.result()}
    out["skipped"] = _skipped(skipped, world)
    if out["num_images"] == 0:
        raise ValueError(f"benchmark {bench.spec.name}: no image could be read ({out['skipped']['counts']})")
    out["num_templates"] = len(bench.templates)
    out["classnames"] = (bench.sources or {}).get("classnames")
    out["templates"] = (bench.sources or {}).get("templates")
    return out


def _retrieval(model, tokenize, bench, transform, rank, world, chunk_size, num_workers, common) -> dict[str, Any]:
    points, captions = [], []
    skipped = SkippedSamples()
    for images, texts, markers in _loader(bench.dataset(transform, rank, world), common["batch_size"], num_workers):
        skipped.update(markers)
        if images is None:
            continue
        for i, t in enumerate(texts):
            if not t:  # a record without captions has nothing to find
                skipped.record("missing_caption", f"image {len(captions) + i}")
        keep = [i for i, t in enumerate(texts) if t]
        if not keep:
            continue
        points.append(encode_images(model, images[keep], **common))
        captions.extend(texts[i] for i in keep)
    ps = tuple(model.manifold.point_shape)
    local = torch.cat(points) if points else torch.zeros((0, *ps), device=_device(model, common))
    image_points = gather_rows(local, world)
    captions = [c for part in gather_objects(captions, world) for c in part]
    skipped_dict = _skipped(skipped, world)
    if image_points.shape[0] < 2:
        raise ValueError(f"benchmark {bench.spec.name}: fewer than 2 readable images ({skipped_dict['counts']})")
    flat = [t for group in captions for t in group]
    owner = torch.tensor([i for i, group in enumerate(captions) for _ in group], dtype=torch.long)
    start, stop = shard_bounds(len(flat), rank, world)
    text_local = (encode_captions(model, tokenize, flat[start:stop], **common) if stop > start
                  else torch.zeros((0, *ps), device=image_points.device))
    text_points = gather_rows(text_local, world)
    out: dict[str, Any] = {"task": "retrieval"}
    out.update(retrieval_recall(image_points, text_points, model.manifold, caption_to_image=owner,
                                chunk_size=chunk_size, candidate_chunk_size=max(chunk_size, 4096)))
    out.update(retrieval_chance([len(g) for g in captions], (1, 5, 10)))
    out["skipped"] = skipped_dict
    return out


def _device(model: nn.Module, common: dict[str, Any]) -> torch.device:
    if common["device"] is not None:
        return torch.device(common["device"])
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def retrieval_chance(captions_per_image: Sequence[int], ks: Sequence[int]) -> dict[str, float]:
    """Recall@k of a uniformly random ranking, both ways.

    With ``N`` images, ``M = sum_i m_i`` captions: text->image ``min(k, N) / N``;
    image->text ``(1/N) sum_i [1 - prod_{j<k} (M - m_i - j) / (M - j)]`` (the chance that
    one of the image's ``m_i`` captions is among ``k`` drawn without replacement).
    """
    n, m = len(captions_per_image), sum(captions_per_image)
    out = {}
    for k in ks:
        miss = 0.0
        for mi in captions_per_image:
            miss += math.prod((m - mi - j) / (m - j) for j in range(min(k, m))) if m - mi >= k else 0.0
        out[f"chance_image_to_text@{k}"] = 1.0 - miss / n
    for k in ks:
        out[f"chance_text_to_image@{k}"] = min(k, n) / n
    return out


def benchmark_metrics(name: str, result: dict[str, Any]) -> dict[str, float]:
    """The headline numbers as a flat ``{"<name>/<metric>": float}`` (for ``metrics.jsonl``):
    ``top1``, ``top5``, ``mean_per_class_recall`` or ``image_to_text@k``, ``text_to_image@k``,
    and ``skipped`` (images left out)."""
    keys = ("top1", "top5", "mean_per_class_recall") if result["task"] == "zeroshot" else tuple(
        k for k in result if "@" in k and not k.startswith("chance"))
    out = {f"{name}/{k}": float(result[k]) for k in keys if k in result}
    out[f"{name}/skipped"] = float(sum(result["skipped"]["counts"].values()))
    return {k: v for k, v in out.items() if math.isfinite(v)}


@dataclass(frozen=True)
class ZeroShotMemory:
    """Bytes the zero-shot evaluation holds at its peak, by part (float32 points).

    With ``C`` classes, ``T`` templates, ``D`` = ``manifold.flat_dim``, batch ``B`` of
    ``s x s`` images or ``L``-token prompts, similarity chunk ``b = min(B, chunk_size)``.

    Attributes:
        classifier: the ``C`` class points, ``4 C D``, held throughout.
        prompts: one prompt batch's token ids and the points not yet averaged,
            ``8 B L + 4 (B + T) D``.
        images: one stacked image batch ``X = 4 B 3 s^2``; while the loader stacks it the
            per-image tensors double it.
        scores: the batch's points, one chunk's similarities and comparison masks, the
            counts: ``4 B D + (4 + 3) b C + 8 (2 + 2 C)``.
        forward_text, forward_image: the towers' own working memory for one batch of ``B``
            (inference activations and output; measured, see docs/evaluation-standard.md).
    """

    classifier: int
    prompts: int
    images: int
    scores: int
    forward_text: int = 0
    forward_image: int = 0

    @property
    def peak(self) -> int:
        """``classifier + max(prompts + forward_text, X + max(X, forward_image, scores))``: the
        text phase, then per image batch stacking, the image tower, the scoring; nothing
        grows with the number of images."""
        return self.classifier + max(
            self.prompts + self.forward_text,
            self.images + max(self.images, self.forward_image, self.scores),
        )


def zeroshot_memory(
    num_classes: int,
    num_templates: int,
    dim: int,
    *,
    batch_size: int = 256,
    chunk_size: int = 1024,
    image_size: int = 224,
    context_length: int = 77,
    forward_text: int = 0,
    forward_image: int = 0,
) -> ZeroShotMemory:
    """The memory model of [evaluate_benchmark][manifold_align.evaluate.standard.evaluate_benchmark] on a zero-shot benchmark of any size.

    The number of images does not appear: they stream through and only counts are kept.
    With ``num_workers`` loader processes add ``2 x num_workers`` prefetched image batches
    (in those processes).
    """
    b = min(batch_size, chunk_size)
    return ZeroShotMemory(
        classifier=4 * num_classes * dim,
        prompts=8 * batch_size * context_length + 4 * (batch_size + num_templates) * dim,
        images=4 * batch_size * 3 * image_size**2,
        scores=4 * batch_size * dim + 7 * b * num_classes + 8 * (2 + 2 * num_classes),
        forward_text=forward_text,
        forward_image=forward_image,
    )
