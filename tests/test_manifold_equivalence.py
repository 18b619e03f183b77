"""``Oblique(1, d)`` is ``Sphere(d)`` and ``Oblique(k, d)`` is ``Product`` of ``k`` ``Sphere(d)``, on every operation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import point_pairs, points, tangents

from manifold_align import Oblique, Product, Sphere

K, D = 3, 4
OBLIQUE = Oblique(K, D)
PRODUCT = Product(*[Sphere(D) for _ in range(K)])
OBLIQUE1 = Oblique(1, D)
SPHERE = Sphere(D)


def as_sphere(t: torch.Tensor) -> torch.Tensor:
    """An ``Oblique(1, d)`` tensor ``(..., 1, d)`` as a ``Sphere(d)`` tensor ``(..., d)``."""
    return t.squeeze(-2)


def as_product(t: torch.Tensor) -> torch.Tensor:
    """An ``Oblique(k, d)`` tensor ``(..., k, d)`` as a ``Product`` tensor ``(..., k * d)``."""
    return t.flatten(-2)


# (name, call(m, x, y, u, v)) over every operation that takes points and tangent vectors.
OPERATIONS: list[tuple[str, Callable]] = [
    ("projx", lambda m, x, y, u, v: m.projx(u + 0.5 * x)),
    ("proju", lambda m, x, y, u, v: m.proju(x, u + 2 * y)),
    ("egrad2rgrad", lambda m, x, y, u, v: m.egrad2rgrad(x, u + 2 * y)),
    ("inner", lambda m, x, y, u, v: m.inner(x, u, v)),
    ("inner_keepdim", lambda m, x, y, u, v: m.inner(x, u, v, keepdim=True)),
    ("norm", lambda m, x, y, u, v: m.norm(x, u)),
    ("retr", lambda m, x, y, u, v: m.retr(x, u)),
    ("expmap", lambda m, x, y, u, v: m.expmap(x, u)),
    ("logmap", lambda m, x, y, u, v: m.logmap(x, y)),
    ("dist", lambda m, x, y, u, v: m.dist(x, y)),
    ("dist2", lambda m, x, y, u, v: m.dist2(x, y)),
    ("transp", lambda m, x, y, u, v: m.transp(x, y, u)),
    ("transp_parallel", lambda m, x, y, u, v: m.transp_parallel(x, y, u)),
    ("retr_transp", lambda m, x, y, u, v: m.retr_transp(x, u, v)),
    ("expmap_transp", lambda m, x, y, u, v: m.expmap_transp(x, u, v)),
    ("similarity", lambda m, x, y, u, v: m.similarity(x, y)),
    ("mean", lambda m, x, y, u, v: m.mean(x)),
]


def flat(
    out: torch.Tensor | tuple, to_other: Callable[[torch.Tensor], torch.Tensor], point_like: bool
) -> list:
    outs = out if isinstance(out, tuple) else (out,)
    return [to_other(o) if point_like and o.dim() >= 2 else o for o in outs]


POINT_VALUED = {
    "projx",
    "proju",
    "egrad2rgrad",
    "retr",
    "expmap",
    "logmap",
    "transp",
    "transp_parallel",
    "retr_transp",
    "expmap_transp",
    "mean",
}


def _draw(data: st.DataObject, m: Oblique) -> tuple[torch.Tensor, ...]:
    x, y = data.draw(point_pairs(m, batch=3))
    u, v = data.draw(tangents(m, x, max_norm=2.0)), data.draw(tangents(m, x))
    return x, y, u, v


def _scalar_shape(name: str, out: torch.Tensor) -> torch.Tensor:
    """``inner(keepdim=True)``/``dist(keepdim=True)`` keep one axis per point axis: (..., 1, 1) vs (..., 1)."""
    return out.squeeze(-1) if name.endswith("keepdim") else out


@given(data=st.data())
def test_oblique_k_equals_product_of_k_spheres(data):
    x, y, u, v = _draw(data, OBLIQUE)
    other = [as_product(t) for t in (x, y, u, v)]
    for name, op in OPERATIONS:
        ob, pr = op(OBLIQUE, x, y, u, v), op(PRODUCT, *other)
        for a, b in zip(
            flat(ob, as_product, name in POINT_VALUED), flat(pr, lambda t: t, False), strict=True
        ):
            torch.testing.assert_close(_scalar_shape(name, a), b, atol=1e-12, rtol=1e-12, msg=name)


@given(data=st.data())
def test_oblique_1_equals_sphere(data):
    x, y, u, v = _draw(data, OBLIQUE1)
    other = [as_sphere(t) for t in (x, y, u, v)]
    for name, op in OPERATIONS:
        ob, sp = op(OBLIQUE1, x, y, u, v), op(SPHERE, *other)
        for a, b in zip(
            flat(ob, as_sphere, name in POINT_VALUED), flat(sp, lambda t: t, False), strict=True
        ):
            torch.testing.assert_close(_scalar_shape(name, a), b, atol=1e-12, rtol=1e-12, msg=name)


@settings(max_examples=50)  # a Karcher iteration per example
@given(data=st.data())
def test_karcher_means_agree(data):
    x = data.draw(points(OBLIQUE, batch=1))
    u = data.draw(tangents(OBLIQUE, x.expand(4, K, D).contiguous(), max_norm=0.5))
    xs = OBLIQUE.expmap(x, u)
    ob = OBLIQUE.mean(xs, karcher=True)
    torch.testing.assert_close(
        as_product(ob), PRODUCT.mean(as_product(xs), karcher=True), atol=1e-12, rtol=0
    )
    one = OBLIQUE1.mean(xs[:, :1], karcher=True)
    torch.testing.assert_close(
        as_sphere(one), SPHERE.mean(xs[:, 0], karcher=True), atol=1e-12, rtol=0
    )


@given(data=st.data())
def test_component_inner_agrees(data):
    x = data.draw(points(OBLIQUE, batch=2))
    u, v = data.draw(tangents(OBLIQUE, x)), data.draw(tangents(OBLIQUE, x))
    ob = OBLIQUE.component_inner(x, u, v)
    assert ob.shape == (2, K, 1)
    pr = PRODUCT.component_inner(as_product(x), as_product(u), as_product(v))
    torch.testing.assert_close(as_product(ob.expand(2, K, D)), pr, atol=1e-12, rtol=0)
    one = OBLIQUE1.component_inner(x[:, :1], u[:, :1], v[:, :1])
    torch.testing.assert_close(as_sphere(one), SPHERE.component_inner(x[:, 0], u[:, 0], v[:, 0]))


def test_ranges_shapes_checks_and_sampling_agree():
    assert OBLIQUE.similarity_range == PRODUCT.similarity_range == (-3.0, 3.0)
    assert OBLIQUE1.similarity_range == SPHERE.similarity_range == (-1.0, 1.0)
    assert OBLIQUE.flat_dim == PRODUCT.flat_dim == K * D
    assert torch.equal(as_product(OBLIQUE.origin(2, K, D)), PRODUCT.origin(2, K * D))
    assert torch.equal(as_sphere(OBLIQUE1.origin(2, 1, D)), SPHERE.origin(2, D))
    # Same generator, same draws: Oblique(1, d) samples exactly what Sphere(d) samples.
    a = OBLIQUE1.random(5, 1, D, generator=torch.Generator().manual_seed(0))
    b = SPHERE.random(5, D, generator=torch.Generator().manual_seed(0))
    assert torch.equal(as_sphere(a), b)
    bad = torch.ones(2, K, D)
    assert not OBLIQUE.check_point_on_manifold(bad) and not PRODUCT.check_point_on_manifold(
        as_product(bad)
    )
    x = OBLIQUE.random(2, K, D)
    assert OBLIQUE.check_point_on_manifold(x) and PRODUCT.check_point_on_manifold(as_product(x))
    assert not OBLIQUE.check_vector_on_tangent(x, x) and not PRODUCT.check_vector_on_tangent(
        as_product(x), as_product(x)
    )
