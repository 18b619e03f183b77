r"""What each topology can reach: the largest mean similarity gap at scale 1, and the radius
bound that makes hyperbolic space finite.

Hyperbolic space is unbounded, so its points are kept within geodesic distance $R$ of the
origin, the `Lorentz` manifold's ``radius`` (the model heads keep their points there; the toy
moves them back after every step with `confine_`, as CLIP clamps its scale). A topology's
ceiling $G_1$ is the largest mean gap $s_+ - s_-$ of concept-level similarities at scale 1
(module [theory][manifold_align.simulate.theory]):

| topology | $G_1$ | exact when |
|---|---|---|
| `Sphere(d)` | $\frac{C}{C-1}$ | $d \ge C - 1$ (regular simplex) |
| `Oblique(k, d)` | $k\,\frac{C}{C-1}$ | $d \ge C - 1$ |
| `Lorentz(n, c, radius=R)` | $D_C(R) = \frac{1}{\sqrt c}\operatorname{arccosh}\big(\cosh^2\sqrt c R + \frac{\sinh^2 \sqrt c R}{C-1}\big)$ | $n \ge C - 1$ |
| `Lorentz(n, c, radius=inf)` | $\infty$ | |
| `Euclidean(d)` | $\infty$ | |
| `Product(M_1, ..., M_m)` | $\sum_j G_1(M_j)$ | each factor's condition |

A product's similarity is the sum of its factors', and each factor's points are free, so the
mean gap is the sum of the factors' mean gaps and each can sit at its own maximum at once. With
a scale at most $t_{\max}$ the ceiling is $t_{\max} G_1$, and a temperature is needed exactly
when $g^\star > G_1$.
"""

from __future__ import annotations

import math

import torch

from manifold_align.manifolds import (
    ContrastiveManifold,
    Euclidean,
    Lorentz,
    Oblique,
    Product,
    Sphere,
)
from manifold_align.simulate import theory

__all__ = ["confine_", "initial_points", "min_lorentz_radius", "topology_kind", "topology_max_gap"]


def _leaves(manifold: ContrastiveManifold) -> list[ContrastiveManifold]:
    """The non-product factors of ``manifold``, in point order (a non-product is its own leaf)."""
    if isinstance(manifold, Product):
        return [leaf for m in manifold.factors for leaf in _leaves(m)]
    return [manifold]


def topology_kind(manifold: ContrastiveManifold) -> str:
    """``"sphere"``, ``"oblique"``, ``"lorentz"``, ``"euclidean"`` or ``"product"``.

    Raises:
        TypeError: a manifold the theory does not cover.
    """
    for cls, name in ((Product, "product"), (Sphere, "sphere"), (Oblique, "oblique"),
                      (Lorentz, "lorentz"), (Euclidean, "euclidean")):
        if isinstance(manifold, cls):
            return name
    raise TypeError(f"manifold: no reachability theory for {type(manifold).__name__}")


def _leaf_max_gap(m: ContrastiveManifold, concepts: int) -> float:
    if isinstance(m, Sphere):
        return theory.max_similarity_gap(concepts)
    if isinstance(m, Oblique):
        return theory.max_similarity_gap(concepts, m.tokens)
    if isinstance(m, Lorentz):
        return theory.hyperbolic_max_gap(concepts, m.radius, m.c)
    if isinstance(m, Euclidean):
        return math.inf
    raise TypeError(f"manifold: no reachability theory for {type(m).__name__}")


def topology_max_gap(manifold: ContrastiveManifold, concepts: int) -> float:
    r"""$G_1$: the largest mean similarity gap ``manifold`` allows at scale 1 (module docstring),
    with each `Lorentz` factor inside its ``radius`` of the origin.

    Args:
        manifold: a `Sphere`, `Oblique`, `Lorentz`, `Euclidean` or a `Product` of them.
        concepts: $C \ge 2$.

    Returns:
        $G_1$, ``inf`` when unbounded.

    Raises:
        ValueError: ``concepts < 2``.
        TypeError: a manifold the theory does not cover.
    """
    return float(sum(_leaf_max_gap(m, concepts) for m in _leaves(manifold)))


def min_lorentz_radius(manifold: ContrastiveManifold, gap: float, concepts: int) -> float | None:
    r"""With exactly one `Lorentz` factor: the smallest radius for it with which ``manifold``
    reaches ``gap`` at scale 1, the other factors at their ceilings:
    $R$ with $D_C(R) = g - \sum_{j \ne \text{Lorentz}} G_1(M_j)$ (``0.0`` when they suffice).

    Returns:
        The radius, or ``None`` without a `Lorentz` factor or with several.

    Raises:
        TypeError: a manifold the theory does not cover.
    """
    leaves = _leaves(manifold)
    hyper = [i for i, m in enumerate(leaves) if isinstance(m, Lorentz)]
    if len(hyper) != 1:
        return None
    rest = sum(_leaf_max_gap(m, concepts) for i, m in enumerate(leaves) if i != hyper[0])
    return theory.hyperbolic_radius_for_gap(gap - rest, concepts, leaves[hyper[0]].c)


def initial_points(
    manifold: ContrastiveManifold, shape: tuple[int, ...], generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""The toy's starting points: ``projx`` of a standard normal $z$ of ``shape``
    (``(*batch, *point_shape)``), except that each `Lorentz` factor's part is
    $\exp_o\big((0, z_s)/\sqrt n\big)$ (a wrapped normal about $1$ from the origin, as
    `Lorentz.random`): projecting $z$ itself would put $n$-dimensional points near radius
    $\operatorname{asinh}\sqrt n$, where moving sideways costs $\sinh r$ times more and the
    toy's free points would need far more steps to pair up. Sphere and oblique points are
    exactly what ``manifold.projx(torch.randn(shape, generator=generator))`` gives.
    """
    z = torch.randn(shape, generator=generator)
    leaves = _leaves(manifold)
    if not any(isinstance(m, Lorentz) for m in leaves):
        return manifold.projx(z)
    flat = manifold.flatten(z)
    parts, offset = [], 0
    for m in leaves:
        part = flat[..., offset : offset + m.flat_dim]
        offset += m.flat_dim
        parts.append(m.expmap0(part / math.sqrt(m.dim)) if isinstance(m, Lorentz) else m.projx(m.unflatten(part)))
    return manifold.unflatten(torch.cat([m.flatten(p) for m, p in zip(leaves, parts, strict=True)], dim=-1))


@torch.no_grad()
def confine_(manifold: ContrastiveManifold, points: torch.Tensor) -> None:
    r"""Move, in place, every `Lorentz` factor's part of ``points`` that lies farther than its
    ``radius`` $R$ from the origin back onto the sphere of radius $R$, along its geodesic from
    the origin: with $\rho = \sqrt c R$, $x_0 \leftarrow \cosh\rho/\sqrt c$ and
    $x_s \leftarrow x_s \sinh\rho / (\sqrt c \lVert x_s\rVert)$ (the distance from the origin
    is $\operatorname{asinh}(\sqrt c \lVert x_s\rVert)/\sqrt c$). Other factors, and
    `Lorentz` factors with ``radius = inf``, are untouched. The toy calls it after every step,
    as a model head keeps its points inside the radius.

    Args:
        manifold: the manifold of ``points``.
        points: ``(..., *manifold.point_shape)`` points on it, changed in place.
    """
    leaves = _leaves(manifold)
    if not any(isinstance(m, Lorentz) and math.isfinite(m.radius) for m in leaves):
        return
    # A manifold with a Lorentz leaf is Lorentz or a Product: one point axis, so ``points``
    # is already flat and the slices below are views of it.
    flat = points
    offset = 0
    for m in leaves:
        part = flat[..., offset : offset + m.flat_dim]
        offset += m.flat_dim
        if isinstance(m, Lorentz) and math.isfinite(m.radius):
            _confine_lorentz_(part, m.radius, m.c)


def _confine_lorentz_(x: torch.Tensor, radius: float, curvature: float) -> None:
    root_c = math.sqrt(curvature)
    rho = root_c * radius
    time, space = x[..., :1], x[..., 1:]
    norm = space.norm(dim=-1, keepdim=True)
    outside = norm * root_c > math.sinh(rho)  # asinh(sqrt(c) |x_s|) / sqrt(c) > R
    shrink = (math.sinh(rho) / root_c) / norm.clamp_min(torch.finfo(x.dtype).tiny)
    space.copy_(torch.where(outside, space * shrink, space))
    time.copy_(torch.where(outside, torch.full_like(time, math.cosh(rho) / root_c), time))
