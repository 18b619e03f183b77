"""Points off the manifold are named, not silently turned into out-of-range similarities."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from manifold_align import Euclidean, Oblique, Product, Sphere
from manifold_align.losses import InfoNCE, SigmoidLoss
from manifold_align.manifolds.base import MEMBERSHIP_ATOL

MANIFOLDS = [Sphere(6), Oblique(3, 4), Product(Sphere(3), Oblique(2, 2))]


def sample(m, b=5, seed=0):
    return m.random(b, *m.point_shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("m", MANIFOLDS, ids=repr)
def test_deviation_is_the_largest_row_norm_error(m):
    x = sample(m)
    assert float(m.deviation(x)) < 1e-6
    assert m.deviation(x).shape == ()
    assert float(m.deviation(3 * x)) == pytest.approx(2.0, abs=1e-6)  # every norm is 3
    y = x.clone()
    y[2] *= 1.5  # one point off by 0.5
    assert float(m.deviation(y)) == pytest.approx(0.5, abs=1e-6)
    y[4].view(-1)[0] = float("nan")
    assert math.isnan(float(m.deviation(y)))
    assert m.deviation(x.double()).dtype == torch.float64
    assert m.deviation(x.bfloat16()).dtype == torch.float32


def test_deviation_of_euclidean_is_zero_and_the_generic_residual():
    m = Euclidean(3)
    assert float(m.deviation(100 * torch.randn(4, 3))) == 0.0


def test_deviation_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match=r"^x: expected shape \(\.\.\., 3, 4\)"):
        Oblique(3, 4).deviation(torch.ones(2, 12))


@pytest.mark.parametrize("m", MANIFOLDS, ids=repr)
def test_check_membership_names_the_input_the_deviation_and_the_tolerance(m):
    x = sample(m)
    m.check_membership(x, "image")  # on the manifold: nothing
    with pytest.raises(ValueError) as info:
        m.check_membership(2 * x, "text")
    msg = str(info.value)
    assert msg.startswith(f"text: not on {m!r}: ")
    assert "= 1 exceeds the tolerance 0.01" in msg and "projx" in msg
    m.check_membership(1.005 * x, "x")  # rounding-sized errors pass
    nan = x.clone()
    nan[0].view(-1)[0] = float("nan")
    m.check_membership(nan, "x")  # non-finite: check_finite's and the guard's to name
    with pytest.raises(ValueError, match=r"exceeds the tolerance 0\.001"):
        m.check_membership(1.005 * x, "x", atol=1e-3)


def test_product_names_each_factors_formula():
    m = Product(Sphere(3), Oblique(2, 2))
    with pytest.raises(ValueError, match=r"max of \(Sphere\(dim=3\): max \|norm\(x_i\) - 1\|"):
        m.check_membership(2 * sample(m), "image")


@pytest.mark.parametrize("criterion", [InfoNCE, SigmoidLoss])
@pytest.mark.parametrize("m", [Sphere(8), Oblique(4, 8)], ids=repr)
def test_losses_refuse_features_off_the_manifold_by_default(criterion, m):
    x, y = sample(m, 6), sample(m, 6, seed=1)
    raw = 4 * y  # features that were never normalised: similarities up to 4x the range
    with pytest.raises(ValueError, match=r"^text: not on .*= 3 exceeds the tolerance 0\.01"):
        criterion(m)(x, raw)
    with pytest.raises(ValueError, match=r"^image: not on "):
        criterion(m)(raw, y)
    assert criterion(m).check_points
    assert torch.isfinite(criterion(m, check_points=False)(x, raw).loss)  # opted out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_features_normalised_in_half_precision_pass(dtype):
    m = Oblique(16, 32)
    g = torch.randn(64, 16, 32, generator=torch.Generator().manual_seed(0)).to(dtype)
    g.requires_grad_()
    x = F.normalize(g, dim=-1)  # half-precision arithmetic
    assert float(m.deviation(x)) < MEMBERSHIP_ATOL
    assert float(m.deviation(x.float())) < MEMBERSHIP_ATOL  # rounded, then cast back
    InfoNCE(m)(x, x.flip(0)).loss.backward()


def test_encoding_refuses_an_encoder_whose_points_are_off_the_manifold():
    from manifold_align.evaluate.encode import encode_batches

    m = Oblique(4, 8)
    good = [sample(m, 3), sample(m, 2, seed=1)]
    assert encode_batches(lambda x: x, good, m, name="encode_images").shape == (5, 4, 8)
    with pytest.raises(ValueError, match=r"^encode_images: batch 1: not on Oblique.*= 1 exceeds"):
        encode_batches(lambda x: x, [good[0], 2 * good[1]], m, name="encode_images")
