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
