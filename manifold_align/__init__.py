"""manifold-align: contrastive image-text alignment on designed embedding manifolds.

``from manifold_align import Oblique, InfoNCE, Temperature, RiemannianAdam`` is enough for the
common training script: geoopt-compatible manifolds with a contrastive similarity
(`manifold_align.manifolds`), the losses and their temperature
(`manifold_align.losses`) and the Riemannian optimizer (`manifold_align.optim`).
None of these imports the ``train`` extra.
"""

from manifold_align.losses import InfoNCE, LossOutput, SigmoidLoss, Temperature
from manifold_align.manifolds import (
    ContrastiveManifold,
    Euclidean,
    Lorentz,
    Oblique,
    Product,
    Sphere,
)
from manifold_align.optim import RiemannianAdam

__version__ = "0.1.0.dev0"

__all__ = [
    "ContrastiveManifold",
    "Euclidean",
    "InfoNCE",
    "Lorentz",
    "LossOutput",
    "Oblique",
    "Product",
    "RiemannianAdam",
    "SigmoidLoss",
    "Sphere",
    "Temperature",
    "__version__",
]
