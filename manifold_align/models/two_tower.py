"""The two-tower model: image and text encoders, a head each onto one manifold, and the loss.

$$x = h_v(f_v(\\text{images})) \\in \\mathcal{M}, \\qquad y = h_t(f_t(\\text{tokens})) \\in \\mathcal{M},
\\qquad \\mathcal{L} = \\mathrm{loss}(x, y),$$

where ``f_v``, ``f_t`` emit ``k`` token outputs each and ``h_v``, ``h_t`` are
[ManifoldHead][manifold_align.models.head.ManifoldHead] s onto the loss's manifold ``M``
(``Sphere(d)`` with ``k = 1``, or ``Oblique(k, d)``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from manifold_align.losses import EntailmentConeLoss, InfoNCE, LossOutput, SigmoidLoss, Temperature
from manifold_align.manifolds import ContrastiveManifold
from manifold_align.models.head import ManifoldHead
from manifold_align.models.text import TextTransformer
from manifold_align.models.vision import VisionTransformer

__all__ = ["Features", "TwoTower"]


class Features(NamedTuple):
    """Manifold points of a batch: ``image`` and ``text``, each ``(B, *point_shape)``."""

    image: torch.Tensor
    text: torch.Tensor


class TwoTower(nn.Module):
    """Image tower, text tower, their heads onto ``loss.manifold``, and the loss.

    The heads are built here, from the towers' widths and token counts and the loss's
    manifold, so the three always agree.

    Args:
        vision: the image encoder, ``(B, C, H, W) -> (B, k, W_v)``.
        text: the text encoder, ``(B, L) -> (B, k, W_t)``.
        loss: an [InfoNCE][manifold_align.losses.infonce.InfoNCE] or
            [SigmoidLoss][manifold_align.losses.sigmoid.SigmoidLoss]; its manifold is the embedding space
            and its temperature the model's.

    Attributes:
        vision, text: the towers. image_head, text_head: the [ManifoldHead][manifold_align.models.head.ManifoldHead] s.
        config: the [ModelConfig][manifold_align.models.registry.ModelConfig] it was built from
            (set by [build_model][manifold_align.models.registry.build_model]), else ``None``.

    Raises:
        TypeError: if ``loss`` is not one of the library's contrastive losses.
        ValueError: if a tower's token count ``k`` does not match the manifold (``Sphere``
            needs ``k = 1``, ``Oblique(k, d)`` needs ``k``), naming the tower.
    """

    def __init__(
        self,
        vision: VisionTransformer,
        text: TextTransformer,
        loss: InfoNCE | SigmoidLoss,
        *,
        entailment_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(loss, (InfoNCE, SigmoidLoss)):
            raise TypeError(f"loss: expected InfoNCE or SigmoidLoss, got {type(loss).__name__}")
        if not (math.isfinite(entailment_weight) and entailment_weight >= 0):
            raise ValueError(f"entailment_weight: expected a number >= 0, got {entailment_weight}")
        self.entailment_weight = float(entailment_weight)
        self.entailment = (
            EntailmentConeLoss(loss.manifold) if self.entailment_weight > 0 else None
        )
        self.vision = vision
        self.text = text
        self.loss = loss
        heads = {}
        for name, tower in (("vision", vision), ("text", text)):
            try:
                heads[name] = ManifoldHead(tower.width, loss.manifold, tower.tokens)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        self.image_head = heads["vision"]
        self.text_head = heads["text"]
        self.config: Any = None

    @property
    def manifold(self) -> ContrastiveManifold:
        """The embedding manifold (the loss's)."""
        return self.loss.manifold

    @property
    def temperature(self) -> Temperature:
        """The loss's [Temperature][manifold_align.losses.temperature.Temperature]; ``clamp_()`` it after a step."""
        return self.loss.temperature

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Turn per-block activation checkpointing on or off in both towers."""
        self.vision.transformer.grad_checkpointing = enable
        self.text.transformer.grad_checkpointing = enable

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, *manifold.point_shape)``, points on the manifold (float32).

        Raises:
            ValueError: wrong rank, channel count or image size (see
                `VisionTransformer.forward_features`).
        """
        return self.image_head(self.vision(images))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L) -> (B, *manifold.point_shape)``, points on the manifold (float32).

        Raises:
            ValueError: wrong rank, a length beyond ``context_length`` or ids outside the
                vocabulary. TypeError: non-integer tokens.
        """
        return self.text_head(self.text(tokens))

    def forward(
        self,
        images: torch.Tensor,
        tokens: torch.Tensor,
        *,
        return_features: bool = False,
    ) -> LossOutput | tuple[LossOutput, Features]:
        """Loss of a batch of pairs: ``loss(encode_image(images), encode_text(tokens))``.

        Args:
            images: ``(B, C, H, W)``.
            tokens: ``(B, L)``; row ``i`` is the caption of image ``i``.
            return_features: also return the points as [Features][manifold_align.models.two_tower.Features].

        Returns:
            The loss's ``LossOutput(loss, diagnostics)``, or ``(LossOutput, Features)``. With
            ``entailment_weight > 0`` the loss is ``contrastive + weight * cone`` and the
            diagnostics gain ``entailment`` and ``violated``.

        Raises:
            ValueError: if ``images`` and ``tokens`` hold different batch sizes, or either has
                a wrong shape.
        """
        if images.dim() >= 1 and tokens.dim() >= 1 and images.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"images, tokens: batch sizes differ, images {tuple(images.shape)} vs "
                f"tokens {tuple(tokens.shape)}"
            )
        features = Features(self.encode_image(images), self.encode_text(tokens))
        out = self.loss(features.image, features.text)
        if self.entailment is not None:  # MERU's cone term, per pair (see EntailmentConeLoss)
            cone = self.entailment(features.image, features.text)
            out = LossOutput(
                out.loss + self.entailment_weight * cone.loss, {**out.diagnostics, **cone.diagnostics}
            )
        return (out, features) if return_features else out
