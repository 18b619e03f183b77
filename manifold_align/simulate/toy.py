r"""The toy model: one free image and one free text embedding per concept, for R runs at once.

Run $r$ owns points $x_{r,c}$ (image) and $y_{r,c}$ (text) on a manifold $\mathcal{M}$, one
per concept $c < C$, and a logit scale $t_r$. A batch of concept pairs $(c_i, \tau_i)$ gives
the logits

$$ L_{r,ij} = t_r \, s(x_{r,c_i}, y_{r,\tau_j}), $$

computed for every run with one batched `similarity`. The parameters carry a leading
run dimension, ``(R, C, *point_shape)``, so runs never interact: the loss is a sum of
per-run losses and Riemannian Adam's moments are per point (per token on an oblique manifold).

The scale is $t_r = e^{\theta_r}$ with $\theta_r$ trained only for learnable temperatures and
clamped to $\log t^{\max}_r$ after each step ([ToyModel.clamp_][manifold_align.simulate.toy.ToyModel.clamp_]), the same semantics as
[manifold_align.losses.Temperature][manifold_align.losses.temperature.Temperature], but one parameter per run. Each run also owns a
logit bias $b_r$ (``bias``, ``(R,)``), which only the sigmoid loss reads (its logits are
$L_{r,ij} + b_r$, as `SigmoidLoss`'s ``logit_bias``); InfoNCE
is blind to it (a softmax ignores a constant).

Diagnostics ([ToyModel.diagnostics][manifold_align.simulate.toy.ToyModel.diagnostics]) read the parameters directly, not a batch. With
$S_{cc'} = s(x_c, y_{c'})$ the concept-by-concept similarity matrix:

* positive similarity $s_+ = \frac1C \sum_c S_{cc}$ (an image and a text of the same concept);
* negative similarity $s_- = \frac{1}{C(C-1)} \sum_{c \ne c'} S_{cc'}$ (different concepts);
* gap in logit units $g = t\,(s_+ - s_-)$;
* alignment (Wang & Isola, $\alpha = 2$) $\frac1C \sum_c \|x_c - y_c\|^2$ on the flattened points;
* uniformity ($t = 2$) $\log \frac{1}{C(C-1)} \sum_{c \ne c'} e^{-2\|x_c - x_{c'}\|^2}$,
  averaged over the image and the text embeddings;
* accuracy $\frac1C \#\{c : S_{cc} > S_{cc'} \text{ for every } c' \ne c\}$: the share of
  concepts whose own caption is the image's strict top match (a tie counts as a miss);
* the bias $b_r$.

Alignment and uniformity are Wang & Isola's, defined for unit vectors: on a sphere or an oblique
manifold the flattened distance is the chordal one. On `Lorentz` (and products with it) they
are computed the same way on the stored ambient coordinates $(x_0, x_s)$, whose Euclidean
distances grow like $e^{\sqrt c\,r}$ with the distance $r$ from the origin: they still fall as
pairs align and spread, but compare them between runs of one topology only. The gap is
measured in the manifold's own similarity (for `Lorentz`, the negative geodesic distance).

`Lorentz` points are kept within the manifold's ``radius`` of the origin: at construction and
in `ToyModel.clamp_` (see [confine_][manifold_align.simulate.topology.confine_]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import geoopt
import torch

from manifold_align.manifolds import ContrastiveManifold
from manifold_align.simulate.topology import confine_, initial_points

__all__ = ["ToyModel"]


def _as_run_vector(value, runs: int, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=dtype)
    if t.dim() == 0:
        t = t.expand(runs)
    if t.shape != (runs,):
        raise ValueError(f"{name}: expected a scalar or shape ({runs},), got {tuple(t.shape)}")
    return t.clone()


class ToyModel(torch.nn.Module):
    """R independent toy runs on one manifold, batched.

    Args:
        manifold: where the embeddings live.
        runs: ``R >= 1``.
        concepts: ``C >= 2``.
        initial_scale: scalar or ``(R,)`` positive initial logit scales.
        max_scale: scalar or ``(R,)`` largest scales (the clamp of [clamp_][manifold_align.simulate.toy.ToyModel.clamp_]).
        learnable: scalar or ``(R,)`` bools: whether run ``r``'s scale is trained.
        generator: seeds the initial points (standard normal, projected onto the manifold;
            near the origin on `Lorentz`: see
            [initial_points][manifold_align.simulate.topology.initial_points]).
        initial_bias: scalar or ``(R,)`` initial logit biases (read only by the sigmoid loss).

    Raises:
        ValueError: bad sizes, non-positive scales, an initial scale above its maximum, or a
            bias that is not finite.
    """

    def __init__(
        self,
        manifold: ContrastiveManifold,
        runs: int,
        concepts: int,
        *,
        initial_scale: float | Sequence[float] | torch.Tensor = 1.0,
        max_scale: float | Sequence[float] | torch.Tensor = 1.0,
        learnable: bool | Sequence[bool] | torch.Tensor = False,
        generator: torch.Generator | None = None,
        initial_bias: float | Sequence[float] | torch.Tensor = 0.0,
    ) -> None:
        super().__init__()
        if runs < 1:
            raise ValueError(f"runs: expected >= 1, got {runs}")
        if concepts < 2:
            raise ValueError(f"concepts: expected >= 2, got {concepts}")
        init = _as_run_vector(initial_scale, runs, "initial_scale")
        top = _as_run_vector(max_scale, runs, "max_scale")
        if not bool((init > 0).all() and (top > 0).all()):
            raise ValueError(f"initial_scale, max_scale: expected > 0, got {init.tolist()}, {top.tolist()}")
        if bool((init > top * (1 + 1e-6)).any()):
            raise ValueError(f"initial_scale {init.tolist()} exceeds max_scale {top.tolist()}")
        self.manifold = manifold
        self.runs, self.concepts = runs, concepts
        shape = (runs, concepts, *manifold.point_shape)
        self.image = geoopt.ManifoldParameter(initial_points(manifold, shape, generator), manifold=manifold)
        self.text = geoopt.ManifoldParameter(initial_points(manifold, shape, generator), manifold=manifold)
        confine_(manifold, self.image)
        confine_(manifold, self.text)
        self.log_scale = torch.nn.Parameter(init.log())
        bias = _as_run_vector(initial_bias, runs, "initial_bias")
        if not bool(bias.isfinite().all()):
            raise ValueError(f"initial_bias: expected finite numbers, got {bias.tolist()}")
        self.bias = torch.nn.Parameter(bias)
        self.register_buffer("log_max_scale", top.log())
        self.register_buffer("learnable", _as_run_vector(learnable, runs, "learnable", torch.bool))
        self.register_buffer("_run_index", torch.arange(runs)[:, None])

    def scale(self) -> torch.Tensor:
        """``(R,)`` logit scales $t_r = e^{\\theta_r}$; gradient flows only to learnable runs."""
        theta = torch.where(self.learnable, self.log_scale, self.log_scale.detach())
        return theta.exp()

    def logits(self, image_concepts: torch.Tensor, caption_concepts: torch.Tensor) -> torch.Tensor:
        """$L_{r,ij} = t_r\\,s(x_{r,c_{ri}}, y_{r,\\tau_{rj}})$, shape ``(R, B, B)``, float32.

        Args:
            image_concepts: ``(R, B)`` int64 concept indices of the images.
            caption_concepts: ``(R, B)`` int64 concept indices of the captions.

        Raises:
            ValueError: index tensors of the wrong shape.
        """
        for name, idx in (("image_concepts", image_concepts), ("caption_concepts", caption_concepts)):
            if idx.dim() != 2 or idx.shape[0] != self.runs:
                raise ValueError(f"{name}: expected shape ({self.runs}, B), got {tuple(idx.shape)}")
        x = self.image[self._run_index, image_concepts]
        y = self.text[self._run_index, caption_concepts]
        return self.scale()[:, None, None] * self.manifold.similarity(x, y)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project each scale back to at most its maximum (CLIP's clamp after the step), and
        `Lorentz` points back within the manifold's ``radius``."""
        torch.minimum(self.log_scale, self.log_max_scale, out=self.log_scale)
        confine_(self.manifold, self.image)
        confine_(self.manifold, self.text)

    @torch.no_grad()
    def diagnostics(self) -> dict[str, torch.Tensor]:
        """Per-run ``(R,)`` float32 tensors: ``scale``, ``pos_sim``, ``neg_sim``, ``sim_gap``
        ($s_+ - s_-$), ``gap`` ($t (s_+ - s_-)$), ``alignment``, ``uniformity``, ``accuracy``,
        ``bias`` (module docstring).
        """
        c = self.concepts
        sim = self.manifold.similarity(self.image, self.text).float()  # (R, C, C)
        diag = sim.diagonal(dim1=-2, dim2=-1)
        pos = diag.mean(-1)
        neg = (sim.sum((-2, -1)) - diag.sum(-1)) / (c * (c - 1))
        scale = self.log_scale.exp().float()
        fx = self.manifold.flatten(self.image).float()
        fy = self.manifold.flatten(self.text).float()
        alignment = (fx - fy).pow(2).sum(-1).mean(-1)
        off = ~torch.eye(c, dtype=torch.bool, device=fx.device)

        def uniformity(f: torch.Tensor) -> torch.Tensor:
            sq = torch.cdist(f, f).pow(2)[:, off]  # (R, C(C-1))
            return torch.logsumexp(-2.0 * sq, dim=-1) - math.log(c * (c - 1))

        return {
            "scale": scale,
            "pos_sim": pos,
            "neg_sim": neg,
            "sim_gap": pos - neg,
            "gap": scale * (pos - neg),
            "alignment": alignment,
            "uniformity": 0.5 * (uniformity(fx) + uniformity(fy)),
            "accuracy": _top_match_accuracy(sim),
            "bias": self.bias.detach().float().clone(),
        }


def _top_match_accuracy(sim: torch.Tensor) -> torch.Tensor:
    """``(R,)`` share of rows ``c`` of ``sim (R, C, C)`` whose diagonal beats every other entry."""
    c = sim.shape[-1]
    diag = sim.diagonal(dim1=-2, dim2=-1)
    others = sim.masked_fill(torch.eye(c, dtype=torch.bool, device=sim.device), -math.inf)
    return (diag > others.amax(-1)).float().mean(-1)
