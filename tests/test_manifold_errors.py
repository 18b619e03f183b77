"""Bad input raises a ValueError/TypeError that names the argument, what it got and what it expected."""

from __future__ import annotations

import geoopt
import numpy as np
import pytest
import torch
from strategies import manifold_params

from manifold_align import ContrastiveManifold, Euclidean, Oblique, Product, Sphere


@pytest.mark.parametrize(
    ("factory", "exc", "match"),
    [
        (lambda: Sphere(1), ValueError, r"dim: expected an integer >= 2, got 1"),
        (lambda: Sphere(0), ValueError, r"dim: expected an integer >= 2, got 0"),
        (lambda: Sphere(3.0), TypeError, r"dim: expected an integer >= 2, got 3.0"),
        (lambda: Sphere(True), TypeError, r"dim: expected an integer >= 2, got True"),
        (lambda: Sphere("3"), TypeError, r"dim: expected an integer"),
        (lambda: Oblique(0, 4), ValueError, r"tokens: expected an integer >= 1, got 0"),
        (lambda: Oblique(-2, 4), ValueError, r"tokens: expected an integer >= 1, got -2"),
        (lambda: Oblique(2, 1), ValueError, r"dim: expected an integer >= 2, got 1"),
        (lambda: Oblique(2.5, 4), TypeError, r"tokens: expected an integer"),
        (lambda: Euclidean(0), ValueError, r"dim: expected an integer >= 1, got 0"),
        (lambda: Product(), ValueError, r"manifolds: expected at least one factor"),
        (
            lambda: Product(Sphere(3), 3),
            TypeError,
            r"manifolds\[1\]: expected a ContrastiveManifold.*got int",
        ),
        (lambda: Product(geoopt.Sphere()), TypeError, r"manifolds\[0\].*got Sphere"),
    ],
)
def test_constructor_arguments_are_validated(factory, exc, match):
    with pytest.raises(exc, match=match):
        factory()


def test_numpy_integers_are_accepted():
    assert Oblique(np.int64(2), np.int32(3)).point_shape == (2, 3)


@pytest.mark.parametrize("m", manifold_params())
def test_wrong_trailing_shape_names_the_argument_the_shape_and_the_expected_shape(m):
    x = m.random(2, *m.point_shape)
    bad = torch.randn(2, *m.point_shape[:-1], m.point_shape[-1] + 1)
    expected = ", ".join(map(str, m.point_shape))
    cases = {
        "x": lambda: m.projx(bad),
        "u": lambda: m.proju(x, bad),
        "y": lambda: m.dist(x, bad),
        "v": lambda: m.transp(x, x, bad),
    }
    for name, call in cases.items():
        with pytest.raises(ValueError) as info:
            call()
        msg = str(info.value)
        assert msg.startswith(f"{name}:"), msg
        assert str(tuple(bad.shape)) in msg and f"(..., {expected})" in msg, msg


@pytest.mark.parametrize("m", manifold_params())
def test_every_operation_checks_its_arguments(m):
    x = m.random(2, *m.point_shape)
    bad = torch.randn(2, m.flat_dim + 1)
    ops = {
        "projx": lambda: m.projx(bad),
        "proju": lambda: m.proju(x, bad),
        "egrad2rgrad": lambda: m.egrad2rgrad(x, bad),
        "inner": lambda: m.inner(x, x, bad),
        "component_inner": lambda: m.component_inner(x, bad),
        "norm": lambda: m.norm(x, bad),
        "retr": lambda: m.retr(x, bad),
        "expmap": lambda: m.expmap(x, bad),
        "logmap": lambda: m.logmap(x, bad),
        "dist": lambda: m.dist(x, bad),
        "dist2": lambda: m.dist2(x, bad),
        "transp": lambda: m.transp(x, bad, x),
        "transp_parallel": lambda: m.transp_parallel(bad, x, x),
        "similarity": lambda: m.similarity(x, bad),
        "mean": lambda: m.mean(bad),
        "flatten": lambda: m.flatten(bad),
        "unflatten": lambda: m.unflatten(bad),
        "random": lambda: m.random(*bad.shape),
        "origin": lambda: m.origin(*bad.shape),
    }
    for name, call in ops.items():
        with pytest.raises(ValueError, match=r"^\w+: "):
            call()
        assert name  # all raised


@pytest.mark.parametrize("m", manifold_params())
def test_mismatched_dtypes_raise_type_error_naming_both(m):
    x = m.random(2, *m.point_shape)
    u = m.proju(x, torch.randn_like(x))
    with pytest.raises(TypeError, match=r"u has dtype torch.float64 but x has dtype torch.float32"):
        m.proju(x, u.double())
    with pytest.raises(
        TypeError, match=r"y has dtype torch.bfloat16 but x has dtype torch.float32"
    ):
        m.similarity(x, x.bfloat16())
    with pytest.raises(
        TypeError, match=r"x: expected a floating-point tensor, got dtype torch.int64"
    ):
        m.projx(x.long())
    with pytest.raises(TypeError, match=r"u: expected a torch.Tensor, got ndarray"):
        m.proju(x, u.numpy())


@pytest.mark.parametrize("m", manifold_params())
def test_mismatched_devices_raise_type_error_naming_both(m):
    x = m.random(2, *m.point_shape)
    on_meta = torch.empty_like(x, device="meta")
    with pytest.raises(TypeError, match=r"y is on meta but x is on cpu"):
        m.dist(x, on_meta)


@pytest.mark.parametrize("m", manifold_params())
def test_batch_shapes_that_do_not_broadcast_raise_value_error(m):
    x = m.random(3, *m.point_shape)
    u = torch.zeros(4, *m.point_shape)
    with pytest.raises(
        ValueError, match=r"x, u: batch shapes do not broadcast \(got x \(3, .*\), u \(4, "
    ):
        m.proju(x, u)
    with pytest.raises(ValueError, match=r"x, y: leading batch shapes do not broadcast"):
        m.similarity(m.random(2, 3, *m.point_shape), m.random(5, 3, *m.point_shape))


@pytest.mark.parametrize("m", manifold_params())
def test_similarity_needs_a_batch_axis(m):
    one = m.random(*m.point_shape) if m.point_shape else None
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., n, "):
        m.similarity(one, m.random(2, *m.point_shape))


def test_oblique_unflatten_names_a_length_that_tokens_does_not_divide():
    m = Oblique(3, 4)
    with pytest.raises(
        ValueError,
        match=r"x: flat length 10 \(shape \(2, 10\)\) is not divisible by tokens=3; expected 12 = 3 x 4",
    ):
        m.unflatten(torch.zeros(2, 10))
    with pytest.raises(
        ValueError, match=r"x: expected trailing size 12 = 3 x 4 .* got shape \(2, 15\)"
    ):
        m.unflatten(torch.zeros(2, 15))
    torch.testing.assert_close(
        m.unflatten(torch.arange(24.0).reshape(2, 12)), torch.arange(24.0).reshape(2, 3, 4)
    )


@pytest.mark.parametrize("m", manifold_params())
def test_flatten_and_unflatten_are_inverse(m):
    x = m.random(2, 3, *m.point_shape)
    flat = m.flatten(x)
    assert flat.shape == (2, 3, m.flat_dim)
    assert torch.equal(m.unflatten(flat), x)


def test_mean_validates_dim_and_weights():
    m = Oblique(2, 3)
    x = m.random(4, 2, 3)
    with pytest.raises(
        ValueError, match=r"dim: expected a batch dimension of x \(one of \[0\]\), got 1"
    ):
        m.mean(x, dim=1)
    with pytest.raises(ValueError, match=r"dim: .* got -1"):
        m.mean(x, dim=-1)
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 2, 3\)"):
        m.mean(torch.zeros(4, 3, 2))
    with pytest.raises(
        ValueError, match=r"weights: expected shape \(4,\) \(x.shape\[0\]\), got \(3,\)"
    ):
        m.mean(x, weights=torch.ones(3))
    with pytest.raises(
        ValueError, match=r"weights: expected finite, non-negative entries with a positive sum"
    ):
        m.mean(x, weights=torch.tensor([1.0, -1.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"weights: expected finite, non-negative"):
        m.mean(x, weights=torch.zeros(4))
    with pytest.raises(ValueError, match=r"weights: expected finite"):
        m.mean(x, weights=torch.tensor([1.0, float("nan"), 1.0, 1.0]))
    with pytest.raises(TypeError, match=r"weights: expected a floating-point tensor"):
        m.mean(x, weights=torch.ones(4, dtype=torch.long))


@pytest.mark.parametrize("karcher", [False, True], ids=["extrinsic", "karcher"])
@pytest.mark.parametrize("m", manifold_params())
def test_mean_of_an_empty_set_is_an_error(m, karcher):
    # The mean of no points is undefined; it used to come back as projx(0) (a basis vector).
    empty = torch.zeros(0, 3, *m.point_shape)
    with pytest.raises(ValueError, match=r"x: expected at least one point along dim 0, got 0"):
        m.mean(empty, karcher=karcher)
    with pytest.raises(ValueError, match=r"x: expected at least one point along dim 1, got 0"):
        m.mean(empty.transpose(0, 1), dim=1, karcher=karcher)
    with pytest.raises(ValueError, match=r"x: expected at least one point"):
        m.mean(empty, weights=torch.zeros(0), karcher=karcher)


def test_geoopt_checks_report_the_offending_quantity():
    m = Oblique(2, 3)
    x = m.random(4, 2, 3)
    ok, reason = m.check_point_on_manifold(2 * x, explain=True)
    assert not ok and "norm(x_i) != 1" in reason
    ok, reason = m.check_vector_on_tangent(x, x, explain=True)
    assert not ok and "<x_i, u_i> != 0" in reason
    ok, reason = m.check_point(torch.zeros(4, 3, 2), explain=True)
    assert not ok and reason == f"x: expected shape (..., 2, 3) for {m!r}, got (4, 3, 2)"
    p = Product(Sphere(2), Euclidean(1))
    ok, reason = p.check_point_on_manifold(torch.tensor([3.0, 0.0, 7.0]), explain=True)
    assert not ok and reason.startswith("factor 0 (Sphere(dim=2)): `norm(x) != 1`")
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 2, 3\)"):
        geoopt.ManifoldParameter(torch.zeros(3, 2), manifold=m)


def test_every_manifold_is_a_contrastive_and_a_geoopt_manifold():
    for m in (Sphere(3), Oblique(2, 3), Product(Sphere(3)), Euclidean(2)):
        assert isinstance(m, ContrastiveManifold) and isinstance(m, geoopt.Manifold)
