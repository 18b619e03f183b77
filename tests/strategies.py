"""Hypothesis strategies for points and tangent vectors, serving every manifold of the library.

Everything is drawn in float64 as ambient arrays (a seed and a pattern: Gaussian, small
integers, sparse, widely scaled) mapped onto the manifold by the manifold's own
``projx``/``proju``, so one strategy covers ``Sphere``, ``Oblique``, ``Product`` and
``Euclidean`` alike (and whatever manifold comes next), and edge cases (zero rows, ties,
axis-aligned and antipodal rows, tiny and huge entries) reach the manifold code.

* :data:`MANIFOLDS`: a small, representative set to parametrize tests over.
* :func:`points`, :func:`point_pairs` (random, identical, antipodal, nearby pairs),
  :func:`tangents` (optionally bounded per component, e.g. inside the injectivity radius),
  :func:`scaled_tangents` (norm drawn log-uniformly, e.g. from 1e-12 to 1e3).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import strategies as st

from manifold_align import ContrastiveManifold, Euclidean, Lorentz, Oblique, Product, Sphere

__all__ = [
    "MANIFOLDS",
    "component_norms",
    "is_compact",
    "manifold_params",
    "point_pairs",
    "points",
    "scaled_tangents",
    "tangents",
    "within_radius",
]


def _manifolds() -> dict[str, ContrastiveManifold]:
    return {
        "sphere2": Sphere(2),
        "sphere5": Sphere(5),
        "oblique3x4": Oblique(3, 4),
        "product": Product(Sphere(3), Oblique(2, 3), Euclidean(2)),
        "euclidean4": Euclidean(4),
        "lorentz3": Lorentz(3, curvature=0.7, radius=3.0),
        "sphere_lorentz": Product(Sphere(3), Lorentz(2, radius=3.0)),
    }


#: Representative manifolds, by test id.
MANIFOLDS: dict[str, ContrastiveManifold] = _manifolds()


def manifold_params(*, compact_only: bool = False) -> list:
    """``pytest.param`` per manifold of :data:`MANIFOLDS` (ids are the dict keys)."""
    return [
        pytest.param(m, id=name)
        for name, m in MANIFOLDS.items()
        if not (compact_only and not is_compact(m))
    ]


def within_radius(manifold: ContrastiveManifold, x: torch.Tensor) -> torch.Tensor:
    """``x`` with each hyperbolic part pulled along its geodesic to the origin to lie within
    the factor's ``radius`` (the region where `Lorentz` states its range and numerics);
    other manifolds' points are returned as they are."""
    if isinstance(manifold, Lorentz):
        v = manifold.logmap0(x)
        d = manifold.dist0(x, keepdim=True)
        shrink = torch.where(d > manifold.radius, manifold.radius / d.clamp_min(1e-300), 1.0)
        return manifold.expmap0(v * shrink)
    if isinstance(manifold, Product) and not manifold.bilinear:
        return manifold.join([within_radius(m, p) for m, p in zip(manifold.factors, manifold.split(x))])
    return x


def is_compact(manifold: ContrastiveManifold) -> bool:
    """True when every factor is a sphere or oblique manifold (bounded similarity, reached at
    $x$ and $-x$); a hyperbolic range is bounded only by its stated radius."""
    lo, hi = manifold.similarity_range
    return manifold.bilinear and math.isfinite(lo) and math.isfinite(hi)


_PATTERNS = ("gaussian", "integer", "sparse", "wide")


def _ambient(
    draw: st.DrawFn, manifold: ContrastiveManifold, batch: int, lead: tuple[int, ...] = ()
) -> torch.Tensor:
    """An ambient float64 array ``(*lead, batch, *point_shape)`` from a drawn seed and pattern.

    Patterns: ``gaussian``; ``integer`` (entries in -2..2: exact zeros, zero rows, ties,
    axis-aligned and exactly antipodal rows); ``sparse`` (70 % zeros); ``wide`` (each row
    scaled by 10^e, e in [-3, 3]). Drawing a seed rather than each coordinate keeps an
    example cheap, so 200 examples per property stay fast.
    """
    shape = (*lead, batch, *manifold.point_shape)
    pattern = draw(st.sampled_from(_PATTERNS))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**63 - 1)))
    if pattern == "integer":
        return torch.randint(-2, 3, shape, generator=g).to(torch.float64)
    a = torch.randn(shape, generator=g, dtype=torch.float64)
    if pattern == "sparse":
        return a * (torch.rand(shape, generator=g) < 0.3)
    if pattern == "wide":
        return a * 10.0 ** (6 * torch.rand((*shape[:-1], 1), generator=g, dtype=torch.float64) - 3)
    return a


@st.composite
def points(
    draw: st.DrawFn,
    manifold: ContrastiveManifold,
    batch: int = 2,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Points ``(batch, *point_shape)``: ``projx`` of an ambient array (a zero row gives ``e_1``),
    hyperbolic parts within their radius (`within_radius`)."""
    return within_radius(manifold, manifold.projx(_ambient(draw, manifold, batch))).to(dtype)


@st.composite
def point_pairs(
    draw: st.DrawFn,
    manifold: ContrastiveManifold,
    batch: int = 2,
    kinds: tuple[str, ...] = ("random", "identical", "antipodal", "near"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs ``(x, y)`` of float64 points: independent, ``y = x``, ``y = -x`` or ``y`` within 1e-6 of ``x``.

    On a hyperbolic part, where $-x$ is not a point, "antipodal" is its mirror image through
    the origin, ``projx(-x)`` (the time coordinate stays positive).
    """
    x = draw(points(manifold, batch))
    kind = draw(st.sampled_from(kinds))
    if kind == "identical":
        return x, x.clone()
    if kind == "antipodal":
        return x, (-x if manifold.bilinear else manifold.projx(-x))
    if kind == "near":
        near = manifold.projx(x + 1e-6 * _ambient(draw, manifold, batch) / 10)
        return x, within_radius(manifold, near)
    return x, draw(points(manifold, batch))


def component_norms(
    manifold: ContrastiveManifold, x: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """:math:`\\|u\\|` per component (token, sphere row, Euclidean coordinate), broadcast to ``u``."""
    return manifold.component_inner(x, u).clamp_min(0).sqrt().expand_as(u)


@st.composite
def tangents(
    draw: st.DrawFn, manifold: ContrastiveManifold, x: torch.Tensor, max_norm: float | None = None
) -> torch.Tensor:
    """Tangent vectors at ``x``: ``proju`` of an ambient array, each component's norm <= ``max_norm``."""
    lead = tuple(x.shape[: x.dim() - len(manifold.point_shape) - 1])
    batch = x.shape[x.dim() - len(manifold.point_shape) - 1]
    u = manifold.proju(x, _ambient(draw, manifold, batch, lead).to(x.dtype))
    if max_norm is not None:
        norms = component_norms(manifold, x, u)
        u = u * torch.where(
            norms > max_norm, max_norm / norms.clamp_min(1e-300), torch.ones_like(norms)
        )
    return u


@st.composite
def scaled_tangents(
    draw: st.DrawFn, manifold: ContrastiveManifold, x: torch.Tensor, log10_norm: tuple[float, float]
) -> torch.Tensor:
    """Tangent vectors at ``x`` with total norm :math:`10^e` (at most), ``e`` uniform in ``log10_norm``.

    Computed in float64 from ``x`` and cast to ``x.dtype``; a zero direction stays zero.
    """
    x64 = x.to(torch.float64)
    u = draw(tangents(manifold, x64))
    exponent = draw(st.floats(*log10_norm))
    n = manifold.norm(x64, u, keepdim=True)
    n = n.reshape(*n.shape, *([1] * (u.dim() - n.dim())))
    u = torch.where(n > 0, u * (10.0**exponent / n.clamp_min(1e-300)), torch.zeros_like(u))
    # A rounding-level draw (ambient parallel to x) was blown up to a non-tangent direction:
    # project again, which keeps every genuine draw and shrinks those.
    return manifold.proju(x64, u).to(x.dtype)
