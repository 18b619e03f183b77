"""The contract every manifold of this library fulfils, on top of geoopt's ``Manifold``.

geoopt supplies the Riemannian side (``projx``, ``proju``, ``egrad2rgrad``, ``inner``,
``retr``, ``expmap``, ``logmap``, ``dist``, ``transp``, ``random``, point/tangent checks), so
``geoopt.ManifoldParameter`` and ``geoopt.optim.RiemannianAdam`` work unchanged. This class
adds the *contrastive* side that geoopt lacks:

* ``point_shape``: the trailing shape of one point, e.g. ``(d,)`` or ``(k, d)``.
* ``similarity(x, y)``: the matrix of similarities ``s(x_i, y_j)`` under the manifold's
  endowed distance, one matrix multiply on flattened points.
* ``similarity_range``: ``(low, high)``, the bounds ``s`` can reach.
* ``mean(x, dim, weights)``: a weighted mean that lands on the manifold.
"""

from __future__ import annotations

import abc

import geoopt
import torch

__all__ = ["ContrastiveManifold"]


class ContrastiveManifold(geoopt.Manifold, metaclass=abc.ABCMeta):
    """A geoopt manifold with a contrastive similarity.

    Subclasses set ``ndim = len(point_shape)`` and implement geoopt's abstract methods plus
    :meth:`similarity`, :attr:`similarity_range` and :meth:`mean`.
    """

    @property
    @abc.abstractmethod
    def point_shape(self) -> tuple[int, ...]:
        """Trailing shape of one point, e.g. ``(dim,)`` for a sphere, ``(tokens, dim)`` oblique."""

    @property
    def flat_dim(self) -> int:
        """Number of coordinates of one point, ``prod(point_shape)``."""
        n = 1
        for s in self.point_shape:
            n *= s
        return n

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., *point_shape) -> (..., flat_dim)``; raises ``ValueError`` on a wrong trailing shape.

        For every manifold here ``similarity(x, y) == flatten(x) @ flatten(y).T``, which is what
        lets the losses (dense, tiled, distributed) work on flat features.
        """
        self._check_trailing(x, "x")
        return x.reshape(*x.shape[: x.dim() - len(self.point_shape)], self.flat_dim)

    def unflatten(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., flat_dim) -> (..., *point_shape)``; raises ``ValueError`` if the last size differs."""
        if x.dim() < 1 or x.shape[-1] != self.flat_dim:
            raise ValueError(
                f"x: expected trailing size {self.flat_dim} = prod{self.point_shape} for {self!r}, "
                f"got shape {tuple(x.shape)}"
            )
        return x.reshape(*x.shape[:-1], *self.point_shape)

    def _check_trailing(self, x: torch.Tensor, name: str) -> None:
        """Raise ``ValueError`` naming ``name`` unless ``x.shape`` ends with ``point_shape``."""
        ps = tuple(self.point_shape)
        if x.dim() < len(ps) or tuple(x.shape[x.dim() - len(ps) :]) != ps:
            raise ValueError(
                f"{name}: expected shape (..., {', '.join(map(str, ps))}) for {self!r}, "
                f"got {tuple(x.shape)}"
            )

    @property
    @abc.abstractmethod
    def similarity_range(self) -> tuple[float, float]:
        """``(low, high)``: the closed range of :meth:`similarity` on this manifold."""

    @abc.abstractmethod
    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Pairwise similarity matrix.

        Shapes: ``x`` is ``(*batch, N, *point_shape)``, ``y`` is ``(*batch, M, *point_shape)``
        (same ``batch``), result ``(*batch, N, M)``. Computed in float32 (float64 stays float64)
        as one matrix multiply of the flattened points; never a ``(N, M, k)`` intermediate.
        """

    @abc.abstractmethod
    def mean(
        self,
        x: torch.Tensor,
        dim: int = 0,
        weights: torch.Tensor | None = None,
        *,
        karcher: bool = False,
    ) -> torch.Tensor:
        """Weighted mean of points along batch dimension ``dim``, returned on the manifold."""
