"""manifold-align: contrastive image-text alignment on designed embedding manifolds.

``from manifold_align import Oblique, Sphere, Product, Euclidean`` gives geoopt-compatible
manifolds with a contrastive similarity; see :mod:`manifold_align.manifolds`.
"""

from manifold_align.manifolds import ContrastiveManifold, Euclidean, Oblique, Product, Sphere

__version__ = "0.1.0.dev0"

__all__ = ["ContrastiveManifold", "Euclidean", "Oblique", "Product", "Sphere", "__version__"]
