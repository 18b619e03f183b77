r"""The exact equilibrium gap of symmetric InfoNCE under caption noise.

The noise model (the one `manifold_align.simulate.sampling` draws from)
----------------------------------------------------------------------------
There are $C$ concepts. A batch holds $B$ pairs $(c_i, \tau_i)$: the image's concept $c_i$ is
uniform on $\{1..C\}$; the caption's concept $\tau_i$ equals $c_i$ with probability $1 - p$ and
is, with probability $p$ (the *noise*), drawn uniformly from all $C$ concepts (so it may hit
$c_i$ by chance). Pairs are independent. Hence

$$ q = P(\tau_i = c_i) = 1 - p + p / C, $$

and $\tau_i$ is uniform on the concepts, independent of every $c_j$ with $j \ne i$.

The symmetric equilibrium
-------------------------
Assume every same-concept image-text pair has similarity $s_+$ and every different-concept
pair $s_-$. With scale $t$ the logits are $L_{ij} = t\,s_-  + g\,[c_i = \tau_j]$ with the
*gap* $g = t (s_+ - s_-)$; a softmax row or column is unchanged by the constant, so the loss
depends on $g$ only.

CLIP's symmetric InfoNCE, $\ell = \frac{1}{2B}\sum_i \big(\mathrm{CE}_{i\to\cdot} +
\mathrm{CE}_{\cdot\to i}\big)$, takes **only the diagonal** $(i, i)$ as the positive of row /
column $i$. Off-diagonal captions of the anchor's concept (false negatives) stay in the
denominator, with the *positive* logit $g$; a noisy own caption (false positive) sits on the
diagonal with the *negative* logit $0$. For image row $i$ let

* $a = [\tau_i = c_i] \sim \mathrm{Bernoulli}(q)$: is the diagonal logit $g$ or $0$;
* $M = \#\{j \ne i : \tau_j = c_i\} \sim \mathrm{Binomial}(B - 1, 1/C)$, independent of $a$:
  the false negatives.

Then $N = M + a$ of the $B$ logits in the row equal $g$, the rest $0$, and

$$ \mathrm{CE}_i = -g\,a + \log\big(N e^{g} + B - N\big). $$

The text column $j$ has the same law (images $i \ne j$ match $\tau_j$ with probability $1/C$
each, independently of $a_j$), so the expected symmetric loss is, exactly,

$$ \mathcal{L}(g) = -q\,g + \sum_{a \in \{0, 1\}} \sum_{m=0}^{B-1} P(a)\,P(M = m)\,
   \log\big((m + a) e^{g} + B - m - a\big). $$

Each term $\log(n e^g + B - n)$ is convex in $g$ (second derivative
$n (B - n) e^g / (n e^g + B - n)^2 \ge 0$), so $\mathcal{L}$ is convex, and

$$ \mathcal{L}'(g) = -q + \mathbb{E}\big[\sigma(g + \log N - \log(B - N))\big]. $$

* $\mathcal{L}'(0) = -q + \mathbb{E}[N]/B = -(B - 1)(q - 1/C)/B < 0$ whenever $p < 1$, so
  $g^\star > 0$; at $p = 1$ the captions carry no signal and $g^\star = 0$.
* $\mathcal{L}'(\infty) = P(N > 0) - q = (1 - q)\big(1 - (1 - 1/C)^{B-1}\big)$, positive when
  $p > 0$: the minimizer $g^\star$ is finite, the root of $\mathcal{L}'$ (found by Brent's
  method). At $p = 0$ the loss keeps falling as $g \to \infty$ and $g^\star = \infty$.

The root has a closed form, which the tests use as an independent check:
$g^\star = \log\frac{q (C - 1)}{1 - q} = \log\big(1 + C(1 - p)/p\big)$, the log ratio of
$P(\tau = c \mid c)$ to $P(\tau = c' \mid c)$: InfoNCE's optimal critic is the pointwise
mutual information, whatever $B$ is. So, **under this noise model, $g^\star$ does not depend on
the batch size** (the loss value $\mathcal{L}(g^\star)$ does, through $\log B$).

Why the symmetric equilibrium is *the* optimum
----------------------------------------------
With free embeddings the loss is a convex function of the $C \times C$ matrix of
concept-to-concept logits (a log-sum-exp of linear maps), invariant under relabelling the
concepts. Averaging any optimum over all relabellings gives a symmetric matrix (one diagonal
value, one off-diagonal value) that is no worse, with the same *mean* gap. So the optimum over
all configurations whose mean gap is at most $G$ is the symmetric one with gap
$\min(g^\star, G)$, provided that symmetric configuration exists.

What a manifold can reach
-------------------------
For unit vectors $x_c$ (images) and $y_c$ (texts) the mean gap
$\frac1C\sum_c \langle x_c, y_c\rangle - \frac{1}{C(C-1)}\sum_{c \ne c'} \langle x_c, y_{c'}\rangle
= \frac{1}{C - 1}\sum_c \langle x_c - \bar x, y_c - \bar y\rangle \le \frac{C}{C-1}$
(Cauchy-Schwarz and $\sum_c \|x_c - \bar x\|^2 = C(1 - \|\bar x\|^2)$), with equality exactly
when $x_c = y_c$ and $\bar x = 0$, which any dimension $d \ge 2$ allows. The *symmetric*
configuration that $\mathcal{L}(g)$ assumes (all negatives equal) asks more: its concept
similarity matrix $a I + b\,\mathbf{1}\mathbf{1}^\top$ ($a > 0$) has rank $\ge C - 1$, so it
needs a flattened dimension of at least $C - 1$ (at the ceiling: the regular simplex,
$d \ge C - 1$ per unit component). With fewer dimensions the mean gap still reaches
$\min(g^\star, G_{\max})$, but the negatives spread and the loss stays above
$\mathcal{L}$ (convexity). An oblique point is $k$ such unit vectors and its similarity the sum,
so its gap range is $k$ times larger; a product adds its factors' ranges. Writing $h$ for the
top of the similarity range ($1$ for a sphere, $k$ for $\mathrm{OB}(k, d)$):

$$ G_{\max} = t_{\max}\, h\, \frac{C}{C - 1}, \qquad
   t_{\min}^{\text{sphere}} = g^\star \frac{C - 1}{C}, \qquad
   k_{\min} = \Big\lceil g^\star \frac{C - 1}{C} \Big\rceil \text{ at } t = 1. $$

Hyperbolic space, with the negative geodesic distance as similarity, has no ceiling of its own;
within a ball of radius $R$ its ceiling is $D_C(R) \approx 2R$
([hyperbolic_max_gap][manifold_align.simulate.theory.hyperbolic_max_gap]), so the radius does
the temperature's work. [equilibrium_within][manifold_align.simulate.theory.equilibrium_within]
takes any topology's ceiling at scale 1 ([topology][manifold_align.simulate.topology]).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize, special, stats

__all__ = [
    "Equilibrium",
    "caption_match_probability",
    "equilibrium",
    "equilibrium_gap",
    "equilibrium_within",
    "expected_loss",
    "expected_loss_grad",
    "hyperbolic_max_gap",
    "hyperbolic_radius_for_gap",
    "max_similarity_gap",
    "min_hyperbolic_radius",
    "min_oblique_tokens",
    "min_sphere_scale",
    "needs_temperature",
]


def _check(noise: float, batch_size: int, concepts: int) -> None:
    if not (isinstance(noise, (int, float)) and 0.0 <= float(noise) <= 1.0):
        raise ValueError(f"noise: expected a probability in [0, 1], got {noise!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 2:
        raise ValueError(f"batch_size: expected an integer >= 2, got {batch_size!r}")
    if isinstance(concepts, bool) or not isinstance(concepts, (int, np.integer)) or concepts < 2:
        raise ValueError(f"concepts: expected an integer >= 2, got {concepts!r}")


def caption_match_probability(noise: float, concepts: int) -> float:
    r"""$q = 1 - p + p / C$: the chance a caption names its image's concept.

    Raises:
        ValueError: ``noise`` outside ``[0, 1]`` or ``concepts < 2``.
    """
    _check(noise, 2, concepts)
    return 1.0 - float(noise) + float(noise) / concepts


def _positive_count_pmf(noise: float, batch_size: int, concepts: int) -> np.ndarray:
    """``P(N = n)`` for ``n = 0..B``, ``N = M + a``, ``M ~ Bin(B-1, 1/C)``, ``a ~ Bern(q)``."""
    q = caption_match_probability(noise, concepts)
    pm = stats.binom.pmf(np.arange(batch_size), batch_size - 1, 1.0 / concepts)
    pmf = np.zeros(batch_size + 1)
    pmf[:-1] += (1.0 - q) * pm
    pmf[1:] += q * pm
    return pmf


def _row_terms(gap: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``log(n e^g + B - n)`` and ``d/dg`` of it for ``n = 0..B``; shapes ``(*gap, B + 1)``."""
    n = np.arange(batch_size + 1, dtype=np.float64)
    g = np.asarray(gap, dtype=np.float64)[..., None]
    with np.errstate(divide="ignore"):
        log_n, log_rest = np.log(n), np.log(batch_size - n)
    lse = np.logaddexp(g + log_n, log_rest)
    # sigma(g + log n - log(B - n)); n = 0 -> 0, n = B -> 1, no inf - inf.
    z = np.where(n == 0, -np.inf, np.where(n == batch_size, np.inf, g + log_n - log_rest))
    return lse, special.expit(z)


def expected_loss(
    gap: float | np.ndarray, noise: float, batch_size: int, concepts: int
) -> float | np.ndarray:
    r"""Exact expected symmetric InfoNCE $\mathcal{L}(g)$ at the symmetric equilibrium.

    $\mathcal{L}(g) = -q g + \mathbb{E}\,\log(N e^g + B - N)$ (see the module docstring).

    Args:
        gap: logit gap $g$, a float or an array of any shape (``inf`` allowed).
        noise: caption noise $p \in [0, 1]$.
        batch_size: $B \ge 2$.
        concepts: $C \ge 2$.

    Returns:
        A float (or an array shaped like ``gap``), in nats.

    Raises:
        ValueError: an argument out of range, or a NaN gap.
    """
    _check(noise, batch_size, concepts)
    g = np.asarray(gap, dtype=np.float64)
    if np.isnan(g).any():
        raise ValueError("gap: got NaN")
    q = caption_match_probability(noise, concepts)
    pmf = _positive_count_pmf(noise, batch_size, concepts)
    finite = np.isfinite(g)
    lse, _ = _row_terms(np.where(finite, g, 0.0), batch_size)
    out = -q * np.where(finite, g, 0.0) + lse @ pmf
    if not finite.all():
        # g -> +inf: -q g + P(N>0) g + E[log N; N>0] -> +inf if P(N>0) > q, else its limit.
        n = np.arange(batch_size + 1)
        with np.errstate(divide="ignore"):
            limit_const = float(np.sum(pmf[1:] * np.log(n[1:])))
        slope = float(pmf[1:].sum()) - q
        pos_limit = math.inf if slope > 1e-15 else limit_const
        out = np.where(finite, out, np.where(g > 0, pos_limit, math.inf))
    return float(out) if out.ndim == 0 else out


def expected_loss_grad(
    gap: float | np.ndarray, noise: float, batch_size: int, concepts: int
) -> float | np.ndarray:
    r"""$\mathcal{L}'(g) = -q + \mathbb{E}\,\sigma(g + \log N - \log(B - N))$, same shapes as
    [expected_loss][manifold_align.simulate.theory.expected_loss].

    Raises:
        ValueError: an argument out of range.
    """
    _check(noise, batch_size, concepts)
    q = caption_match_probability(noise, concepts)
    pmf = _positive_count_pmf(noise, batch_size, concepts)
    _, sig = _row_terms(np.asarray(gap, dtype=np.float64), batch_size)
    out = -q + sig @ pmf
    return float(out) if out.ndim == 0 else out


def equilibrium_gap(noise: float, batch_size: int, concepts: int) -> float:
    r"""$g^\star = \arg\min_g \mathcal{L}(g)$: the loss-minimizing logit gap.

    Returns ``math.inf`` at ``noise == 0`` (the loss keeps decreasing: no finite equilibrium)
    and ``0.0`` at ``noise == 1`` (captions carry no information).

    Raises:
        ValueError: an argument out of range.
    """
    _check(noise, batch_size, concepts)
    grad = lambda g: expected_loss_grad(g, noise, batch_size, concepts)  # noqa: E731
    if grad(0.0) >= 0.0:
        return 0.0
    pmf = _positive_count_pmf(noise, batch_size, concepts)
    if pmf[1:].sum() - caption_match_probability(noise, concepts) <= 1e-15:
        return math.inf
    hi = 1.0
    while grad(hi) <= 0.0:
        hi *= 2.0
        if hi > 1e6:  # pragma: no cover - slope at infinity is positive, so this cannot run away
            return math.inf
    return float(optimize.brentq(grad, 0.0, hi, xtol=1e-12, rtol=1e-12))


def max_similarity_gap(concepts: int, components: float = 1.0) -> float:
    r"""$h\,C/(C-1)$: the largest mean similarity gap on a manifold whose similarity tops out at
    $h$ (``components``: 1 for a sphere, $k$ for $\mathrm{OB}(k, d)$), at scale 1.

    Reached whenever images equal texts and each unit component has mean zero (any dimension
    $\ge 2$); with all negatives equal (the regular simplex) only in dimension $\ge C - 1$.

    Raises:
        ValueError: ``concepts < 2`` or ``components <= 0``.
    """
    _check(0.0, 2, concepts)
    if not components > 0:
        raise ValueError(f"components: expected a positive number, got {components!r}")
    return float(components) * concepts / (concepts - 1)


def min_sphere_scale(noise: float, batch_size: int, concepts: int) -> float:
    r"""$t_{\min} = g^\star (C - 1) / C$: the smallest scale with which a sphere reaches $g^\star$.

    ``math.inf`` when $g^\star$ is infinite (``noise == 0``).
    """
    g = equilibrium_gap(noise, batch_size, concepts)
    return g / max_similarity_gap(concepts)


def min_oblique_tokens(noise: float, batch_size: int, concepts: int) -> float:
    r"""$k_{\min} = \lceil g^\star (C - 1)/C \rceil$: the fewest tokens an oblique manifold needs
    to reach $g^\star$ at scale 1 (per-token dimension $\ge C - 1$).

    Returns an integral float, or ``math.inf`` when $g^\star$ is infinite; at least 1.
    """
    t = min_sphere_scale(noise, batch_size, concepts)
    if math.isinf(t):
        return math.inf
    # Guard against t landing a hair above an integer from floating-point round-off.
    return float(max(1, math.ceil(t - 1e-9)))


@dataclasses.dataclass(frozen=True)
class Equilibrium:
    """The theory's numbers for one setting (floats; ``inf`` where unbounded).

    Attributes:
        gap: $g^\\star$, the unconstrained loss-minimizing gap.
        loss: $\\mathcal{L}(g^\\star)$ (its infimum when $g^\\star = \\infty$).
        max_gap: $G_{\\max}$, the largest gap the manifold and scale allow.
        reachable_gap: $\\min(g^\\star, G_{\\max})$, where training should settle.
        reachable_loss: $\\mathcal{L}$ at ``reachable_gap``.
        sphere_scale: $t_{\\min}$ for a sphere.
        oblique_tokens: $k_{\\min}$ at scale 1.
    """

    gap: float
    loss: float
    max_gap: float
    reachable_gap: float
    reachable_loss: float
    sphere_scale: float
    oblique_tokens: float


def equilibrium(
    noise: float, batch_size: int, concepts: int, *, components: float = 1.0, max_scale: float = 1.0
) -> Equilibrium:
    r"""Every theory number for one setting: $g^\star$, its loss, and what a manifold with
    similarity top ``components`` ($h$) under scales up to ``max_scale`` can reach.

    Raises:
        ValueError: an argument out of range, or ``max_scale <= 0``.
    """
    return equilibrium_within(
        noise, batch_size, concepts, max_similarity_gap(concepts, components), max_scale=max_scale
    )


# --- what each topology can reach ---------------------------------------------------------------


def _check_radius(radius: float, curvature: float) -> None:
    if not (isinstance(radius, (int, float)) and radius >= 0 and not math.isnan(radius)):
        raise ValueError(f"radius: expected a number >= 0 (inf for no bound), got {radius!r}")
    if not (isinstance(curvature, (int, float)) and 0 < curvature < math.inf):
        raise ValueError(f"curvature: expected a positive number c (sectional curvature -c), got {curvature!r}")


def _log_cosh(x: float) -> float:
    """$\\log\\cosh x$ without overflow."""
    x = abs(x)
    return x + math.log1p(math.exp(-2.0 * x)) - math.log(2.0)


def _arccosh_from_log(log_z: float) -> float:
    """$\\operatorname{arccosh}(z)$ from $\\log z$, $z \\ge 1$, without overflow."""
    log_z = max(log_z, 0.0)
    return log_z + math.log1p(math.sqrt(max(0.0, -math.expm1(-2.0 * log_z))))


def hyperbolic_max_gap(concepts: int, radius: float, curvature: float = 1.0) -> float:
    r"""The largest mean gap of negative geodesic distances in a ball of radius $R$ of
    hyperbolic space with sectional curvature $-c$, at scale 1:

    $$ D_C(R) = \frac{1}{\sqrt c}\operatorname{arccosh}\Big(\cosh^2\rho
       + \frac{\sinh^2\rho}{C - 1}\Big), \qquad \rho = \sqrt c\,R. $$

    With similarity $s = -d$ the mean gap is
    $\bar d_- - \bar d_+ = \frac{1}{C(C-1)}\sum_{c \ne c'} d(x_c, y_{c'}) - \frac1C \sum_c d(x_c, y_c)$.
    *Upper bound.* The triangle inequality $d(x_c, y_{c'}) \le d(x_c, y_c) + d(y_c, y_{c'})$,
    averaged over the $C(C-1)$ ordered pairs, gives gap $\le \frac{1}{C(C-1)}\sum_{c\ne c'}
    d(y_c, y_{c'})$, the mean pairwise distance of $C$ points in the ball. The distance to a
    fixed point is geodesically convex, so that mean is largest with every point on the
    boundary sphere. There, for two points at angle $\theta$ seen from the centre,
    $\cosh(\sqrt c d) = \cosh^2\rho - \sinh^2\rho\,\cos\theta$ (hyperbolic law of cosines),
    a concave decreasing function $f$ of $u = \cos\theta$. Jensen's inequality and
    $\frac{1}{C(C-1)}\sum_{c\ne c'} u_{cc'} = \frac{\lVert\sum_c v_c\rVert^2 - C}{C(C-1)}
    \ge -\frac{1}{C - 1}$ ($v_c$ the unit directions) bound the mean by $f(-1/(C-1))$.
    *Attained* by $x_c = y_c$ on the boundary sphere in the directions of a regular simplex
    (all negatives equal, as the symmetric equilibrium needs), which needs space dimension
    $\ge C - 1$.

    The gap grows without bound in $R$: for $\rho \gg 1$,
    $D_C(R) \approx 2R + \frac{1}{\sqrt c}\log\frac{C}{2(C-1)}$, so $C$ points can sit nearly
    $2R$ apart. A radius (or a curvature, through $\rho = \sqrt c\,R$) therefore plays the
    part of the logit scale: hyperbolic space can supply any gap without a temperature. As
    $c \to 0$ at fixed $R$ it tends to the Euclidean ball's $R\sqrt{2C/(C-1)}$.

    Args:
        concepts: $C \ge 2$.
        radius: $R \ge 0$, the geodesic distance bound from the origin; ``inf`` for none.
        curvature: $c > 0$ (curvature $-c$).

    Returns:
        $D_C(R)$ (``inf`` for an unbounded radius).

    Raises:
        ValueError: an argument out of range.
    """
    _check(0.0, 2, concepts)
    _check_radius(radius, curvature)
    if math.isinf(radius):
        return math.inf
    rho = math.sqrt(curvature) * radius
    # z = cosh^2 rho + sinh^2 rho / (C - 1) = (C cosh^2 rho - 1) / (C - 1), in logs.
    log_cosh2 = 2.0 * _log_cosh(rho)
    log_z = math.log(concepts) + log_cosh2 + math.log1p(-math.exp(-log_cosh2) / concepts) - math.log(concepts - 1)
    return _arccosh_from_log(log_z) / math.sqrt(curvature)


def hyperbolic_radius_for_gap(gap: float, concepts: int, curvature: float = 1.0) -> float:
    r"""The inverse of [hyperbolic_max_gap][manifold_align.simulate.theory.hyperbolic_max_gap]:
    the smallest radius $R$ with $D_C(R) \ge g$,

    $$ R = \frac{1}{\sqrt c}\operatorname{arccosh}\sqrt{\frac{(C-1)\cosh(\sqrt c g) + 1}{C}}. $$

    Returns ``0.0`` for $g \le 0$ and ``inf`` for an infinite gap.

    Raises:
        ValueError: ``concepts < 2``, a NaN gap or a bad curvature.
    """
    _check(0.0, 2, concepts)
    _check_radius(0.0, curvature)
    if math.isnan(gap):
        raise ValueError("gap: got NaN")
    if gap <= 0:
        return 0.0
    if math.isinf(gap):
        return math.inf
    root_k = math.sqrt(curvature)
    # log w = log((C - 1) cosh(sqrt(K) g) + 1) - log C; rho = arccosh(sqrt(w)).
    log_w = float(np.logaddexp(math.log(concepts - 1) + _log_cosh(root_k * gap), 0.0)) - math.log(concepts)
    return _arccosh_from_log(0.5 * log_w) / root_k


def min_hyperbolic_radius(noise: float, batch_size: int, concepts: int, curvature: float = 1.0) -> float:
    r"""$R_{\min}$: the smallest radius at which hyperbolic space of curvature $-c$ reaches
    $g^\star$ at scale 1, `hyperbolic_radius_for_gap` of $g^\star$ (``inf`` at ``noise == 0``).

    Raises:
        ValueError: an argument out of range.
    """
    return hyperbolic_radius_for_gap(equilibrium_gap(noise, batch_size, concepts), concepts, curvature)


def needs_temperature(noise: float, batch_size: int, concepts: int, ceiling: float) -> bool:
    r"""Whether a topology whose largest gap at scale 1 is ``ceiling`` ($G_1$) needs a scale
    above 1 to reach the equilibrium: $g^\star > G_1$.

    Raises:
        ValueError: an argument out of range, or a negative or NaN ``ceiling``.
    """
    if not ceiling >= 0:
        raise ValueError(f"ceiling: expected a number >= 0 (inf allowed), got {ceiling!r}")
    return equilibrium_gap(noise, batch_size, concepts) > ceiling


def equilibrium_within(
    noise: float, batch_size: int, concepts: int, ceiling: float, *, max_scale: float = 1.0
) -> Equilibrium:
    r"""Every theory number for a topology whose largest gap at scale 1 is ``ceiling`` ($G_1$,
    e.g. from [topology_max_gap][manifold_align.simulate.topology.topology_max_gap]): the
    same as [equilibrium][manifold_align.simulate.theory.equilibrium] with
    $G_{\max} = t_{\max} G_1$ and the reachable gap $\min(g^\star, G_{\max})$.

    Raises:
        ValueError: an argument out of range, ``max_scale <= 0`` or ``ceiling < 0``.
    """
    if not max_scale > 0:
        raise ValueError(f"max_scale: expected a positive number, got {max_scale!r}")
    if not ceiling >= 0:
        raise ValueError(f"ceiling: expected a number >= 0 (inf allowed), got {ceiling!r}")
    g = equilibrium_gap(noise, batch_size, concepts)
    g_max = max_scale * ceiling
    reach = min(g, g_max)
    return Equilibrium(
        gap=g,
        loss=expected_loss(g, noise, batch_size, concepts),
        max_gap=g_max,
        reachable_gap=reach,
        reachable_loss=expected_loss(reach, noise, batch_size, concepts),
        sphere_scale=g / max_similarity_gap(concepts),
        oblique_tokens=min_oblique_tokens(noise, batch_size, concepts),
    )
