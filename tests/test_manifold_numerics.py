"""Numerics at the edges: zero vectors, identical and antipodal points, tangent norms from
1e-12 to 1e3, half precision, autocast, and finite gradients where the math is smooth."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import MANIFOLDS, manifold_params, points, scaled_tangents

from manifold_align import Euclidean, Oblique, Product, Sphere

COMPACT = manifold_params(compact_only=True)
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
SPHERES = [
    pytest.param(Sphere(4), id="sphere"),
    pytest.param(Oblique(3, 4), id="oblique"),
    pytest.param(Product(Sphere(3), Oblique(2, 3)), id="product"),
]


def unit_error(m, x: torch.Tensor) -> float:
    """max |‖x_i‖ - 1| over the sphere rows of a point of a sphere-only manifold."""
    parts = m.split(x) if isinstance(m, Product) else [x]
    return max(float((p.float().norm(dim=-1) - 1).abs().max()) for p in parts)


def rounding(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def up(t: torch.Tensor) -> torch.Tensor:
    """Half precision to float32 for checking; float32/float64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


# --- zero vectors, tiny and huge inputs ---------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", SPHERES)
def test_projx_of_zero_is_e1_per_token(m, dtype):
    x = m.projx(torch.zeros(2, *m.point_shape, dtype=dtype))
    assert x.dtype == dtype and torch.isfinite(x).all()
    assert torch.equal(x, m.origin(2, *m.point_shape, dtype=dtype))
    assert unit_error(m, x) == 0


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [
        (torch.float32, 1e-37),  # squares underflow to 0
        (torch.float32, 1e30),  # squares overflow to inf
        (torch.float64, 1e-300),
        (torch.float64, 1e300),
        (torch.bfloat16, 1e-30),
        (torch.float16, 1e-4),
        (torch.float16, 6e4),
    ],
)
def test_projx_of_tiny_and_huge_vectors_keeps_the_direction(dtype, scale):
    m = Sphere(3)
    direction = torch.tensor([3.0, -4.0, 0.0], dtype=torch.float64) / 5
    x = m.projx((direction * scale).to(dtype))
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x.double(), direction, atol=4 * rounding(dtype), rtol=0)


@pytest.mark.parametrize("m", SPHERES)
def test_projx_gradient_is_finite_at_zero(m):
    x = torch.zeros(2, *m.point_shape, requires_grad=True)
    m.projx(x).sum().backward()
    assert torch.isfinite(x.grad).all()


# --- identical and antipodal points -------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", SPHERES)
def test_dist_is_exactly_zero_between_identical_points(m, dtype):
    x = m.random(64, *m.point_shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    assert torch.all(m.dist(x, x) == 0)
    assert torch.all(m.logmap(x, x) == 0)
    assert torch.all(m.dist(x, x.clone()) == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", SPHERES)
def test_antipodal_points_give_pi_per_token_and_a_finite_tangent_log(m, dtype):
    x = m.random(32, *m.point_shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    x = torch.cat(
        [x, m.origin(1, *m.point_shape, dtype=dtype)]
    )  # axis-aligned: exact zero remainder
    y = -x
    n_tokens = sum(f.tokens if isinstance(f, Oblique) else 1 for f in getattr(m, "factors", [m]))
    expected = torch.full((len(x),), math.pi * math.sqrt(n_tokens), dtype=up(x).dtype)
    torch.testing.assert_close(up(m.dist(x, y)), expected, atol=8 * rounding(dtype), rtol=0)
    v = m.logmap(x, y)
    assert torch.isfinite(v).all()
    assert m.check_vector_on_tangent(up(x), up(v), atol=16 * rounding(dtype), rtol=0)
    torch.testing.assert_close(up(m.norm(x, v)), expected, atol=8 * rounding(dtype), rtol=0)
    torch.testing.assert_close(up(m.expmap(x, v)), up(y), atol=16 * rounding(dtype), rtol=0)
    assert torch.isfinite(m.transp_parallel(x, y, m.proju(x, torch.ones_like(x)))).all()


def test_log_of_exactly_antipodal_axis_points_is_deterministic():
    m = Sphere(3)
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    v = m.logmap(x, -x)
    # The fallback direction is P_x e_j, j = argmin |x_i| (first such index).
    torch.testing.assert_close(v, torch.tensor([[0.0, math.pi, 0.0], [math.pi, 0.0, 0.0]]))


@pytest.mark.parametrize("m", SPHERES)
def test_nearly_antipodal_points(m):
    g = torch.Generator().manual_seed(2)
    x = m.random(64, *m.point_shape, dtype=torch.float64, generator=g)
    y = m.projx(-x + 1e-9 * torch.randn(x.shape, generator=g, dtype=torch.float64))
    v = m.logmap(x, y)
    assert m.check_vector_on_tangent(x, v, atol=1e-12, rtol=0)
    torch.testing.assert_close(m.norm(x, v), m.dist(x, y), atol=1e-12, rtol=0)
    torch.testing.assert_close(m.expmap(x, v), y, atol=1e-8, rtol=0)


# --- tangent vectors from 1e-12 to 1e3 --------------------------------------------------


@pytest.mark.parametrize("m", COMPACT)
@given(data=st.data())
def test_retr_and_expmap_stay_on_manifold_for_tangents_from_1e_12_to_1e3(m, data):
    dtype = data.draw(st.sampled_from(DTYPES))
    x = data.draw(points(m, batch=3)).to(dtype)
    u = data.draw(scaled_tangents(m, x, log10_norm=(-12.0, 3.0)))
    for y in (m.retr(x, u), m.expmap(x, u)):
        assert y.dtype == dtype and torch.isfinite(y).all()
        assert m.check_point_on_manifold(up(y), atol=4 * rounding(dtype), rtol=0)


@pytest.mark.parametrize("m", COMPACT)
@given(data=st.data())
def test_log_inverts_exp_for_tangents_from_1e_12_to_3(m, data):
    """Absolute error at rounding level of the point, relative error tiny above it."""
    dtype = data.draw(st.sampled_from([torch.float64, torch.float32]))
    x = data.draw(points(m, batch=3)).to(dtype)
    u = data.draw(scaled_tangents(m, x, log10_norm=(-12.0, math.log10(3.0))))
    v = m.logmap(x, m.expmap(x, u))
    assert torch.isfinite(v).all()
    torch.testing.assert_close(v, u, atol=32 * rounding(dtype), rtol=64 * rounding(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_expmap_of_tiny_tangents_is_first_order_exact(dtype):
    """exp_x(u) = x + u - |u|^2 x / 2 + O(|u|^3): the series branch is not a crude cut-off."""
    m = Sphere(3)
    x = torch.tensor([0.0, 0.6, 0.8], dtype=dtype)
    for t in (1e-12, 1e-6, 1e-3, 9e-3, 1.1e-2):
        u = torch.tensor([t, 0.0, 0.0], dtype=dtype)
        want = torch.tensor(
            [math.sin(t), 0.6 * math.cos(t), 0.8 * math.cos(t)], dtype=torch.float64
        )
        torch.testing.assert_close(m.expmap(x, u).double(), want, atol=2 * rounding(dtype), rtol=0)


# --- finite gradients at u = 0 and x = y ---------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m", manifold_params())
def test_expmap_gradient_at_zero_tangent_is_the_identity_on_the_tangent_space(m, dtype):
    x = m.random(2, *m.point_shape, dtype=dtype, generator=torch.Generator().manual_seed(3))
    w = m.proju(x, torch.randn(x.shape, dtype=dtype, generator=torch.Generator().manual_seed(4)))
    u = torch.zeros_like(x, requires_grad=True)
    (grad,) = torch.autograd.grad((m.expmap(x, u) * w).sum(), u)
    assert torch.isfinite(grad).all()
    # d/du <exp_x(u), w> at u = 0 is w (for tangent w) along every tangent direction v.
    if m.bilinear:  # proju is the Euclidean-orthogonal projection there
        torch.testing.assert_close(m.proju(x, grad), w, atol=8 * rounding(dtype), rtol=0)
    else:  # Minkowski metric: compare the directional derivatives <grad, v> = <w, v>
        v = m.proju(x, torch.randn(x.shape, dtype=dtype, generator=torch.Generator().manual_seed(5)))
        scale = 1 + float((grad.abs() * v.abs()).sum(-1).amax())
        torch.testing.assert_close(
            (grad * v).sum(-1), (w * v).sum(-1), atol=8 * scale * rounding(dtype), rtol=0
        )


@pytest.mark.parametrize("m", manifold_params())
def test_gradients_at_identical_points_are_finite(m):
    x = m.random(3, *m.point_shape, generator=torch.Generator().manual_seed(5))
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    outputs = {
        "dist": m.dist(a, b).sum(),
        "dist2": m.dist2(a, b).sum(),
        "logmap": (m.logmap(a, b) * torch.ones_like(x)).sum(),
        "norm": m.norm(a, b - a).sum(),
        "transp_parallel": (m.transp_parallel(a, b, m.proju(a, torch.ones_like(x)))).sum(),
    }
    for name, out in outputs.items():
        if not out.requires_grad:  # Euclidean transport does not depend on the points
            continue
        ga, gb = torch.autograd.grad(out, (a, b), allow_unused=True)
        for g in (ga, gb):
            assert g is None or torch.isfinite(g).all(), name
    # d(dist^2) vanishes at x = y; d(logmap)/dy is the tangent projection there.
    ga, gb = torch.autograd.grad(m.dist2(a, b).sum(), (a, b))
    assert torch.all(ga == 0) and torch.all(gb == 0)


@pytest.mark.parametrize("m", SPHERES)
def test_norm_gradient_at_zero_is_finite(m):
    x = m.random(2, *m.point_shape, generator=torch.Generator().manual_seed(6))
    u = torch.zeros_like(x, requires_grad=True)
    m.norm(x, u).sum().backward()
    assert torch.all(u.grad == 0)


# --- half precision and autocast ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m", manifold_params())
def test_half_inputs_are_computed_in_float32_and_returned_in_their_dtype(m, dtype):
    g = torch.Generator().manual_seed(7)
    x = m.random(8, *m.point_shape, generator=g).to(dtype)
    y = m.random(8, *m.point_shape, generator=g).to(dtype)
    u = m.proju(x, torch.randn(x.shape, generator=g).to(dtype))
    xf, yf, uf = x.float(), y.float(), u.float()
    pairs = {
        "projx": (m.projx(x), m.projx(xf)),
        "proju": (m.proju(x, u), m.proju(xf, uf)),
        "retr": (m.retr(x, u), m.retr(xf, uf)),
        "expmap": (m.expmap(x, u), m.expmap(xf, uf)),
        "logmap": (m.logmap(x, y), m.logmap(xf, yf)),
        "dist": (m.dist(x, y), m.dist(xf, yf)),
        "inner": (m.inner(x, u), m.inner(xf, uf)),
        "component_inner": (m.component_inner(x, u), m.component_inner(xf, uf)),
        "transp": (m.transp(x, y, u), m.transp(xf, yf, uf)),
        "transp_parallel": (m.transp_parallel(x, y, u), m.transp_parallel(xf, yf, uf)),
        "mean": (m.mean(x), m.mean(xf)),
    }
    for name, (half, full) in pairs.items():
        assert half.dtype == dtype, name
        assert torch.isfinite(half).all(), name
        # One rounding to the half dtype at the end, relative to the output's scale.
        scale = 1 + full.abs().amax()
        torch.testing.assert_close(
            half.float(), full, atol=float(scale) * rounding(dtype), rtol=0, msg=name
        )


@pytest.mark.parametrize("m", manifold_params())
def test_similarity_runs_in_float32_under_autocast(m):
    g = torch.Generator().manual_seed(8)
    x = m.random(5, *m.point_shape, generator=g)
    y = m.random(7, *m.point_shape, generator=g)
    def exact(a, b):  # the flat matmul, or (not bilinear) the similarity of the float64 points
        if m.bilinear:
            return m.flatten(a.float()) @ m.flatten(b.float()).T
        return m.similarity(a.double(), b.double()).float()

    want = exact(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m.similarity(x, y)
        got_half = m.similarity(x.bfloat16(), y.bfloat16())
        got64 = m.similarity(x.double(), y.double())
    assert got.dtype == torch.float32 and got_half.dtype == torch.float32
    assert got64.dtype == torch.float64
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)  # not rounded to bfloat16
    torch.testing.assert_close(got_half, exact(x.bfloat16(), y.bfloat16()))


def test_similarity_supports_leading_batch_dimensions():
    m = Oblique(2, 3)
    g = torch.Generator().manual_seed(9)
    x = m.random(4, 5, 2, 3, generator=g)
    y = m.random(4, 6, 2, 3, generator=g)
    s = m.similarity(x, y)
    assert s.shape == (4, 5, 6)
    torch.testing.assert_close(s, torch.einsum("bnkd,bmkd->bnm", x, y))


# --- means of cancelling tokens ----------------------------------------------------------------


@pytest.mark.parametrize("karcher", [False, True])
@pytest.mark.parametrize("m", SPHERES)
def test_mean_of_cancelling_points_is_a_valid_point(m, karcher):
    x = m.random(3, *m.point_shape, generator=torch.Generator().manual_seed(10))
    both = torch.stack([x, -x], dim=1)  # (3, 2, ...): each pair sums to zero
    mean = m.mean(both, dim=1, karcher=karcher)
    assert mean.shape == x.shape and torch.isfinite(mean).all()
    assert m.check_point_on_manifold(mean)
    if not karcher:  # documented: a zero weighted sum gives e_1 per token, like projx(0)
        assert torch.equal(mean, m.origin(3, *m.point_shape))


def test_karcher_mean_differs_from_extrinsic_and_matches_the_arc_midpoint():
    """Two points on a great circle: the Karcher mean with weights (1, 3) sits at 3/4 of the arc."""
    m = Sphere(2)
    angles = torch.tensor([0.0, 2.0], dtype=torch.float64)
    x = torch.stack([angles.cos(), angles.sin()], -1)
    w = torch.tensor([1.0, 3.0], dtype=torch.float64)
    k = m.mean(x, weights=w, karcher=True)
    torch.testing.assert_close(k, torch.tensor([math.cos(1.5), math.sin(1.5)], dtype=torch.float64))
    e = m.mean(x, weights=w)
    assert float(m.dist(e, k)) > 1e-3  # the extrinsic mean is a different (cheaper) point


def test_euclidean_mean_is_the_weighted_average():
    m = Euclidean(2)
    x = torch.tensor([[0.0, 0.0], [4.0, 8.0]])
    for karcher in (False, True):
        out = m.mean(x, weights=torch.tensor([3.0, 1.0]), karcher=karcher)
        torch.testing.assert_close(out, torch.tensor([1.0, 2.0]))


def test_manifolds_of_the_strategy_module_are_all_exercised():
    assert {type(m).__name__ for m in MANIFOLDS.values()} == {
        "Sphere",
        "Oblique",
        "Product",
        "Euclidean",
        "Lorentz",
    }


@pytest.mark.parametrize("manifold", [Sphere(4), Oblique(3, 4)], ids=repr)
def test_nan_input_is_not_hidden_behind_a_valid_point(manifold):
    """A NaN row must stay NaN (for the guards to name it), never become a valid point."""
    x = manifold.random(2, *manifold.point_shape)
    bad = x.clone()
    bad[0, ..., 0] = float("nan")
    for out in (manifold.projx(bad), manifold.retr(x, bad - x)):
        assert torch.isnan(out[0]).any()
        assert torch.isfinite(out[1]).all()
