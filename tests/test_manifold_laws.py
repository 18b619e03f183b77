"""Manifold laws, property-based, for every manifold (profile ``ci``: 200 examples per property)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    MANIFOLDS,
    component_norms,
    is_compact,
    manifold_params,
    point_pairs,
    points,
    tangents,
)

ALL = manifold_params()
ATOL = 1e-9  # float64 throughout this module


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_projx_lands_on_manifold_and_is_idempotent(m, data):
    raw = data.draw(points(m, batch=3))
    ambient = data.draw(tangents(m, raw)) * 3 + 0.5 * raw  # an arbitrary ambient array
    x = m.projx(ambient)
    assert m.check_point_on_manifold(x, atol=ATOL, rtol=0)
    torch.testing.assert_close(m.projx(x), x, atol=ATOL, rtol=0)


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_proju_is_idempotent_and_orthogonal(m, data):
    x = data.draw(points(m, batch=3))
    a = data.draw(tangents(m, x)) + 2.5 * x  # ambient vector with a normal part
    w = data.draw(tangents(m, x))
    u = m.proju(x, a)
    assert m.check_vector_on_tangent(x, u, atol=ATOL, rtol=0)
    torch.testing.assert_close(m.proju(x, u), u, atol=ATOL, rtol=1e-12)
    # Rounding level: |a| |w| eps, and w itself is tangent only to ~eps times its ambient draw.
    scale = 1e-12 * (1 + m.norm(x, a)) * (1 + m.norm(x, w))
    # The removed part a - P a is normal: orthogonal to every tangent vector w.
    assert torch.all(m.inner(x, a - u, w).abs() <= scale)
    # P_x is the orthogonal projection: <P a, w> = <a, w> for tangent w.
    assert torch.all((m.inner(x, u, w) - m.inner(x, a, w)).abs() <= scale)


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_retr_and_expmap_stay_on_manifold(m, data):
    x = data.draw(points(m, batch=3))
    u = data.draw(tangents(m, x)) * data.draw(st.sampled_from([1e-8, 1e-2, 1.0, 30.0]))
    assert m.check_point_on_manifold(m.retr(x, u), atol=1e-12, rtol=0)
    assert m.check_point_on_manifold(m.expmap(x, u), atol=1e-12, rtol=0)


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_logmap_inverts_expmap_inside_injectivity_radius(m, data):
    x = data.draw(points(m, batch=3))
    u = data.draw(tangents(m, x, max_norm=3.0))  # each token's norm < pi
    torch.testing.assert_close(m.logmap(x, m.expmap(x, u)), u, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_expmap_follows_the_geodesic(m, data):
    """exp_x(s u) then exp_x(t u) are d-apart by |t - s| |u| when within the injectivity radius."""
    x = data.draw(points(m, batch=2))
    u = data.draw(tangents(m, x, max_norm=1.0))
    s, t = 0.3, 1.2
    d = m.dist(m.expmap(x, s * u), m.expmap(x, t * u))
    torch.testing.assert_close(d, (t - s) * m.norm(x, u), atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_dist_is_a_metric_and_the_norm_of_logmap(m, data):
    x, y = data.draw(point_pairs(m, batch=3))
    z = data.draw(points(m, batch=3))
    dxy, dyx = m.dist(x, y), m.dist(y, x)
    torch.testing.assert_close(dxy, dyx, atol=1e-12, rtol=1e-12)
    assert torch.all(m.dist(x, x) == 0)
    assert torch.all(dxy >= 0)
    assert torch.all(m.dist(x, z) <= dxy + m.dist(y, z) + 1e-12)
    torch.testing.assert_close(m.norm(x, m.logmap(x, y)), dxy, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(m.dist2(x, y), dxy**2, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_logmap_is_tangent_and_expmap_of_it_reaches_y(m, data):
    x, y = data.draw(point_pairs(m, batch=3))
    v = m.logmap(x, y)
    assert m.check_vector_on_tangent(x, v, atol=1e-9, rtol=0)
    torch.testing.assert_close(m.expmap(x, v), y, atol=1e-7, rtol=0)


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_transports_return_tangent_vectors(m, data):
    x, y = data.draw(point_pairs(m, batch=3))
    v = data.draw(tangents(m, x))
    assert m.check_vector_on_tangent(y, m.transp(x, y, v), atol=1e-9, rtol=0)
    assert m.check_vector_on_tangent(y, m.transp_parallel(x, y, v), atol=1e-9, rtol=0)


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_parallel_transport_is_an_isometry(m, data):
    x, y = data.draw(point_pairs(m, batch=3, kinds=("random", "identical", "near")))
    v, w = data.draw(tangents(m, x)), data.draw(tangents(m, x))
    # Exclude (nearly) antipodal tokens, where the geodesic is not unique.
    assert_ok = component_norms(m, x, m.logmap(x, y)) < 3.0
    if not bool(assert_ok.all()):
        return
    tv, tw = m.transp_parallel(x, y, v), m.transp_parallel(x, y, w)
    torch.testing.assert_close(m.inner(y, tv, tw), m.inner(x, v, w), atol=1e-8, rtol=1e-8)
    # Transport along the geodesic carries the geodesic's own velocity: log_x y -> -log_y x.
    torch.testing.assert_close(
        m.transp_parallel(x, y, m.logmap(x, y)), -m.logmap(y, x), atol=1e-8, rtol=1e-8
    )


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_egrad2rgrad_matches_finite_differences(m, data):
    x = data.draw(points(m, batch=2))
    u = data.draw(tangents(m, x, max_norm=1.0))
    a = data.draw(tangents(m, x)) + x  # coefficients of a smooth test function

    def f(p: torch.Tensor) -> torch.Tensor:
        return (a * p).sum() + 0.5 * (a * p**2).sum() + torch.sin(p).sum()

    p = x.clone().requires_grad_(True)
    (egrad,) = torch.autograd.grad(f(p), p)
    rgrad = m.egrad2rgrad(x, egrad)
    h = 1e-5
    f_plus, f_minus = f(m.expmap(x, h * u)), f(m.expmap(x, -h * u))
    fd = (f_plus - f_minus) / (2 * h)
    # the central difference loses ~eps |f| / h to rounding: with Euclidean coordinates in the
    # hundreds, |f| reaches 1e7 and that alone is 1e-4, so the tolerance carries it
    rounding = 10 * torch.finfo(x.dtype).eps * float(f_plus.abs() + f_minus.abs()) / (2 * h)
    torch.testing.assert_close(m.inner(x, rgrad, u).sum(), fd, atol=1e-6 + rounding, rtol=1e-5)
    assert m.check_vector_on_tangent(x, rgrad, atol=1e-9, rtol=0)


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_component_inner_sums_to_inner(m, data):
    x = data.draw(points(m, batch=2))
    u, v = data.draw(tangents(m, x)), data.draw(tangents(m, x))
    torch.testing.assert_close(
        _sum_of_components(m, x, u, v), m.inner(x, u, v), atol=1e-9, rtol=1e-9
    )


def _sum_of_components(m, x, u, v):
    """Sum of ``component_inner`` over each point's distinct components: a ``Product``
    expands each factor's scalars over its slice, so sum per factor; any other manifold
    returns one entry per component (``(..., 1)``, ``(..., k, 1)``, ``(..., d)``)."""
    if hasattr(m, "factors"):
        parts = zip(m.factors, m.split(x), m.split(u), m.split(v))
        return sum(_sum_of_components(f, *p) for f, *p in parts)
    c = m.component_inner(x, u, v)
    return c.sum(dim=tuple(range(1, c.dim())))


@pytest.mark.parametrize("m", ALL)
@given(data=st.data())
def test_similarity_is_the_flat_matmul_and_stays_in_range(m, data):
    x = data.draw(points(m, batch=3))
    y = data.draw(points(m, batch=4))
    s = m.similarity(x, y)
    assert s.shape == (3, 4)
    if m.bilinear:
        torch.testing.assert_close(s, m.flatten(x) @ m.flatten(y).T, atol=1e-12, rtol=0)
    else:  # the sum of the factors' similarities, a hyperbolic factor's being -d(x, y)
        parts = zip(m.factors, m.split(x), m.split(y)) if hasattr(m, "factors") else [(m, x, y)]
        expected = sum(
            -f.dist(a[:, None], b[None]) if not f.bilinear else f.similarity(a, b)
            for f, a, b in parts
        )
        # one matmul: q = |x|^2 + |y|^2 - 2<x, y> cancels for near pairs, so the distance
        # there is good to sqrt(eps) x_0 (1e-7 within radius 3), not to eps as dist is
        torch.testing.assert_close(s, expected, atol=1e-6, rtol=1e-9)
    lo, hi = m.similarity_range
    assert torch.all(s >= lo - 1e-12) and torch.all(s <= hi + 1e-12)
    if is_compact(m):  # the ends are reached: x against itself and against its antipode
        torch.testing.assert_close(
            m.similarity(x, x).diagonal(), torch.full((3,), hi, dtype=x.dtype)
        )
        torch.testing.assert_close(
            m.similarity(x, -x).diagonal(), torch.full((3,), lo, dtype=x.dtype)
        )


@pytest.mark.parametrize("m", ALL)
@settings(max_examples=50)  # each example runs a Karcher iteration (~12 exp/log steps)
@given(data=st.data())
def test_mean_lands_on_manifold_and_karcher_is_stationary(m, data):
    center = data.draw(points(m, batch=1))
    spread = data.draw(tangents(m, center.expand(5, *m.point_shape).clone(), max_norm=0.5))
    xs = m.expmap(center, spread)
    w = torch.tensor(
        data.draw(st.lists(st.floats(0.1, 2.0), min_size=5, max_size=5)), dtype=xs.dtype
    )
    mean = m.mean(xs, weights=w)
    assert mean.shape == m.point_shape
    assert m.check_point_on_manifold(mean, atol=1e-12, rtol=0)
    karcher = m.mean(xs, weights=w, karcher=True)
    assert m.check_point_on_manifold(karcher, atol=1e-12, rtol=0)
    # First-order optimality: sum_i w_i log_m(x_i) = 0.
    grad = (w.reshape(5, *([1] * len(m.point_shape))) * m.logmap(karcher, xs)).sum(0)
    torch.testing.assert_close(grad, torch.zeros_like(grad), atol=1e-9, rtol=0)
    # The mean of copies of one point is that point.
    torch.testing.assert_close(m.mean(xs[:1].expand(3, *m.point_shape)), xs[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("m", ALL)
def test_random_and_origin_lie_on_manifold(m):
    g = torch.Generator().manual_seed(0)
    x = m.random(64, *m.point_shape, dtype=torch.float64, generator=g)
    assert x.shape == (64, *m.point_shape) and x.dtype == torch.float64
    assert m.check_point_on_manifold(x, atol=1e-12, rtol=0)
    assert len(torch.unique(m.flatten(x), dim=0)) == 64
    o = m.origin(2, *m.point_shape)
    assert m.check_point_on_manifold(o) and torch.equal(o[0], o[1])


def test_repr_names_the_manifold_and_its_sizes():
    assert repr(MANIFOLDS["sphere5"]) == "Sphere(dim=5)"
    assert repr(MANIFOLDS["oblique3x4"]) == "Oblique(tokens=3, dim=4)"
    assert repr(MANIFOLDS["euclidean4"]) == "Euclidean(dim=4)"
    assert repr(MANIFOLDS["product"]) == (
        "Product(Sphere(dim=3), Oblique(tokens=2, dim=3), Euclidean(dim=2))"
    )
    assert repr(MANIFOLDS["lorentz3"]) == "Lorentz(dim=3, curvature=0.7, radius=3)"
    assert repr(MANIFOLDS["sphere_lorentz"]) == (
        "Product(Sphere(dim=3), Lorentz(dim=2, curvature=1, radius=3))"
    )
    assert [m.ndim for m in MANIFOLDS.values()] == [1, 1, 2, 1, 1, 1, 1]


def test_random_is_uniform_on_the_sphere():
    """Uniform on S^{d-1}: E[x] = 0 and E[x x^T] = I/d (the uniform law's moments)."""
    m = MANIFOLDS["sphere5"]
    x = m.random(20000, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x.mean(0), torch.zeros(5, dtype=x.dtype), atol=0.02, rtol=0)
    torch.testing.assert_close(x.T @ x / len(x), torch.eye(5, dtype=x.dtype) / 5, atol=0.01, rtol=0)
