"""Lorentz (hyperboloid) manifold: geoopt cross-check in float64, numerics of the stable
distance, half precision, the documented radius, the learnable curvature, and products."""

from __future__ import annotations

import math

import geoopt
import pytest
import torch

from manifold_align import Lorentz, Product, Sphere

CURVATURES = [0.3, 1.0, 2.5]


def sample(m: Lorentz, n: int, seed: int, dtype=torch.float64, spread: float = 1.0):
    """Points at distance ~spread from the origin (wrapped normal)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, m.dim + 1, dtype=dtype, generator=g) * spread / math.sqrt(m.dim)
    return m.expmap0(u)


@pytest.mark.parametrize("c", CURVATURES)
def test_every_operation_matches_geoopt_lorentz_in_float64(c):
    # geoopt stores k = 1/c in the default dtype (float32) unless given a float64 tensor
    m, ref = Lorentz(5, curvature=c), geoopt.Lorentz(k=torch.tensor(1 / c, dtype=torch.float64))
    x, y = sample(m, 16, 0, spread=2.0), sample(m, 16, 1, spread=2.0)
    g = torch.Generator().manual_seed(2)
    a = torch.randn(16, 6, dtype=torch.float64, generator=g)
    u, v = m.proju(x, a), m.proju(x, torch.randn(16, 6, dtype=torch.float64, generator=g))
    u = 1.5 * u / m.norm(x, u, keepdim=True)  # a step of length 1.5
    close = dict(atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(m.projx(a), ref.projx(a), **close)
    torch.testing.assert_close(m.proju(x, a), ref.proju(x, a), **close)
    torch.testing.assert_close(m.egrad2rgrad(x, a), ref.egrad2rgrad(x, a.clone()), **close)
    torch.testing.assert_close(m.inner(x, u, v), ref.inner(x, u, v), **close)
    torch.testing.assert_close(m.norm(x, u), ref.norm(u), **close)
    torch.testing.assert_close(m.expmap(x, u), ref.expmap(x, u), **close)
    torch.testing.assert_close(m.retr(x, u), ref.retr(x, u), **close)
    torch.testing.assert_close(m.logmap(x, y), ref.logmap(x, y), **close)
    torch.testing.assert_close(m.dist(x, y), ref.dist(x, y), **close)
    torch.testing.assert_close(m.transp(x, y, u), ref.transp(x, y, u), **close)
    torch.testing.assert_close(m.logmap0(y), ref.logmap0(y), **close)
    torch.testing.assert_close(m.dist0(y), ref.dist0(y), **close)
    w = m.logmap0(y)
    torch.testing.assert_close(m.expmap0(w), ref.expmap0(w), **close)
    o = torch.zeros(3, 6, dtype=torch.float64)
    o[:, 0] = 1 / math.sqrt(c)
    torch.testing.assert_close(m.origin(3, 6, dtype=torch.float64), o, **close)
    assert ref.check_point_on_manifold(o)
    # the similarity is minus geoopt's distance of every pair, from one matmul
    torch.testing.assert_close(
        m.similarity(x, y), -ref.dist(x[:, None], y[None]), atol=1e-7, rtol=1e-9
    )
    assert m.check_point_on_manifold(x) and ref.check_point_on_manifold(x)
    assert m.check_vector_on_tangent(x, u)  # (geoopt's own check fails on a float64 k)


def test_distance_of_nearby_points_is_accurate_in_float32_where_arccosh_is_not():
    m = Lorentz(8)
    x = sample(m, 64, 3)
    g = torch.Generator().manual_seed(13)
    y = m.expmap(x, m.proju(x, 1e-4 * torch.randn(64, 9, dtype=torch.float64, generator=g)))
    exact = m.dist(x, y)  # float64
    got = m.dist(x.float(), y.float()).double()
    # rounding the coordinates (~1) to float32 moves the points by ~1e-7: 1e-3 of 1e-4
    torch.testing.assert_close(got, exact, atol=0, rtol=5e-3)
    # the textbook arccosh(-c<x, y>_L) in float32 is off by orders of magnitude here
    xf, yf = x.float(), y.float()
    z = (-(xf[:, 1:] * yf[:, 1:]).sum(-1) + xf[:, 0] * yf[:, 0]).clamp_min(1)
    assert float((torch.acosh(z).double() - exact).abs().amax()) > 10 * float(
        (got - exact).abs().amax()
    )
    assert torch.all(m.dist(x.float(), x.float()) == 0)


def test_gradients_are_finite_at_the_origin_and_at_identical_points():
    m = Lorentz(4)
    u = torch.zeros(3, 5, requires_grad=True)
    (g,) = torch.autograd.grad(m.expmap0(u).sum(), u)
    assert torch.isfinite(g).all()
    o = m.origin(3, 5).requires_grad_(True)
    (g,) = torch.autograd.grad(m.logmap0(o).sum() + m.dist0(o).sum(), o)
    assert torch.isfinite(g).all()
    x = sample(m, 6, 4, dtype=torch.float32)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    s = m.similarity(a, b)
    ga, gb = torch.autograd.grad(s.sum(), (a, b))
    assert torch.isfinite(ga).all() and torch.isfinite(gb).all()
    # identical rows: the diagonal's similarity is 0 to sqrt(eps) x_0
    assert float(s.detach().diagonal().abs().amax()) < 1e-2
    # the origin against itself: exactly 0, gradient 0
    o2 = m.origin(2, 5).requires_grad_(True)
    s0 = m.similarity(o2, o2)
    (g0,) = torch.autograd.grad(s0.diagonal().sum(), o2)
    assert torch.all(s0.diagonal() == 0) and torch.all(g0 == 0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_give_a_float32_similarity_close_to_the_exact_one(dtype):
    m = Lorentz(16)
    x, y = sample(m, 32, 5), sample(m, 32, 6)
    got = m.similarity(x.to(dtype), y.to(dtype))
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    # rounding the coordinates to the half dtype moves each point by ~eps x_0
    tol = 8 * math.sqrt(torch.finfo(dtype).eps)
    torch.testing.assert_close(got.double(), m.similarity(x, y), atol=tol, rtol=0)


def test_nothing_overflows_in_float32_within_forty_over_sqrt_c():
    m = Lorentz(8, curvature=4.0, radius=20.0)  # sqrt(c) r = 40
    g = torch.Generator().manual_seed(7)
    v = torch.randn(16, 9, generator=g)
    v = v / v[:, 1:].norm(dim=-1, keepdim=True) * 20.0
    x = m.expmap0(v)  # float32, distance 20 from the origin
    assert torch.isfinite(x).all()
    torch.testing.assert_close(m.dist0(x), torch.full((16,), 20.0), rtol=1e-5, atol=0)
    s = m.similarity(x, x.flip(0))
    assert torch.isfinite(s).all() and float(s.amin()) >= m.similarity_range[0] - 1e-3
    # a tangent step far beyond any radius is clamped, never inf
    near = sample(m, 16, 12, dtype=torch.float32)
    huge = m.proju(near, 1e6 * torch.randn(16, 9, generator=g))
    assert torch.isfinite(m.expmap(near, huge)).all()


def test_similarity_range_is_stated_for_the_radius():
    assert Lorentz(4).similarity_range == (-10.0, 0.0)
    assert Lorentz(4, radius=math.inf).similarity_range == (-math.inf, 0.0)
    m = Lorentz(3, radius=2.0)
    far = m.expmap0(torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, -2.0, 0.0, 0.0]]))
    torch.testing.assert_close(m.similarity(far[:1], far[1:]), torch.tensor([[-4.0]]))


def test_learnable_curvature_is_a_log_parameter_with_gradient_and_a_clamp():
    m = Lorentz(4, curvature=2.0, learnable=True, curvature_bounds=(0.5, 4.0))
    assert [n for n, _ in m.named_parameters()] == ["log_curvature"]
    assert m.log_curvature.dim() == 0
    torch.testing.assert_close(m.curvature, torch.tensor(2.0))
    u = torch.randn(8, 5, generator=torch.Generator().manual_seed(8))
    x = m.expmap0(u)
    assert m.check_point_on_manifold(x)
    m.similarity(x, x.flip(0)).sum().backward()
    assert m.log_curvature.grad is not None and torch.isfinite(m.log_curvature.grad)
    with torch.no_grad():
        m.log_curvature.fill_(10.0)
    m.clamp_()
    torch.testing.assert_close(m.curvature, torch.tensor(4.0))
    with torch.no_grad():
        m.log_curvature.fill_(-10.0)
    Product(Sphere(3), m).clamp_()  # a product clamps its factors
    torch.testing.assert_close(m.curvature, torch.tensor(0.5))
    with pytest.raises(ValueError, match="curvature_bounds"):
        Lorentz(4, curvature=20.0, learnable=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"curvature": 0.0}, "curvature"), ({"curvature": -1.0}, "curvature"),
     ({"curvature": math.inf}, "curvature"), ({"radius": 0.0}, "radius")],
)
def test_bad_constructor_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Lorentz(4, **kwargs)


def test_mean_is_the_lorentzian_centroid_on_the_manifold():
    m = Lorentz(3)
    x = sample(m, 7, 9, spread=2.0)
    mean = m.mean(x)
    assert m.check_point_on_manifold(mean, atol=1e-12, rtol=0)
    # the centroid is the rescaled sum, a point; copies of one point average to it
    s = x.sum(0)
    torch.testing.assert_close(mean / mean[0], s / s[0])
    torch.testing.assert_close(m.mean(x[:1].expand(4, 4)), x[0])


def test_product_with_a_lorentz_factor_sums_the_similarities_and_the_ranges():
    sph, hyp = Sphere(4), Lorentz(3, radius=2.0)
    p = Product(sph, hyp)
    assert not p.bilinear and p.similarity_range == (-1.0 - 4.0, 1.0)
    x = p.random(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    y = p.random(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    (xs, xh), (ys, yh) = p.split(x), p.split(y)
    torch.testing.assert_close(p.similarity(x, y), sph.similarity(xs, ys) + hyp.similarity(xh, yh))
    assert p.check_point_on_manifold(p.mean(x))
