"""The held-out evaluation suite: zero-shot, retrieval and geometry of one model in one call.

[synthetic_heldout][manifold_align.evaluate.suite.synthetic_heldout] renders the bundled data's held-out splits once (they share no item
with training):

* ``zeroshot``: one-object scenes, each labelled by every attribute (shape, colour, size,
  position), with the attribute's class names and prompt templates
  ([ZERO_SHOT_TASKS][manifold_align.data.synthetic.ZERO_SHOT_TASKS]);
* ``retrieval``: one- and two-object scenes with clean captions, **keeping only the first
  scene of each distinct caption**. The same caption for two different images would make
  either choice "wrong" by index alone and cap recall below 1 for a perfect model; with
  distinct captions every query has exactly one correct answer.

[evaluate_model][manifold_align.evaluate.suite.evaluate_model] encodes them with a model and returns every metric (nested, for
``eval.json``); [summary_metrics][manifold_align.evaluate.suite.summary_metrics] picks the headline numbers as a flat
``{name: float}``, named as the trainer's periodic evaluation names them in
``metrics.jsonl`` (`SyntheticEvaluator` wraps the two as the trainer's
``evaluate(model, step)``, so periodic and final evaluation agree).
[table_retrieval][manifold_align.evaluate.suite.table_retrieval] runs retrieval and the geometry diagnostics on a
user's own CSV/TSV table of image paths and captions (several captions per image allowed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from manifold_align.data.skipped import (
    BAD_CAPTION,
    BAD_ROW,
    EMPTY_CAPTION,
    MISSING_CAPTION,
    SampleError,
    SkippedSamples,
)
from manifold_align.data.synthetic import (
    ATTRIBUTES,
    ZERO_SHOT_TASKS,
    SyntheticCaptions,
    SyntheticConfig,
    SyntheticZeroShot,
    ZeroShotTask,
)
from manifold_align.data.tabular import CaptionTable
from manifold_align.data.transforms import ImageTransform
from manifold_align.evaluate.encode import (
    Precision,
    encode_captions,
    encode_images,
    evaluating,
    text_encoder,
)
from manifold_align.evaluate.geometry import geometry_diagnostics
from manifold_align.evaluate.retrieval import retrieval_recall
from manifold_align.evaluate.zeroshot import build_classifier_from_prompts, classify

__all__ = [
    "HeldOut",
    "SyntheticEvaluator",
    "evaluate_model",
    "summary_metrics",
    "synthetic_heldout",
    "table_retrieval",
]


@dataclass(frozen=True)
class HeldOut:
    """Rendered held-out data.

    Attributes:
        zeroshot_images: ``(N_z, 3, s, s)`` float32, transformed.
        zeroshot_labels: attribute -> ``(N_z,)`` int64 label indices.
        tasks: attribute -> [ZeroShotTask][manifold_align.data.synthetic.ZeroShotTask].
        retrieval_images: ``(N_r, 3, s, s)`` float32, transformed.
        retrieval_captions: ``N_r`` distinct captions, caption ``i`` for image ``i``.
        retrieval_scanned: scenes looked at to find ``N_r`` distinct captions.
    """

    zeroshot_images: torch.Tensor
    zeroshot_labels: dict[str, torch.Tensor]
    tasks: dict[str, ZeroShotTask]
    retrieval_images: torch.Tensor
    retrieval_captions: list[str]
    retrieval_scanned: int


def synthetic_heldout(
    *,
    zeroshot_samples: int = 1000,
    retrieval_samples: int = 1000,
    seed: int = 0,
    image_size: int = 64,
    config: SyntheticConfig | None = None,
    transform: Callable | None = None,
    attributes: Sequence[str] = ATTRIBUTES,
    max_scan_factor: int = 50,
) -> HeldOut:
    """Render the ``zeroshot`` and ``retrieval`` splits of the synthetic data.

    Args:
        zeroshot_samples: images for zero-shot classification (``0`` skips it).
        retrieval_samples: image-caption pairs with distinct captions (``0`` skips it).
        seed: the data seed (use the training seed; the splits keep the streams apart).
        image_size: side in pixels (the model's input size).
        config: appearance settings (use the training ones).
        transform: PIL image -> ``(3, s, s)``; defaults to ``ImageTransform(image_size)``
            (resize, centre crop, CLIP normalisation), the evaluation path of training.
        attributes: which zero-shot tasks to label.
        max_scan_factor: look at no more than ``max_scan_factor * retrieval_samples`` scenes
            for distinct captions.

    Raises:
        ValueError: a negative size, both sizes 0, an unknown attribute, or fewer than
            ``retrieval_samples`` distinct captions within the scan limit.
    """
    for name, value in (
        ("zeroshot_samples", zeroshot_samples),
        ("retrieval_samples", retrieval_samples),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
    if zeroshot_samples == 0 and retrieval_samples == 0:
        raise ValueError("zeroshot_samples, retrieval_samples: both are 0, nothing to evaluate")
    unknown = [a for a in attributes if a not in ZERO_SHOT_TASKS]
    if unknown:
        raise ValueError(f"attributes: unknown {unknown}, expected some of {list(ZERO_SHOT_TASKS)}")
    transform = ImageTransform(image_size) if transform is None else transform
    empty = torch.empty(0, 3, image_size, image_size)

    zs_images, labels = empty, {a: torch.empty(0, dtype=torch.long) for a in attributes}
    if zeroshot_samples:  # the split SyntheticZeroShot reads, labelled by every attribute
        split = SyntheticZeroShot(ATTRIBUTES[0], zeroshot_samples, seed, image_size, config)
        zs_images = torch.stack([transform(split[i][0]) for i in range(zeroshot_samples)])
        labels = split.labels(attributes)

    rt_images, captions, scanned = empty, [], 0
    if retrieval_samples:
        limit = max_scan_factor * retrieval_samples
        ds = SyntheticCaptions("retrieval", limit, seed, image_size, 0.0, config)
        seen: set[str] = set()
        images = []
        while len(captions) < retrieval_samples and scanned < limit:
            scene = ds.scene(scanned)
            scanned += 1
            text = scene.describe(clean=True)
            if text in seen:
                continue
            seen.add(text)
            captions.append(text)
            images.append(transform(ds.render(scene)))
        if len(captions) < retrieval_samples:
            raise ValueError(
                f"retrieval_samples: only {len(captions)} distinct captions among {scanned} "
                f"scenes, {retrieval_samples} asked for"
            )
        rt_images = torch.stack(images)
    return HeldOut(
        zs_images,
        labels,
        {a: ZERO_SHOT_TASKS[a] for a in attributes},
        rt_images,
        captions,
        scanned,
    )


#: Reasons that spoil one row's caption, not its image (the image's other rows still count).
CAPTION_REASONS = (BAD_ROW, MISSING_CAPTION, EMPTY_CAPTION, BAD_CAPTION)


def _scale(model: nn.Module) -> float | None:
    temperature = getattr(model, "temperature", None)
    scale = getattr(temperature, "scale", None)
    return None if scale is None else float(torch.as_tensor(scale).detach())


def evaluate_model(
    model: nn.Module,
    tokenize: Callable[[list[str]], torch.Tensor],
    heldout: HeldOut,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    precision: Precision = "fp32",
    karcher: bool = False,
    chunk_size: int = 1024,
    uniformity_points: int | None = 4096,
) -> dict[str, Any]:
    """Zero-shot accuracy per attribute, retrieval recall both ways, geometry diagnostics.

    Runs with ``model`` in eval mode (its mode is restored) and without gradients.

    Args:
        model: a two-tower model (``encode_image``, ``encode_text``, ``manifold``; its
            ``temperature.scale`` gives the logit units of the gap).
        tokenize: strings -> token ids, e.g. the run's tokenizer.
        heldout: from [synthetic_heldout][manifold_align.evaluate.suite.synthetic_heldout].
        batch_size: images or prompts per forward pass.
        device: where to run; the model's device by default.
        precision: ``"bf16"`` for bfloat16 autocast in the towers.
        karcher: average prompt ensembles with the Karcher mean.
        chunk_size: queries per block in retrieval and classification.
        uniformity_points: subsample for the uniformity (``None``: all points).

    Returns:
        ``{"zeroshot": {attribute: classify(...)}, "zeroshot_mean_top1": float,
        "retrieval": retrieval_recall(...), "geometry": geometry_diagnostics(...),
        "manifold": repr, "scale": float | None}``; parts whose split is empty are left out.
    """
    manifold = model.manifold
    out: dict[str, Any] = {"manifold": repr(manifold), "scale": _scale(model)}
    common = {"batch_size": batch_size, "device": device, "precision": precision}
    with evaluating(model):
        if heldout.zeroshot_images.shape[0]:
            points = encode_images(model, heldout.zeroshot_images, **common)
            out["zeroshot"] = {}
            encoder = text_encoder(model, device, precision)
            for attribute, task in heldout.tasks.items():
                classes = build_classifier_from_prompts(
                    encoder,
                    tokenize,
                    task.prompts(),
                    manifold,
                    karcher=karcher,
                    batch_size=batch_size,
                )
                result = classify(
                    points,
                    classes,
                    manifold,
                    heldout.zeroshot_labels[attribute],
                    chunk_size=chunk_size,
                )
                result["classnames"] = list(task.classnames)
                out["zeroshot"][attribute] = result
            tops = [r["top1"] for r in out["zeroshot"].values()]
            out["zeroshot_mean_top1"] = sum(tops) / len(tops)
        if heldout.retrieval_images.shape[0]:
            image_points = encode_images(model, heldout.retrieval_images, **common)
            text_points = encode_captions(model, tokenize, heldout.retrieval_captions, **common)
            out["retrieval"] = retrieval_recall(
                image_points,
                text_points,
                manifold,
                chunk_size=chunk_size,
                candidate_chunk_size=max(chunk_size, 4096),
            )
            out["geometry"] = geometry_diagnostics(
                image_points,
                text_points,
                manifold,
                scale=out["scale"],
                uniformity_max_points=uniformity_points,
                chunk_size=chunk_size,
            )
    return out


def summary_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """The headline numbers of [evaluate_model][manifold_align.evaluate.suite.evaluate_model]'s result as a flat ``{name: float}``.

    Names: ``zeroshot/<attribute>/top1``, ``zeroshot/mean_top1``,
    ``retrieval/image_to_text@{1,5,10}``, ``retrieval/text_to_image@{1,5,10}``,
    ``geometry/gap``, ``geometry/gap_logits``, ``geometry/alignment``,
    ``geometry/uniformity_image`` (those present).
    """
    flat: dict[str, float] = {}
    for attribute, result in results.get("zeroshot", {}).items():
        flat[f"zeroshot/{attribute}/top1"] = float(result["top1"])
    if "zeroshot_mean_top1" in results:
        flat["zeroshot/mean_top1"] = float(results["zeroshot_mean_top1"])
    for key, value in results.get("retrieval", {}).items():
        if "@" in key:
            flat[f"retrieval/{key}"] = float(value)
    geometry = results.get("geometry")
    if geometry:
        sim = geometry["similarity"]
        flat["geometry/gap"] = float(sim["gap"])
        if "gap_logits" in sim:
            flat["geometry/gap_logits"] = float(sim["gap_logits"])
        flat["geometry/alignment"] = float(geometry["alignment"])
        flat["geometry/uniformity_image"] = float(geometry["uniformity_image"])
    return {k: v for k, v in flat.items() if math.isfinite(v)}


class SyntheticEvaluator:
    """``evaluator(model, step) -> {metric: value}`` on held-out synthetic images.

    The trainer's periodic evaluation: `synthetic_heldout` rendered once, when the evaluator
    is built, then `evaluate_model` and `summary_metrics` at each call (zero-shot per
    attribute with top-1/top-5 and chance, retrieval recall@1/5/10 both ways, geometry), so
    each evaluation costs only the forward passes.

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


def table_retrieval(
    model: nn.Module,
    tokenize: Callable[[list[str]], torch.Tensor],
    table: CaptionTable,
    *,
    transform: Callable | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    precision: Precision = "fp32",
    chunk_size: int = 1024,
    uniformity_points: int | None = 4096,
) -> dict[str, Any]:
    """Retrieval recall and geometry on a CSV/TSV table; rows naming the same file are one
    image with several captions.

    Images are read, transformed and encoded ``batch_size`` at a time (only points are
    kept). Unusable rows are skipped and counted, never raised and never dropped silently:
    a row whose caption is unusable (`CaptionTable.caption`: missing, empty, not UTF-8, an
    unparsable row); every row of an image that is missing or cannot be decoded (counted
    per row, under the image's reason).

    Args:
        model: a two-tower model.
        tokenize: strings -> token ids.
        table: the [CaptionTable][manifold_align.data.tabular.CaptionTable].
        transform: PIL image -> ``(3, s, s)``; defaults to ``ImageTransform(image_size)``.
        batch_size: images or captions per forward pass.
        device: where to run; the model's device by default.
        precision: ``"bf16"`` for bfloat16 autocast in the towers.
        chunk_size: queries per retrieval block.
        uniformity_points: subsample for the uniformity (``None``: all points).

    Returns:
        ``{"retrieval": retrieval_recall(...), "geometry": geometry_diagnostics(...),
        "rows": int, "images": int, "captions": int, "skipped": SkippedSamples.to_dict()}``.

    Raises:
        ValueError: if fewer than 2 images with a usable caption remain.
    """
    transform = ImageTransform(model.vision.image_size) if transform is None else transform
    skipped = SkippedSamples()
    groups: dict[str, list[int]] = {}
    for row in range(len(table)):
        groups.setdefault(str(table.resolve(row)), []).append(row)

    captions: list[str] = []
    owners: list[int] = []
    batches: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []
    common = {"batch_size": batch_size, "device": device, "precision": precision}
    with evaluating(model):
        for rows in groups.values():
            image, texts, failure = None, [], None
            for row in rows:
                if failure is not None:  # the image is unreadable: so is every row of it
                    skipped.record(failure.reason, table.key(row), failure.detail)
                    continue
                try:  # the image is read once, with its first usable row
                    text = table.caption(row) if image is not None else None
                    if image is None:
                        image, text = table.load(row)
                except SampleError as exn:
                    skipped.record(exn.reason, exn.key, exn.detail)
                    if exn.reason not in CAPTION_REASONS:
                        failure = exn
                    continue
                texts.append(text)
            if image is None:
                continue
            index = len(batches) * batch_size + len(pending)
            pending.append(transform(image))
            captions.extend(texts)
            owners.extend([index] * len(texts))
            if len(pending) == batch_size:
                batches.append(encode_images(model, torch.stack(pending), **common))
                pending = []
        if pending:
            batches.append(encode_images(model, torch.stack(pending), **common))
        if not batches or sum(b.shape[0] for b in batches) < 2:
            raise ValueError(
                f"table: {table.path} has fewer than 2 readable images with a caption "
                f"({skipped.total} rows skipped)"
            )
        image_points = torch.cat(batches)
        text_points = encode_captions(model, tokenize, captions, **common)
    owner = torch.tensor(owners, dtype=torch.long, device=image_points.device)
    return {
        "retrieval": retrieval_recall(
            image_points,
            text_points,
            model.manifold,
            caption_to_image=owner,
            chunk_size=chunk_size,
            candidate_chunk_size=max(chunk_size, 4096),
        ),
        "geometry": geometry_diagnostics(
            image_points,
            text_points,
            model.manifold,
            scale=_scale(model),
            caption_to_image=owner,
            uniformity_max_points=uniformity_points,
            chunk_size=chunk_size,
        ),
        "rows": len(table),
        "images": image_points.shape[0],
        "captions": len(captions),
        "skipped": skipped.to_dict(),
    }
