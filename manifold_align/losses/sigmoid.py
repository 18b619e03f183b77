"""SigLIP's pairwise sigmoid loss on any manifold, with a learnable logit bias."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from manifold_align.losses.output import LossOutput, pair_diagnostics
from manifold_align.losses.temperature import Temperature, as_temperature
from manifold_align.losses.validation import check_finite_scalar, check_logits, flat_pair
from manifold_align.manifolds.base import ContrastiveManifold

__all__ = ["SigmoidLoss", "sigmoid_from_logits"]


def sigmoid_from_logits(logits: torch.Tensor, bias: torch.Tensor | float) -> torch.Tensor:
    """SigLIP's loss: every pair an independent binary label, positives on the diagonal.

    Math: with ``t = logits + bias`` and ``z_ij = +1`` if ``i == j`` else ``-1``,
    ``L = -1/B sum_ij log sigmoid(z_ij t_ij) = 1/B (sum_ij softplus(t_ij) - sum_i t_ii)``
    (``log sigmoid(t) - log sigmoid(-t) = t``, so no label matrix is built). Normalised by
    ``B``, not ``B^2``, as in SigLIP. Computed in float32 (float64 stays float64) even under
    autocast.

    Args:
        logits: ``(*batch, B, B)`` scaled similarities, row ``i`` pairs with column ``i``.
        bias: a 0-dim tensor or number, or a tensor broadcastable to ``(*batch, 1, 1)``.

    Returns:
        ``(*batch,)`` losses.

    Raises:
        TypeError: ``logits`` is not a floating tensor.
        ValueError: ``logits`` is not square in its last two dimensions.
    """
    logits = check_logits(logits)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        dtype = torch.promote_types(logits.dtype, torch.float32)
        t = logits.to(dtype) + torch.as_tensor(bias, device=logits.device).to(dtype)
        b = logits.shape[-1]
        return (F.softplus(t).sum(dim=(-2, -1)) - t.diagonal(dim1=-2, dim2=-1).sum(dim=-1)) / b


class SigmoidLoss(nn.Module):
    """SigLIP's sigmoid loss with the manifold's similarity, a temperature and a learnable bias.

    Math: ``t = scale * similarity(image, text) + logit_bias``,
    ``L = 1/B (sum_ij softplus(t_ij) - sum_i t_ii)`` (see :func:`sigmoid_from_logits`).

    Args:
        manifold: the manifold the embeddings live on.
        temperature: a :class:`Temperature`; a number means ``Temperature.fixed(number)``;
            ``None`` means ``Temperature.none()``. (SigLIP itself uses
            ``Temperature.learnable(init=10)``.)
        bias_init: initial value of the trainable 0-dim parameter ``logit_bias``.
        check_finite: reject NaN/Inf features, scale or bias, naming ``image``, ``text``,
            ``temperature`` or ``logit_bias`` (costs device synchronisations on every call).

    Raises:
        TypeError: ``manifold`` is not a ``ContrastiveManifold``; bad ``temperature`` type.
        ValueError: ``bias_init`` not finite.
    """

    def __init__(
        self,
        manifold: ContrastiveManifold,
        temperature: Temperature | float | None = None,
        bias_init: float = -10.0,
        check_finite: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(manifold, ContrastiveManifold):
            raise TypeError(
                f"manifold: expected a ContrastiveManifold, got {type(manifold).__name__}"
            )
        if not math.isfinite(float(bias_init)):
            raise ValueError(f"bias_init: expected a finite number, got {bias_init!r}")
        self.manifold = manifold
        self.temperature = as_temperature(temperature)
        self.logit_bias = nn.Parameter(torch.tensor(float(bias_init), dtype=torch.float32))
        self.check_finite = bool(check_finite)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> LossOutput:
        """Loss and diagnostics for paired batches.

        Args:
            image: ``(B, *manifold.point_shape)``.
            text: ``(B, *manifold.point_shape)``; row ``i`` is the caption of image ``i``.

        Returns:
            :class:`LossOutput`; diagnostics ``scale``, ``pos_sim``, ``neg_sim``,
            ``gap_logits`` and ``bias``.

        Raises:
            ValueError: wrong point shape, different batch lengths, empty batch, or (with
                ``check_finite``) NaN/Inf features, scale or bias; the message names it.
            TypeError: non-floating features or features on different devices.
        """
        x, y = flat_pair(self.manifold, image, text, check_finite=self.check_finite)
        scale = self.temperature.scale.to(device=x.device, dtype=x.dtype)
        if self.check_finite:
            check_finite_scalar(scale, "temperature")
            check_finite_scalar(self.logit_bias, "logit_bias")
        with torch.autocast(device_type=x.device.type, enabled=False):
            m = self.manifold
            logits = m.similarity(m.unflatten(x * scale), m.unflatten(y))
            loss = sigmoid_from_logits(logits, self.logit_bias)
        diagnostics = pair_diagnostics(x, y, scale)
        diagnostics["bias"] = self.logit_bias.detach().float()
        return LossOutput(loss, diagnostics)

    def extra_repr(self) -> str:
        return f"bias={float(self.logit_bias.detach()):.4g}, check_finite={self.check_finite}"
