r"""MERU's entailment-cone loss: each caption's cone in hyperbolic space contains its image.

A text point $x$ (generic) spans a cone whose apex is $x$ and whose axis points away from the
origin; its image $y$ (specific) should lie inside it. With $x_s$ the space part of $x$,
curvature $-c$ and a minimum radius $K$ (MERU: 0.1):

$$\omega(x) = \arcsin\Big(\frac{2K}{\sqrt c\,\|x_s\|}\Big) \quad\text{(half-aperture)},$$

$$\phi(x, y) = \arccos\Big(\frac{y_0 + c\langle x, y\rangle_L\, x_0}
{\|x_s\|\sqrt{(c\langle x, y\rangle_L)^2 - 1}}\Big) \quad\text{(exterior angle at } x
\text{ between the origin's direction and } y\text{)},$$

$$\mathcal L = \frac1B \sum_{i=1}^B \max\big(0,\ \phi(t_i, v_i) - \omega(t_i)\big).$$

Both arguments of $\arcsin$/$\arccos$ are clamped to $[-1 + \epsilon, 1 - \epsilon]$ and the
square root's argument to $\ge \epsilon$ ($\epsilon = 10^{-6}$), as MERU does, so the loss
and its gradient are finite at the origin and at identical points. Computed in float32
(float64 stays float64) with autocast off.

It is a sum over *positive pairs only* ($O(B)$): no pair of different rows meets, so there is
no $B \times B$ matrix to tile, and under data parallelism each rank takes the mean over its
own pairs; with equal per-rank batches the mean of the ranks' losses (what DDP's gradient
averaging computes) is exactly the full-batch loss, with no communication.
"""

from __future__ import annotations

import torch
from torch import nn

from manifold_align.losses.output import LossOutput
from manifold_align.manifolds.lorentz import Lorentz

__all__ = ["EntailmentConeLoss"]

_EPS = 1e-6


class EntailmentConeLoss(nn.Module):
    r"""$\mathcal L = \frac1B\sum_i \max(0, \phi(t_i, v_i) - \omega(t_i))$ on a `Lorentz` manifold.

    Weight it yourself: ``total = contrastive.loss + weight * cone(image, text).loss`` (MERU
    uses weight 0.2). The manifold's current curvature is used (a learnable one gets
    gradients).

    Args:
        manifold: the `Lorentz` manifold of the embeddings.
        min_radius: $K$, the radius near the origin below which the aperture is capped at
            $\pi/2$ (MERU: 0.1).

    Raises:
        TypeError: ``manifold`` is not a ``Lorentz``.
        ValueError: ``min_radius`` is not a positive number.
    """

    def __init__(self, manifold: Lorentz, min_radius: float = 0.1) -> None:
        super().__init__()
        if not isinstance(manifold, Lorentz):
            raise TypeError(f"manifold: expected a Lorentz manifold, got {manifold!r}")
        if isinstance(min_radius, bool) or not float(min_radius) > 0:
            raise ValueError(f"min_radius: expected a positive number, got {min_radius!r}")
        self.manifold = manifold
        self.min_radius = float(min_radius)

    def half_aperture(self, x: torch.Tensor) -> torch.Tensor:
        r"""$\omega(x) = \arcsin(2K / (\sqrt c\,\|x_s\|))$, ``(..., dim + 1) -> (...)``."""
        (x,), _ = self.manifold._operands(x=x)
        root_c = self.manifold._c(x) ** 0.5
        arg = 2 * self.min_radius / (root_c * x[..., 1:].norm(dim=-1) + _EPS)
        return torch.asin(arg.clamp(-1 + _EPS, 1 - _EPS))

    def exterior_angle(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""$\phi(x, y)$ (see the module docstring), ``(..., dim + 1)`` each ``-> (...)``."""
        (x, y), _ = self.manifold._operands(x=x, y=y)
        c = self.manifold._c(x)
        cxy = c * ((x[..., 1:] * y[..., 1:]).sum(-1) - x[..., 0] * y[..., 0])
        numer = y[..., 0] + cxy * x[..., 0]
        denom = x[..., 1:].norm(dim=-1) * (cxy * cxy - 1).clamp_min(_EPS).sqrt()
        return torch.acos((numer / (denom + _EPS)).clamp(-1 + _EPS, 1 - _EPS))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> LossOutput:
        """Mean cone violation of paired batches; diagnostics ``entailment`` (the loss) and
        ``violated`` (the fraction of pairs outside their cone), detached float32.

        Args:
            image: ``(B, dim + 1)`` points; row ``i`` is the image of caption ``i``.
            text: ``(B, dim + 1)`` points.

        Raises:
            ValueError: shapes that do not end in ``dim + 1`` or differ, or an empty batch.
            TypeError: non-floating tensors, or different dtypes/devices.
        """
        if image.shape != text.shape or image.dim() != 2 or image.shape[0] == 0:
            raise ValueError(
                f"image, text: expected two (B, {self.manifold.dim + 1}) batches with B >= 1, "
                f"got {tuple(image.shape)} and {tuple(text.shape)}"
            )
        with torch.autocast(device_type=image.device.type, enabled=False):
            excess = self.exterior_angle(text, image) - self.half_aperture(text)
            loss = torch.relu(excess).mean()
        diagnostics = {
            "entailment": loss.detach().float(),
            "violated": (excess.detach() > 0).float().mean(),
        }
        return LossOutput(loss, diagnostics)
