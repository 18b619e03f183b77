"""CLIP's symmetric InfoNCE on any manifold: dense (one B x B matmul) or tiled."""

from __future__ import annotations

import torch
from torch import nn

from manifold_align.losses.output import (
    LossOutput,
    pair_diagnostics,
    pair_logits_and_similarity,
)
from manifold_align.losses.temperature import Temperature, resolve_temperature
from manifold_align.losses.tiled import tiled_info_nce
from manifold_align.losses.validation import (
    check_finite_scalar,
    check_logits,
    check_tile_size,
    first_order_only,
    flat_pair,
)
from manifold_align.manifolds.base import ContrastiveManifold

__all__ = ["InfoNCE", "info_nce_from_logits"]


_ROWS = 1024  # rows per chunk of the column term in the dense backward


class _SymmetricCE(torch.autograd.Function):
    """Symmetric cross-entropy of ``(*batch, B, B)`` logits with a hand-written backward.

    Saves the logits and ``O(B)`` logsumexps; the backward builds
    $\\partial L/\\partial \\ell_{ij} = \\big(e^{\\ell_{ij} - \\operatorname{lse}_k \\ell_{ik}} +
    e^{\\ell_{ij} - \\operatorname{lse}_k \\ell_{kj}} - 2[i = j]\\big) / (2B)$ in the
    one buffer it returns, adding the column term ``_ROWS`` rows at a time: peak memory is the
    saved logits, the gradient and a ``_ROWS x B`` temporary, where autograd through two
    ``logsumexp`` calls would hold several ``B x B`` temporaries.
    """

    @staticmethod
    def forward(ctx, logits):  # type: ignore[override]
        rows = torch.logsumexp(logits, dim=-1)
        cols = torch.logsumexp(logits, dim=-2)
        pos = logits.diagonal(dim1=-2, dim2=-1)
        ctx.save_for_backward(logits, rows, cols)
        return 0.5 * (rows.mean(dim=-1) + cols.mean(dim=-1)) - pos.mean(dim=-1)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        first_order_only("info_nce_from_logits")
        logits, rows, cols = ctx.saved_tensors
        with torch.autocast(device_type=logits.device.type, enabled=False):
            g = (logits - rows.unsqueeze(-1)).exp_()
            cols = cols.unsqueeze(-2)
            for start in range(0, logits.shape[-2], _ROWS):
                chunk = logits[..., start : start + _ROWS, :]
                g[..., start : start + _ROWS, :].add_((chunk - cols).exp_())
            g.diagonal(dim1=-2, dim2=-1).sub_(2.0)
            return g.mul_((grad_output / (2 * logits.shape[-1]))[..., None, None])


def info_nce_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Mean symmetric softmax cross-entropy of square logits whose diagonal holds the positives.

    Math: $L = \\frac{1}{2B}\\sum_i (\\operatorname{lse}_j \\ell_{ij} - \\ell_{ii}) +
    \\frac{1}{2B}\\sum_j (\\operatorname{lse}_i \\ell_{ij} - \\ell_{jj})$, i.e. CLIP's
    ``(CE(l, arange) + CE(l.T, arange)) / 2`` from one matrix: the text side is the column
    logsumexp of the same logits, not a second product. Computed in float32 (float64 stays
    float64) even under autocast; the backward is hand-written (one ``B x B`` buffer) and
    supports first-order gradients only: ``create_graph=True`` through it raises.

    Args:
        logits: ``(*batch, B, B)``; row ``i`` is image ``i``, column ``j`` text ``j``.

    Returns:
        ``(*batch,)`` losses (a 0-dim tensor for ``(B, B)`` input).

    Raises:
        TypeError: ``logits`` is not a floating tensor.
        ValueError: ``logits`` is not square in its last two dimensions.
    """
    logits = check_logits(logits)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return _SymmetricCE.apply(logits)


class InfoNCE(nn.Module):
    r"""CLIP's symmetric InfoNCE with the manifold's similarity and a temperature object.

    Math: $S = s\\,\\mathrm{sim}(X, Y)$ ($B \\times B$),
    $L = \\frac{1}{2B}\\sum_i (\\operatorname{lse}_j S_{ij} - S_{ii}) +
    \\frac{1}{2B}\\sum_j (\\operatorname{lse}_i S_{ij} - S_{jj})$.

    The dense path builds ``S`` once (the text side reads its columns); the tiled path
    (``tile_size`` set) never holds more than a few ``tile_size x B`` strips, recomputes them
    in a hand-written backward, and relies on ``similarity(x, y) == flatten(x) @
    flatten(y).T`` (a `bilinear` manifold: all but `Lorentz` and products with it, for which
    the dense path scales the similarity instead of the features). Both run in float32 (float64
    stays float64) even under autocast.

    Args:
        manifold: the manifold the embeddings live on.
        temperature_obj: (positional) a
            [Temperature][manifold_align.losses.temperature.Temperature], or ``None`` for scale 1. A
            bare number here raises ``TypeError``: CLIP's temperature 0.07 is a scale of 14.3, so
            say which with a keyword.
        temperature: (keyword) a [Temperature][manifold_align.losses.temperature.Temperature], or a
            number ``tau``: a fixed scale ``1 / tau`` (``temperature=0.07`` is CLIP's initial scale
            14.3).
        scale: (keyword) a number: ``Temperature.fixed(scale)``, exactly that scale.
        tile_size: ``None`` for dense, else rows per strip of the tiled path.
        check_finite: reject NaN/Inf features with a ``ValueError`` naming ``image`` or
            ``text``, and a non-finite scale naming ``temperature``. It costs device
            synchronisations on every call; the trainer turns it on in its debug mode.
        check_points: reject features off the manifold with a ``ValueError`` naming
            ``image`` or ``text``, the deviation (`ContrastiveManifold.deviation`, e.g.
            $\max_i |\|x_i\| - 1|$) and the tolerance (`MEMBERSHIP_ATOL`); NaN features are
            ``check_finite``'s. On by default: O(B D) work next to the loss's O(B^2 D) and one device
            synchronisation (measured in docs/losses.md); ``False`` skips it.

    Raises:
        TypeError: ``manifold`` is not a ``ContrastiveManifold``; a bare number or another type
            as ``temperature_obj``; more than one of ``temperature_obj``, ``temperature=``,
            ``scale=``.
        ValueError: ``tile_size`` not a positive int, or set for a manifold that is not
            bilinear; a non-positive scale or temperature;
            ``Temperature.learnable()``'s sphere defaults on a manifold whose similarity range
            is not ``[-1, 1]`` (use ``Temperature.learnable(manifold=...)``).
    """

    def __init__(
        self,
        manifold: ContrastiveManifold,
        temperature_obj: Temperature | None = None,
        /,
        tile_size: int | None = None,
        check_finite: bool = False,
        *,
        temperature: Temperature | float | None = None,
        scale: float | None = None,
        check_points: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(manifold, ContrastiveManifold):
            raise TypeError(
                f"manifold: expected a ContrastiveManifold, got {type(manifold).__name__}"
            )
        check_tile_size(tile_size)
        if tile_size is not None and not manifold.bilinear:
            raise ValueError(
                f"tile_size: the tiled InfoNCE needs a bilinear similarity (flat matmul), "
                f"{manifold!r} has none; use tile_size=None"
            )
        self.manifold = manifold
        self.temperature = resolve_temperature(manifold, temperature_obj, temperature, scale)
        self.tile_size = tile_size
        self.check_finite = bool(check_finite)
        self.check_points = bool(check_points)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> LossOutput:
        """Loss and diagnostics for paired batches.

        Args:
            image: ``(B, *manifold.point_shape)``.
            text: ``(B, *manifold.point_shape)``; row ``i`` is the caption of image ``i``.

        Returns:
            [LossOutput][manifold_align.losses.output.LossOutput] with the 0-dim loss and ``scale``,
            ``pos_sim``, ``neg_sim``, ``gap_logits``.

        Raises:
            ValueError: wrong point shape, different batch lengths, empty batch, (with
                ``check_finite``) NaN/Inf features or scale, or (with ``check_points``)
                features off the manifold; the message names the argument.
            TypeError: non-floating features or features on different devices.
        """
        x, y = flat_pair(
            self.manifold, image, text, check_finite=self.check_finite,
            check_points=self.check_points,
        )
        scale = self.temperature.scale_as(x.dtype, x.device)
        if self.check_finite:
            check_finite_scalar(scale, "temperature")
        sim = None  # a non-bilinear manifold's B x B similarity, formed once for both uses
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.tile_size is None:
                logits, sim = pair_logits_and_similarity(self.manifold, x, y, scale)
                loss = info_nce_from_logits(logits)
            else:
                loss = tiled_info_nce(x, y, scale, self.tile_size)
        return LossOutput(loss, pair_diagnostics(x, y, scale, self.manifold, similarity=sim))

    def extra_repr(self) -> str:
        mode = "dense" if self.tile_size is None else f"tile_size={self.tile_size}"
        return f"{mode}, check_finite={self.check_finite}"
