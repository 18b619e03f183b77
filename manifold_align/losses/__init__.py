"""Contrastive losses on any manifold, with the temperature as an object of its own.

* :class:`InfoNCE`: CLIP's symmetric softmax cross-entropy, dense or tiled (memory-lean).
* :class:`SigmoidLoss`: SigLIP's pairwise sigmoid loss with a learnable bias.
* `EntailmentConeLoss`: MERU's per-pair hyperbolic cone term (an extra, weighted term).
* :class:`Temperature`: learnable (CLIP's projection under a maximum), fixed, or none.
* :func:`info_nce_from_logits`, :func:`sigmoid_from_logits`: the same losses over logits with
  any leading batch shape (used by the batched simulations).
* :func:`tiled_info_nce`: the tiled InfoNCE on flat features.
* :func:`to_distributed`: the exact multi-process form of a loss (each rank its rows).

Every loss returns a :class:`LossOutput` ``(loss, diagnostics)``.
"""

from manifold_align.losses.distributed import (
    DistributedInfoNCE,
    DistributedSigmoidLoss,
    gather_with_grad,
    to_distributed,
)
from manifold_align.losses.entailment import EntailmentConeLoss
from manifold_align.losses.infonce import InfoNCE, info_nce_from_logits
from manifold_align.losses.output import LossOutput
from manifold_align.losses.sigmoid import SigmoidLoss, sigmoid_from_logits
from manifold_align.losses.temperature import Temperature
from manifold_align.losses.tiled import tiled_info_nce

__all__ = [
    "DistributedInfoNCE",
    "DistributedSigmoidLoss",
    "EntailmentConeLoss",
    "InfoNCE",
    "LossOutput",
    "SigmoidLoss",
    "Temperature",
    "gather_with_grad",
    "info_nce_from_logits",
    "sigmoid_from_logits",
    "tiled_info_nce",
    "to_distributed",
]
