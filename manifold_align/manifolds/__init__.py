"""Manifolds: one file each, all subclasses of [ContrastiveManifold][manifold_align.manifolds.base.ContrastiveManifold] (and geoopt's ``Manifold``)."""

from manifold_align.manifolds.base import ContrastiveManifold
from manifold_align.manifolds.euclidean import Euclidean
from manifold_align.manifolds.lorentz import Lorentz
from manifold_align.manifolds.oblique import Oblique
from manifold_align.manifolds.product import Product
from manifold_align.manifolds.sphere import Sphere

__all__ = ["ContrastiveManifold", "Euclidean", "Lorentz", "Oblique", "Product", "Sphere"]
