"""SigLIP's pairwise sigmoid loss on any manifold, with a learnable logit bias."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from manifold_align.losses.output import (
    LossOutput,
    pair_diagnostics,
    pair_logits_and_similarity,
)
from manifold_align.losses.temperature import Temperature, resolve_temperature
from manifold_align.losses.tiled import SIGMOID_TILE, TiledSigmoid
from manifold_align.losses.validation import (
    check_finite_scalar,
    check_logits,
    check_tile_size,
    flat_pair,
)
from manifold_align.manifolds.base import ContrastiveManifold

__all__ = ["SigmoidLoss", "pair_softplus", "sigmoid_from_logits", "softplus"]


def softplus(t: torch.Tensor) -> torch.Tensor:
    """$\\operatorname{softplus}(t) = \\log(1 + e^t)$, exact in every dtype: $-\\log\\sigma(-t)$.

    ``torch.nn.functional.softplus`` returns ``t`` itself above its threshold (20), so a
    positive pair at logit 25 costs 0 instead of $\\log(1 + e^{-25}) = 1.39 \\times 10^{-11}$
    in float64; ``logsigmoid``'s $\\min(t, 0) - \\operatorname{log1p}(e^{-|t|})$ form is exact
    and never overflows.
    """
    return -F.logsigmoid(-t)


def pair_softplus(t: torch.Tensor) -> torch.Tensor:
    """$\\sum_{ij} \\operatorname{softplus}(-z_{ij} t_{ij})$, $z = +1$ on the diagonal, else $-1$.

    The negative log-likelihood of SigLIP's labels summed over a ``(*batch, n, n)`` block whose
    positives sit on the diagonal. The positives' logits are negated before
    [softplus][manifold_align.losses.sigmoid.softplus] rather than subtracted after it
    ($\\operatorname{softplus}(t) - t$), so a confident positive keeps its
    $\\log(1 + e^{-t})$ cost even in float32. Returns ``(*batch,)``.
    """
    positives = t.diagonal(dim1=-2, dim2=-1)
    signed = t.diagonal_scatter(-positives, dim1=-2, dim2=-1)
    return softplus(signed).sum(dim=(-2, -1))


def sigmoid_from_logits(logits: torch.Tensor, bias: torch.Tensor | float) -> torch.Tensor:
    """SigLIP's loss over given logits: every pair an independent binary label, positives on the
    diagonal.

    Math: with $t = \\ell + b$ and $z_{ij} = +1$ if $i = j$ else $-1$,
    $L = -\\frac1B \\sum_{ij} \\log\\sigma(z_{ij} t_{ij}) = \\frac1B \\sum_{ij}
    \\operatorname{softplus}(-z_{ij} t_{ij})$, evaluated by negating the diagonal
    ([pair_softplus][manifold_align.losses.sigmoid.pair_softplus]; no label matrix), exact in
    every dtype: positives at logit 25 cost $\\log(1 + e^{-25}) = 1.39 \\times 10^{-11}$ each,
    not 0. Normalised by $B$, not $B^2$, as in SigLIP. Computed in float32 (float64 stays
    float64) even under autocast, through autograd (so it is twice differentiable). For
    features, [SigmoidLoss][manifold_align.losses.sigmoid.SigmoidLoss] never builds the logits.

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
    r"""SigLIP's sigmoid loss with the manifold's similarity, a temperature and a learnable bias.

    Math: $t = s\\,\\mathrm{sim}(X, Y) + b$ with $b$ the parameter ``logit_bias``,
    $L = \\frac1B \\sum_{ij} \\operatorname{softplus}(-z_{ij} t_{ij})$, $z = +1$ on the
    diagonal, else $-1$ (see
    [sigmoid_from_logits][manifold_align.losses.sigmoid.sigmoid_from_logits]).

    It never holds the ``B x B`` logits: the flat features go through the strip kernel
    [TiledSigmoid][manifold_align.losses.tiled.TiledSigmoid], one product per strip of
    ``tile_size`` rows, whose forward sweep also forms the gradients w.r.t. the features, the
    scale and the bias (three products of $B^2 D$ in all, the least a SigLIP can do) and saves
    only ``O(B D)``; the backward multiplies them by the incoming gradient. It relies on
    ``similarity(x, y) == flatten(x) @ flatten(y).T``, which every manifold of this library
    guarantees. Computed in float32 (float64 stays float64) even under autocast; first-order
    gradients only (``create_graph=True`` raises).

    Args:
        manifold: the manifold the embeddings live on.
        temperature_obj: (positional) a
            [Temperature][manifold_align.losses.temperature.Temperature], or ``None`` for scale 1
            (SigLIP itself uses ``Temperature.learnable(init=10)``). A bare number raises
            ``TypeError``.
        bias_init: initial value of the trainable 0-dim parameter ``logit_bias``.
        check_finite: reject NaN/Inf features, scale or bias, naming ``image``, ``text``,
            ``temperature`` or ``logit_bias`` (costs device synchronisations on every call).
        temperature: (keyword) a ``Temperature``, or a number $\\tau$: fixed scale $1/\\tau$.
        scale: (keyword) a number: ``Temperature.fixed(scale)``.
        tile_size: (keyword) rows per strip, ``None`` for 512; the working memory is about
            ``2 * 4 * tile_size * B`` bytes beyond the features and their gradients.
        check_points: reject features off the manifold with a ``ValueError`` naming
            ``image`` or ``text``, the deviation (`ContrastiveManifold.deviation`, e.g.
            $\max_i |\|x_i\| - 1|$) and the tolerance (`MEMBERSHIP_ATOL`); NaN features are
            ``check_finite``'s. On by default: O(B D) work next to the loss's O(B^2 D) and one device
            synchronisation (measured in docs/losses.md); ``False`` skips it.

    Raises:
        TypeError: ``manifold`` is not a ``ContrastiveManifold``; a bare number or another type
            as ``temperature_obj``; more than one way of giving the temperature.
        ValueError: ``bias_init`` not finite; ``tile_size`` not ``None`` or a positive int; a
            non-positive scale or temperature; sphere defaults on another range (as for
            [InfoNCE][manifold_align.losses.infonce.InfoNCE]).
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
        tile_size: int | None = None,
        check_points: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(manifold, ContrastiveManifold):
            raise TypeError(
                f"manifold: expected a ContrastiveManifold, got {type(manifold).__name__}"
            )
        if not math.isfinite(float(bias_init)):
            raise ValueError(f"bias_init: expected a finite number, got {bias_init!r}")
        check_tile_size(tile_size)
        self.manifold = manifold
        self.temperature = resolve_temperature(manifold, temperature_obj, temperature, scale)
        self.logit_bias = nn.Parameter(torch.tensor(float(bias_init), dtype=torch.float32))
        self.check_finite = bool(check_finite)
        self.check_points = bool(check_points)
        self.tile_size = tile_size

    @property
    def tile(self) -> int:
        """Rows per strip: ``tile_size``, or ``SIGMOID_TILE`` (512) when it is ``None``."""
        return SIGMOID_TILE if self.tile_size is None else self.tile_size

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> LossOutput:
        """Loss and diagnostics for paired batches.

        Args:
            image: ``(B, *manifold.point_shape)``.
            text: ``(B, *manifold.point_shape)``; row ``i`` is the caption of image ``i``.

        Returns:
            [LossOutput][manifold_align.losses.output.LossOutput]; diagnostics ``scale``,
            ``pos_sim``, ``neg_sim``, ``gap_logits`` and ``bias``.

        Raises:
            ValueError: wrong point shape, different batch lengths, empty batch, (with
                ``check_finite``) NaN/Inf features, scale or bias, or (with ``check_points``)
                features off the manifold; the message names it.
            TypeError: non-floating features or features on different devices.
        """
        x, y = flat_pair(
            self.manifold, image, text, check_finite=self.check_finite,
            check_points=self.check_points,
        )
        scale = self.temperature.scale_as(x.dtype, x.device)
        if self.check_finite:
            check_finite_scalar(scale, "temperature")
            check_finite_scalar(self.logit_bias, "logit_bias")
        sim = None
        with torch.autocast(device_type=x.device.type, enabled=False):
            bias = self.logit_bias.to(x.dtype)
            if self.manifold.bilinear:
                loss = TiledSigmoid.apply(x, y, scale, bias, self.tile, 0) / x.shape[0]
            else:  # e.g. Lorentz: the B x B similarity matrix (also the diagnostics'), autograd
                logits, sim = pair_logits_and_similarity(self.manifold, x, y, scale)
                loss = sigmoid_from_logits(logits, bias)
        diagnostics = pair_diagnostics(x, y, scale, self.manifold, similarity=sim)
        diagnostics["bias"] = self.logit_bias.detach().float()
        return LossOutput(loss, diagnostics)

    def extra_repr(self) -> str:
        return (
            f"bias={float(self.logit_bias.detach()):.4g}, tile_size={self.tile_size}, "
            f"check_finite={self.check_finite}"
        )
