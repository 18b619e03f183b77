"""SigLIP's pairwise sigmoid loss on any manifold, with a learnable logit bias."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from manifold_align.losses.output import LossOutput, pair_diagnostics, pair_logits
from manifold_align.losses.temperature import Temperature, resolve_temperature
from manifold_align.losses.validation import check_finite_scalar, check_logits, flat_pair
from manifold_align.manifolds.base import ContrastiveManifold

__all__ = ["SigmoidLoss", "pair_softplus", "sigmoid_from_logits", "softplus"]


def softplus(t: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(t))``, exact in every dtype: ``-logsigmoid(-t)``.

    ``torch.nn.functional.softplus`` returns ``t`` itself above its threshold (20), so a
    positive pair at logit 25 costs 0 instead of ``log(1 + exp(-25)) = 1.39e-11`` in float64;
    ``logsigmoid``'s ``min(t, 0) - log1p(exp(-|t|))`` form is exact and never overflows.
    """
    return -F.logsigmoid(-t)


def pair_softplus(t: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """``sum_ij softplus(-z_ij t_ij)`` with ``z = +1`` on the positives' diagonal, else ``-1``.

    The negative log-likelihood of SigLIP's labels summed over a ``(*batch, b, n)`` block whose
    positives sit on the diagonal at ``offset`` (``t_{i, i + offset}``). The positives'
    logits are negated before :func:`softplus` rather than subtracted after it
    (``softplus(t) - t``), so a confident positive keeps its ``log(1 + exp(-t))`` cost even
    in float32. Returns ``(*batch,)``.
    """
    positives = t.diagonal(offset=offset, dim1=-2, dim2=-1)
    signed = t.diagonal_scatter(-positives, offset=offset, dim1=-2, dim2=-1)
    return softplus(signed).sum(dim=(-2, -1))


def sigmoid_from_logits(logits: torch.Tensor, bias: torch.Tensor | float) -> torch.Tensor:
    """SigLIP's loss: every pair an independent binary label, positives on the diagonal.

    Math: with ``t = logits + bias`` and ``z_ij = +1`` if ``i == j`` else ``-1``,
    ``L = -1/B sum_ij log sigmoid(z_ij t_ij) = 1/B sum_ij softplus(-z_ij t_ij)``, evaluated by
    negating the diagonal (:func:`pair_softplus`; no label matrix), exact in every dtype:
    positives at logit 25 cost ``log(1 + exp(-25)) = 1.39e-11`` each, not 0. Normalised by
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
        return pair_softplus(t) / logits.shape[-1]


class SigmoidLoss(nn.Module):
    """SigLIP's sigmoid loss with the manifold's similarity, a temperature and a learnable bias.

    Math: ``t = scale * similarity(image, text) + logit_bias``,
    ``L = 1/B sum_ij softplus(-z_ij t_ij)``, ``z`` = +1 on the diagonal, else -1 (see
    :func:`sigmoid_from_logits`).

    Args:
        manifold: the manifold the embeddings live on.
        temperature_obj: (positional) a :class:`Temperature`, or ``None`` for scale 1 (SigLIP
            itself uses ``Temperature.learnable(init=10)``). A bare number raises ``TypeError``.
        temperature: (keyword) a :class:`Temperature`, or a number ``tau``: fixed scale ``1 / tau``.
        scale: (keyword) a number: ``Temperature.fixed(scale)``.
        bias_init: initial value of the trainable 0-dim parameter ``logit_bias``.
        check_finite: reject NaN/Inf features, scale or bias, naming ``image``, ``text``,
            ``temperature`` or ``logit_bias`` (costs device synchronisations on every call).

    Raises:
        TypeError: ``manifold`` is not a ``ContrastiveManifold``; a bare number or another type
            as ``temperature_obj``; more than one way of giving the temperature.
        ValueError: ``bias_init`` not finite; a non-positive scale or temperature; sphere
            defaults on another range (as for :class:`InfoNCE`).
    """

    def __init__(
        self,
        manifold: ContrastiveManifold,
        temperature_obj: Temperature | None = None,
        /,
        bias_init: float = -10.0,
        check_finite: bool = False,
        *,
        temperature: Temperature | float | None = None,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(manifold, ContrastiveManifold):
            raise TypeError(
                f"manifold: expected a ContrastiveManifold, got {type(manifold).__name__}"
            )
        if not math.isfinite(float(bias_init)):
            raise ValueError(f"bias_init: expected a finite number, got {bias_init!r}")
        self.manifold = manifold
        self.temperature = resolve_temperature(manifold, temperature_obj, temperature, scale)
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
        scale = self.temperature.scale_as(x.dtype, x.device)
        if self.check_finite:
            check_finite_scalar(scale, "temperature")
            check_finite_scalar(self.logit_bias, "logit_bias")
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = pair_logits(self.manifold, x, y, scale)
            loss = sigmoid_from_logits(logits, self.logit_bias)
        diagnostics = pair_diagnostics(x, y, scale, self.manifold)
        diagnostics["bias"] = self.logit_bias.detach().float()
        return LossOutput(loss, diagnostics)

    def extra_repr(self) -> str:
        return f"bias={float(self.logit_bias.detach()):.4g}, check_finite={self.check_finite}"
