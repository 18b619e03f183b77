"""Periodic evaluation during training on the bundled synthetic data's held-out splits.

The evaluation images are rendered once (when the evaluator is built) and kept as tensors,
so each periodic evaluation costs only the forward passes:

* zero-shot classification of each attribute (shape, colour, size, position) on the
  ``zeroshot`` split, with the task's prompt ensemble averaged on the manifold, top-1 and
  top-5 (capped at the number of classes) next to chance ``k / C``;
* image-to-text and text-to-image recall@1/5/10 on the ``retrieval`` split (clean captions).

The metric functions are :mod:`manifold_align.evaluate`'s.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from manifold_align.data.synthetic import (
    ATTRIBUTES,
    ZERO_SHOT_TASKS,
    SyntheticCaptions,
    SyntheticConfig,
)
from manifold_align.data.transforms import ImageTransform
from manifold_align.evaluate.encode import encode_images, encode_tokens
from manifold_align.evaluate.retrieval import retrieval_recall
from manifold_align.evaluate.zeroshot import build_classifier_from_prompts, classify

__all__ = ["SyntheticEvaluator"]


class SyntheticEvaluator:
    """``evaluator(model, step) -> {metric: value}`` on held-out synthetic images.

    Metric names: ``zeroshot/<attribute>/top1``, ``.../top5`` (or ``top{C}`` when the task has
    fewer than 5 classes), ``zeroshot/<attribute>/chance_top1``, ``zeroshot/mean_top1``,
    ``retrieval/image_to_text@k``, ``retrieval/text_to_image@k``.

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
        ValueError: if both sample counts are ``0`` or ``batch_size < 1``.
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
        transform = ImageTransform(image_size)

        def render(split: str, n: int) -> tuple[SyntheticCaptions, torch.Tensor]:
            ds = SyntheticCaptions(split, n, seed, image_size, 0.0, appearance)
            return ds, torch.stack([transform(ds.render(ds.scene(i))) for i in range(n)])

        self.zeroshot: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None
        if zeroshot_samples > 0:
            ds, images = render("zeroshot", zeroshot_samples)
            labels = [ds.labels(i) for i in range(zeroshot_samples)]
            targets = {a: torch.tensor([lab[a] for lab in labels]) for a in ATTRIBUTES}
            self.zeroshot = (images, targets)
        self.retrieval: tuple[torch.Tensor, list[str]] | None = None
        if retrieval_samples > 0:
            ds, images = render("retrieval", retrieval_samples)
            self.retrieval = (images, [ds.clean_caption(i) for i in range(retrieval_samples)])

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, step: int = 0) -> dict[str, float]:
        """Evaluate ``model`` (a two-tower model) now; ``step`` is for the caller's logs."""
        out: dict[str, float] = {}
        manifold = model.manifold
        bs, prec = self.batch_size, self.precision
        if self.zeroshot is not None:
            images, targets = self.zeroshot
            points = encode_images(model, images, batch_size=bs, precision=prec)
            top1 = []
            for attribute in ATTRIBUTES:
                task = ZERO_SHOT_TASKS[attribute]
                classes = build_classifier_from_prompts(
                    model.encode_text, self.tokenize, task.prompts(), manifold, batch_size=bs
                )
                res = classify(points, classes, manifold, targets[attribute].to(points.device))
                for key, value in res.items():
                    if key.startswith(("top", "chance_top")):
                        out[f"zeroshot/{attribute}/{key}"] = float(value)
                top1.append(float(res["top1"]))
            out["zeroshot/mean_top1"] = sum(top1) / len(top1)
        if self.retrieval is not None:
            images, captions = self.retrieval
            img = encode_images(model, images, batch_size=bs, precision=prec)
            tokens = self.tokenize(captions)
            txt = encode_tokens(model, tokens, batch_size=bs, precision=prec)
            res = retrieval_recall(img, txt, manifold, ks=(1, 5, 10))
            for key, value in res.items():
                if "@" in key:
                    out[f"retrieval/{key}"] = float(value)
        return out
