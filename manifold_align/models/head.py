"""The head that maps an encoder's ``k`` token outputs onto the embedding manifold.

One linear map ``A: R^W -> R^d`` (no bias) is shared by the ``k`` tokens, then the result is
projected onto the manifold with ``manifold.projx``:

* ``Oblique(k, d)``: each token normalised on its own,
  $x_i = A z_i / \\lVert A z_i \\rVert$, a point ``(B, k, d)`` whose rows are unit vectors.
* ``Sphere(d)`` (``k = 1``): CLIP's pooled projection then normalisation,
  $x = A z / \\lVert A z \\rVert$, a point ``(B, d)``.

More generally a manifold with point shape ``(d,)`` takes ``k = 1`` and one with point shape
``(k, d)`` takes ``k`` tokens. The projection and normalisation run in float32 (float64 stays
float64) with autocast disabled, so bfloat16 encoders still give points on the manifold to
float32 accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from manifold_align.manifolds import ContrastiveManifold

__all__ = ["ManifoldHead", "head_shape"]


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
    projections; ``W d`` parameters.

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
        self.proj = nn.Linear(width, d, bias=False)
        nn.init.normal_(self.proj.weight, std=width**-0.5)

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
            y = y.reshape(y.shape[0], *self.manifold.point_shape)
            return self.manifold.projx(y)
