"""Contrastive losses on any manifold, with the temperature as an object of its own.

* `InfoNCE`: CLIP's symmetric softmax cross-entropy, dense or tiled (memory-lean).
* `SigmoidLoss`: SigLIP's pairwise sigmoid loss with a learnable bias, in strips of rows
  with its gradients formed in the forward sweep.
* `EntailmentConeLoss`: MERU's per-pair hyperbolic cone term (an extra, weighted term).
* `Temperature`: learnable (CLIP's projection under a maximum), fixed, or none.
* `info_nce_from_logits`, `sigmoid_from_logits`: the same losses over logits with any leading
  batch shape (used by the batched simulations).
* `tiled_info_nce`, `tiled_sigmoid`: the strip kernels on flat features (`tiled.py`).
* `to_distributed`: the exact multi-process form of a loss (each rank its rows;
  `distributed.py`, with the collective plumbing in `collectives.py`).

Every loss returns a `LossOutput` `(loss, diagnostics)`.
"""

from manifold_align.losses.collectives import gather_with_grad
from manifold_align.losses.distributed import (
    DistributedInfoNCE,
    DistributedSigmoidLoss,
    to_distributed,
)
from manifold_align.losses.entailment import EntailmentConeLoss
from manifold_align.losses.infonce import InfoNCE, info_nce_from_logits
from manifold_align.losses.output import LossOutput
from manifold_align.losses.sigmoid import SigmoidLoss, sigmoid_from_logits
from manifold_align.losses.temperature import Temperature
from manifold_align.losses.tiled import tiled_info_nce, tiled_sigmoid

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
    "tiled_sigmoid",
    "to_distributed",
]
