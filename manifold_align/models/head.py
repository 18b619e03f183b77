"""The head that maps an encoder's ``k`` token outputs onto the embedding manifold.

One linear map ``A: R^W -> R^d`` (no bias) is shared by the ``k`` tokens, then the result is
projected onto the manifold with ``manifold.projx``:

* ``Oblique(k, d)``: each token normalised on its own,
  $x_i = A z_i / \\lVert A z_i \\rVert$, a point ``(B, k, d)`` whose rows are unit vectors.
* ``Sphere(d)`` (``k = 1``): CLIP's pooled projection then normalisation,
  $x = A z / \\lVert A z \\rVert$, a point ``(B, d)``.

* ``Lorentz(d)`` (``k = 1``, MERU's head): the projection gives the space part of a tangent
  vector at the origin, a learnable scale $\\alpha = e^{\\texttt{log\\_scale}}$ (initialised
  to $d^{-1/2}$, so the first tangent norms are about 1) multiplies it, its norm is capped
  at the manifold's ``radius`` and ``expmap0`` lands it on the hyperboloid:
  $x = \\exp_o\\big(0,\\ \\alpha A z \\cdot \\min(1, r / \\|\\alpha A z\\|)\\big)$, a point
  ``(B, d + 1)``. The projection has ``d`` outputs, not ``d + 1``: the time coordinate is
  not a free parameter.
* ``Product`` of these: one projection onto the concatenated free coordinates, each factor's
  slice mapped as above (``Product(Sphere(64), Lorentz(64))``: 64 + 64 outputs).

More generally a manifold with point shape ``(d,)`` takes ``k = 1`` and one with point shape
``(k, d)`` takes ``k`` tokens. The projection and normalisation run in float32 (float64 stays
float64) with autocast disabled, so bfloat16 encoders still give points on the manifold to
float32 accuracy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from manifold_align.manifolds import ContrastiveManifold, Lorentz, Product

__all__ = ["ManifoldHead", "head_shape"]


def _free_size(manifold: ContrastiveManifold) -> int:
    """Outputs the projection gives a point: ``flat_dim``, less one time coordinate per
    `Lorentz` factor (``expmap0`` takes the space part only)."""
    if isinstance(manifold, Lorentz):
        return manifold.dim
    if isinstance(manifold, Product):
        return sum(_free_size(m) for m in manifold.factors)
    return manifold.flat_dim


def _has_lorentz(manifold: ContrastiveManifold) -> bool:
    if isinstance(manifold, Product):
        return any(_has_lorentz(m) for m in manifold.factors)
    return isinstance(manifold, Lorentz)


def _onto(manifold: ContrastiveManifold, y: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Free coordinates ``(B, _free_size)`` -> flat points ``(B, flat_dim)`` of ``manifold``.

    `Lorentz`: $\\exp_o$ of $(0, \\alpha y)$ with its norm capped at ``radius``; ``Product``:
    each factor its slice; anything else: ``projx``.
    """
    if isinstance(manifold, Lorentz):
        v = alpha * y
        n = v.norm(dim=-1, keepdim=True)
        v = v * torch.clamp(manifold.radius / n.clamp_min(torch.finfo(v.dtype).tiny), max=1.0)
        return manifold.expmap0(torch.cat([torch.zeros_like(v[..., :1]), v], dim=-1))
    if isinstance(manifold, Product):
        parts = torch.split(y, [_free_size(m) for m in manifold.factors], dim=-1)
        return torch.cat([_onto(m, p, alpha) for m, p in zip(manifold.factors, parts)], dim=-1)
    return manifold.flatten(manifold.projx(manifold.unflatten(y)))


def head_shape(manifold: ContrastiveManifold) -> tuple[int, int]:
    """``(k, d)``: how many encoder tokens a head onto ``manifold`` reads and their target size.

    Raises:
        ValueError: if ``manifold``'s point shape is neither ``(d,)`` nor ``(k, d)``.
    """
    shape = tuple(manifold.point_shape)
    if len(shape) == 1:
        return 1, shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    raise ValueError(
        f"manifold: a head maps onto points of shape (d,) or (k, d), "
        f"got point_shape {shape} for {manifold!r}"
    )


class ManifoldHead(nn.Module):
    """Shared projection of ``k`` token outputs, then ``manifold.projx``.

    Args:
        width: width ``W`` of the encoder's token outputs.
        manifold: the target manifold, e.g. ``Sphere(d)`` or ``Oblique(k, d)``.
        tokens: the number of token outputs ``k`` the encoder emits; must match the
            manifold (``1`` for ``Sphere``, ``k`` for ``Oblique(k, d)``).

    The weight ``proj.weight`` ``(d, W)`` is initialised ``N(0, W^{-1/2})`` like CLIP's
    projections; ``W d`` parameters (``d`` free coordinates: a `Lorentz` factor's time
    coordinate is not one). With a `Lorentz` factor the head also has ``log_scale``, a 0-dim
    parameter (MERU's $\\log\\alpha$, initialised to $-\\frac12 \\log d$).

    Raises:
        ValueError: if ``width`` is not positive, or ``tokens`` does not match the manifold.
    """

    def __init__(self, width: int, manifold: ContrastiveManifold, tokens: int) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width: expected a positive integer, got {width}")
        k, d = head_shape(manifold)
        if tokens != k:
            raise ValueError(
                f"tokens: the encoder emits {tokens} token(s) but {manifold!r} "
                f"(point shape {tuple(manifold.point_shape)}) needs exactly {k}"
            )
        self.width = width
        self.tokens = k
        self.dim = d
        self.manifold = manifold
        self.proj = nn.Linear(width, _free_size(manifold) // k, bias=False)
        nn.init.normal_(self.proj.weight, std=width**-0.5)
        # MERU's learnable scale of the tangent vector, only where expmap0 follows
        self.log_scale = (
            nn.Parameter(torch.tensor(-0.5 * math.log(self.proj.out_features)))
            if _has_lorentz(manifold)
            else None
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, k, W) -> (B, *manifold.point_shape)``, computed in float32.

        Raises:
            ValueError: if ``z`` is not ``(B, k, W)``.
        """
        if z.dim() != 3 or z.shape[1:] != (self.tokens, self.width):
            raise ValueError(
                f"z: expected token outputs of shape (B, {self.tokens}, {self.width}), "
                f"got {tuple(z.shape)}"
            )
        dtype = torch.promote_types(z.dtype, torch.float32)
        with torch.autocast(device_type=z.device.type, enabled=False):
            y = F.linear(z.to(dtype), self.proj.weight.to(dtype))  # (B, k, d)
            if self.log_scale is not None:
                flat = _onto(self.manifold, y.reshape(y.shape[0], -1), self.log_scale.to(dtype).exp())
                return self.manifold.unflatten(flat)
            y = y.reshape(y.shape[0], *self.manifold.point_shape)
            return self.manifold.projx(y)
