"""Turn ``(image, caption)`` samples into training batches, counting skipped samples.

``Collate(tokenizer, transform)`` is a ``DataLoader`` ``collate_fn``: the samples of a batch
become ``Batch(images, tokens, skipped)`` with

* ``images``: float32 ``(B, 3, s, s)``, each image through ``transform``;
* ``tokens``: int64 ``(B, L)``, the captions through ``tokenizer`` (SOT, text, EOT, pad);
* ``skipped``: a [SkippedSamples][manifold_align.data.skipped.SkippedSamples] counting the
  [SkippedSample][manifold_align.data.skipped.SkippedSample] markers that readers put in place of
  unreadable samples.

Markers are removed, so ``B`` is the number of readable samples (the loader's batch size
minus the skipped ones; possibly 0). Because ``collate_fn`` runs in the worker that built
the batch, the record rides along with the batch to the training process, where the
trainer sums the records and logs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from manifold_align.data.skipped import SkippedSample, SkippedSamples
from manifold_align.data.tokenizer import Tokenizer

__all__ = ["Batch", "Collate"]


class Batch(NamedTuple):
    """One training batch.

    Attributes:
        images: float32 ``(B, 3, H, W)``.
        tokens: int64 ``(B, L)``.
        skipped: unreadable samples met while this batch was assembled.
    """

    images: torch.Tensor
    tokens: torch.Tensor
    skipped: SkippedSamples


def _image_tensor(image: Any) -> torch.Tensor:
    """A sample's image when no transform is given: uint8/float tensor or PIL -> float32."""
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
    if isinstance(image, torch.Tensor):
        return image.float().div(255.0) if image.dtype == torch.uint8 else image.float()
    raise TypeError(f"image: got {type(image).__name__}, expected a PIL image or a tensor")


class Collate:
    """``collate_fn`` for ``(image, caption)`` samples; see the module docstring.

    Args:
        tokenizer: encodes the captions to ``(B, L)``.
        transform: image -> float tensor ``(3, s, s)`` (e.g.
            [ImageTransform][manifold_align.data.transforms.ImageTransform]); ``None`` takes PIL
            images or tensors as they are (they must share a size).
        context_length: ``L``; defaults to the tokenizer's.
        max_examples: example keys kept per skip reason.

    Raises (when called):
        TypeError: if a sample is neither a marker nor an ``(image, caption)`` pair, or a
            caption is not a string.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        context_length: int | None = None,
        max_examples: int = 5,
    ) -> None:
        self.tokenizer = tokenizer
        self.transform = transform
        self.context_length = (
            tokenizer.context_length if context_length is None else int(context_length)
        )
        self.max_examples = max_examples

    def __call__(self, samples: Sequence[Any]) -> Batch:
        skipped = SkippedSamples(self.max_examples)
        images, captions = [], []
        for i, sample in enumerate(samples):
            if isinstance(sample, SkippedSample):
                skipped.add(sample)
                continue
            if not isinstance(sample, tuple | list) or len(sample) != 2:
                raise TypeError(
                    f"samples[{i}]: got {type(sample).__name__}, expected an (image, caption) pair "
                    "or a SkippedSample"
                )
            image, caption = sample
            if not isinstance(caption, str):
                raise TypeError(f"samples[{i}] caption: got {type(caption).__name__}, expected str")
            images.append(
                self.transform(image) if self.transform is not None else _image_tensor(image)
            )
            captions.append(caption)
        if images:
            stacked = torch.stack(images)
        else:
            side = getattr(self.transform, "image_size", 0)
            stacked = torch.empty((0, 3, side, side), dtype=torch.float32)
        tokens = (
            self.tokenizer(captions, self.context_length)
            if captions
            else torch.empty((0, self.context_length), dtype=torch.long)
        )
        return Batch(stacked, tokens, skipped)

    def __repr__(self) -> str:
        return (
            f"Collate({self.tokenizer!r}, {self.transform!r}, context_length={self.context_length})"
        )
