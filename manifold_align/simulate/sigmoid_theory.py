r"""The exact equilibrium of SigLIP's sigmoid loss under caption noise.

The noise model is the one of [theory][manifold_align.simulate.theory] (and of
`manifold_align.simulate.sampling`): $C$ concepts, $B$ pairs a batch, image concept $c_i$
uniform, caption concept $\tau_i = c_i$ with probability $1 - p$, otherwise uniform on all $C$;
$q = P(\tau_i = c_i) = 1 - p + p/C$.

The loss
--------
SigLIP labels the diagonal pair $(i, i)$ positive ($z_{ii} = +1$) and every other pair negative
($z_{ij} = -1$), and pays $\frac1B \sum_{ij} \log(1 + e^{-z_{ij} \ell_{ij}})$ on the logits
$\ell_{ij} = t\, s(x_{c_i}, y_{\tau_j}) + b$, with scale $t$ and a learnable bias $b$
(the library's `sigmoid_from_logits`).

The symmetric equilibrium
-------------------------
With every same-concept similarity $s_+$ and every different-concept one $s_-$, a pair's logit is
the *positive logit* $v = t s_+ + b$ if its concepts agree and the *negative logit*
$u = t s_- + b$ if not; the gap is $g = v - u = t (s_+ - s_-)$. Counting the $B$ diagonal and
$B(B-1)$ off-diagonal pairs of a batch (an off-diagonal caption $\tau_j$ is uniform and
independent of $c_i$, so it matches with probability $1/C$), the expected loss is, exactly,

$$ \mathcal{S}(u, v) = \underbrace{q\, \mathrm{sp}(-v) + \tfrac{B-1}{C}\, \mathrm{sp}(v)}_{\text{concepts agree}}
 + \underbrace{(1 - q)\, \mathrm{sp}(-u) + \tfrac{(B-1)(C-1)}{C}\, \mathrm{sp}(u)}_{\text{concepts differ}},
 \qquad \mathrm{sp}(x) = \log(1 + e^{x}). $$

It separates: each bracket is a weighted logistic loss $\alpha\,\mathrm{sp}(-x) + \beta\,
\mathrm{sp}(x)$, strictly convex with minimum at $\sigma(x) = \alpha / (\alpha + \beta)$: **the
optimal pairwise critic is the log-odds that a pair is labelled positive**, given whether its
concepts agree,

$$ v^\star = \log\frac{q\,C}{B - 1}, \qquad
   u^\star = \log\frac{(1 - q)\,C}{(B - 1)(C - 1)}, \qquad
   g^\star = v^\star - u^\star = \log\frac{q\,(C - 1)}{1 - q} = \log\Big(1 + \frac{C(1 - p)}{p}\Big). $$

So the **gap is the same pointwise mutual information as InfoNCE's**
([equilibrium_gap][manifold_align.simulate.theory.equilibrium_gap]), independent of $B$, and
the batch size enters only the common offset $\log\frac{C}{B-1}$ of both logits (the prior odds of
a positive label). The minimum is a sum of binary entropies,
$\mathcal{S}^\star = (q + \tfrac{B-1}{C}) H(\pi_+) + (1 - q + \tfrac{(B-1)(C-1)}{C}) H(\pi_-)$
with $\pi_\pm = \sigma(v^\star), \sigma(u^\star)$. At $p = 0$, $u^\star = -\infty$ and
$g^\star = \infty$; at $p = 1$, $g^\star = 0$.

At a capped gap
---------------
With the gap held at $g$ the bias still sets the offset: $u_g = \arg\min_u \mathcal{S}(u, u + g)$
is the root of $(q + \tfrac{B-1}{C})\,\sigma(u + g) + (1 - q + \tfrac{(B-1)(C-1)}{C})\,\sigma(u)
= 1$ (increasing in $u$, so unique), and the profile loss $\mathcal{S}(g) = \mathcal{S}(u_g, u_g + g)$
is convex in $g$ (a partial minimum of a jointly convex function) with its minimum at $g^\star$.
The relabelling argument of [theory][manifold_align.simulate.theory] carries over unchanged (the
expected loss is a convex, relabelling-invariant function of the $C \times C$ concept logits), so
among configurations of mean gap at most $G$ the symmetric one at $\min(g^\star, G)$ is optimal,
*if it exists*: it needs a concept similarity matrix $a I + b\,\mathbf{1}\mathbf{1}^\top$
($a > 0$) of rank $\ge C - 1$, i.e. a flattened dimension of at least $C - 1$.

Scale, bias and the bounded range
---------------------------------
A bias shifts both logits and leaves the gap alone, so **it cannot stand in for the scale**: on a
manifold whose similarity tops out at $h$ the gap is at most $t\,h\,C/(C-1)$, exactly as for
InfoNCE, and the sphere needs $t \ge t_{\min} = g^\star (C-1)/C$ while $\mathrm{OB}(k, d)$ at
$t = 1$ needs $k \ge \lceil g^\star (C-1)/C \rceil$ tokens (the same numbers as
[min_sphere_scale][manifold_align.simulate.theory.min_sphere_scale] and
[min_oblique_tokens][manifold_align.simulate.theory.min_oblique_tokens]). What the bias does is
place the logits: $b = u^\star - t\,s_-$. Only the gap $t (s_+ - s_-)$ and the two logits are
fixed by the loss; along $t\,(s_+ - s_-) = g^\star$ the scale, the similarities and with them the
bias can trade against each other at no cost. With the embeddings at the regular simplex
($s_+ = h$, $s_- = -h/(C-1)$) the scale is $t_{\min}$ and the bias $u^\star + g^\star/C$.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize, special

from manifold_align.simulate import theory

__all__ = [
    "SigmoidEquilibrium",
    "bias_for",
    "expected_loss",
    "optimal_logits",
    "optimal_negative_logit",
    "profile_loss",
    "sigmoid_equilibrium",
]


def _weights(noise: float, batch_size: int, concepts: int) -> tuple[float, float, float, float]:
    """Expected pair counts per row: (positive label, negative label) x (concepts agree, differ)."""
    theory._check(noise, batch_size, concepts)
    q = theory.caption_match_probability(noise, concepts)
    others = (batch_size - 1) / concepts
    return q, others, 1.0 - q, others * (concepts - 1)


def _sp(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _weighted_logistic(alpha: float, beta: float, x: np.ndarray) -> np.ndarray:
    """``alpha sp(-x) + beta sp(x)``, with a zero weight never multiplying an infinite term."""
    out = np.zeros_like(x)
    if alpha:
        out = out + alpha * _sp(-x)
    if beta:
        out = out + beta * _sp(x)
    return out


def expected_loss(
    negative_logit: float | np.ndarray, gap: float | np.ndarray, noise: float, batch_size: int, concepts: int
) -> float | np.ndarray:
    r"""Exact expected sigmoid loss $\mathcal{S}(u, u + g)$ of the symmetric configuration.

    Args:
        negative_logit: $u = t s_- + b$, float or array (broadcast with ``gap``).
        gap: $g = t (s_+ - s_-)$.
        noise: $p \in [0, 1]$.
        batch_size: $B \ge 2$.
        concepts: $C \ge 2$.

    Returns:
        Nats per row (SigLIP's $1/B$ normalisation), a float or an array.

    Raises:
        ValueError: an argument out of range, or a NaN logit or gap.
    """
    a_pos, a_neg, b_pos, b_neg = _weights(noise, batch_size, concepts)
    u, g = np.broadcast_arrays(np.asarray(negative_logit, dtype=np.float64), np.asarray(gap, dtype=np.float64))
    if np.isnan(u).any() or np.isnan(g).any():
        raise ValueError("negative_logit, gap: got NaN")
    out = _weighted_logistic(a_pos, a_neg, u + g) + _weighted_logistic(b_pos, b_neg, u)
    return float(out) if out.ndim == 0 else out


def optimal_logits(noise: float, batch_size: int, concepts: int) -> tuple[float, float]:
    r"""$(v^\star, u^\star) = \big(\log\frac{qC}{B-1}, \log\frac{(1-q)C}{(B-1)(C-1)}\big)$: the
    loss-minimizing positive and negative logits (log-odds of a positive label).

    $u^\star = -\infty$ at ``noise == 0``.

    Raises:
        ValueError: an argument out of range.
    """
    a_pos, a_neg, b_pos, b_neg = _weights(noise, batch_size, concepts)
    v = math.log(a_pos / a_neg)
    u = math.log(b_pos / b_neg) if b_pos > 0 else -math.inf
    return v, u


def optimal_negative_logit(gap: float, noise: float, batch_size: int, concepts: int) -> float:
    r"""$u_g = \arg\min_u \mathcal{S}(u, u + g)$: the best negative logit when the gap is held at
    ``gap`` (the root of $(q + \frac{B-1}{C})\sigma(u + g) + (1 - q + \frac{(B-1)(C-1)}{C})\sigma(u) = 1$).

    Raises:
        ValueError: an argument out of range, or a gap that is not finite.
    """
    a_pos, a_neg, b_pos, b_neg = _weights(noise, batch_size, concepts)
    if not math.isfinite(gap):
        raise ValueError(f"gap: expected a finite number, got {gap!r}")

    def grad(u: float) -> float:
        return (a_pos + a_neg) * special.expit(u + gap) + (b_pos + b_neg) * special.expit(u) - (a_pos + b_pos)

    lo, hi = -1.0, 1.0
    while grad(lo) > 0:  # grad(-inf) = -(q + 1 - q) < 0: terminates
        lo *= 2.0
    while grad(hi) < 0:
        hi *= 2.0
    return float(optimize.brentq(grad, lo, hi, xtol=1e-13, rtol=1e-13))


def profile_loss(gap: float, noise: float, batch_size: int, concepts: int) -> float:
    r"""$\mathcal{S}(g) = \min_u \mathcal{S}(u, u + g)$: the expected loss at gap ``g`` with the
    bias at its best. Convex in $g$, minimal at $g^\star$.

    Raises:
        ValueError: an argument out of range, or a gap that is not finite.
    """
    u = optimal_negative_logit(gap, noise, batch_size, concepts)
    return expected_loss(u, gap, noise, batch_size, concepts)


def bias_for(negative_logit: float, scale: float, negative_similarity: float) -> float:
    r"""$b = u - t\,s_-$: the bias that puts the negative logit at $u$ for a run's scale and
    negative similarity."""
    return negative_logit - scale * negative_similarity


@dataclasses.dataclass(frozen=True)
class SigmoidEquilibrium:
    r"""The sigmoid loss's theory numbers for one setting (``inf`` where unbounded).

    Attributes:
        gap: $g^\star$ (equal to InfoNCE's).
        positive_logit: $v^\star$.
        negative_logit: $u^\star$.
        loss: $\mathcal{S}(u^\star, v^\star)$.
        max_gap: $G_{\max} = t_{\max} h C / (C-1)$.
        reachable_gap: $\min(g^\star, G_{\max})$.
        reachable_negative_logit: $u_g$ at the reachable gap.
        reachable_loss: $\mathcal{S}$ at the reachable gap.
        sphere_scale: $t_{\min} = g^\star (C-1)/C$.
        oblique_tokens: $k_{\min}$ at scale 1.
    """

    gap: float
    positive_logit: float
    negative_logit: float
    loss: float
    max_gap: float
    reachable_gap: float
    reachable_negative_logit: float
    reachable_loss: float
    sphere_scale: float
    oblique_tokens: float


def sigmoid_equilibrium(
    noise: float, batch_size: int, concepts: int, *, components: float = 1.0, max_scale: float = 1.0
) -> SigmoidEquilibrium:
    r"""Every sigmoid-loss theory number for one setting, on a manifold whose similarity tops out
    at ``components`` ($h$) under scales up to ``max_scale``.

    Raises:
        ValueError: an argument out of range, or ``max_scale <= 0``.
    """
    if not max_scale > 0:
        raise ValueError(f"max_scale: expected a positive number, got {max_scale!r}")
    v, u = optimal_logits(noise, batch_size, concepts)
    g = v - u
    g_max = max_scale * theory.max_similarity_gap(concepts, components)
    reach = min(g, g_max)
    u_reach = optimal_negative_logit(reach, noise, batch_size, concepts)
    a_pos, a_neg, b_pos, b_neg = _weights(noise, batch_size, concepts)
    # At p = 0 (u* = -inf) the differing pairs cost nothing in the limit: only the agreeing pay.
    loss = float(_weighted_logistic(a_pos, a_neg, np.float64(v)))
    if math.isfinite(u):
        loss += float(_weighted_logistic(b_pos, b_neg, np.float64(u)))
    return SigmoidEquilibrium(
        gap=g,
        positive_logit=v,
        negative_logit=u,
        loss=loss,
        max_gap=g_max,
        reachable_gap=reach,
        reachable_negative_logit=u_reach,
        reachable_loss=expected_loss(u_reach, reach, noise, batch_size, concepts),
        sphere_scale=g / theory.max_similarity_gap(concepts),
        oblique_tokens=theory.min_oblique_tokens(noise, batch_size, concepts),
    )
