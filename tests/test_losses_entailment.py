"""MERU's entailment-cone loss on Lorentz points: formula, cone geometry, finite gradients,
and the per-pair form under data parallelism (the mean of per-rank means is the loss)."""

from __future__ import annotations

import math

import pytest
import torch

from manifold_align import Lorentz, Sphere
from manifold_align.losses import EntailmentConeLoss


def space_only_reference(t, v, c, k):
    """MERU's formulas written on space parts only, float64."""
    ts, vs = t[:, 1:], v[:, 1:]
    t0 = torch.sqrt(1 / c + (ts * ts).sum(-1))
    v0 = torch.sqrt(1 / c + (vs * vs).sum(-1))
    aperture = torch.asin((2 * k / (math.sqrt(c) * ts.norm(dim=-1))).clamp(-1, 1))
    cxy = c * ((ts * vs).sum(-1) - t0 * v0)
    angle = torch.acos((v0 + cxy * t0) / (ts.norm(dim=-1) * torch.sqrt(cxy**2 - 1)))
    return torch.relu(angle - aperture).mean()


def pairs(m, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = m.expmap0(torch.randn(n, m.dim + 1, dtype=torch.float64, generator=g))
    v = m.expmap0(torch.randn(n, m.dim + 1, dtype=torch.float64, generator=g))
    return t, v


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_loss_is_merus_formula(c):
    m = Lorentz(5, curvature=c)
    t, v = pairs(m)
    out = EntailmentConeLoss(m)(v, t)
    torch.testing.assert_close(out.loss, space_only_reference(t, v, c, 0.1), atol=1e-5, rtol=1e-5)
    assert 0 <= float(out.diagnostics["violated"]) <= 1


def test_image_further_along_the_ray_is_inside_and_the_origin_side_is_outside():
    m = Lorentz(4)
    cone = EntailmentConeLoss(m)
    u = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = m.expmap0(u)
    inside = m.expmap0(2 * u)  # same direction, further from the origin
    torch.testing.assert_close(cone.exterior_angle(t, inside), torch.zeros(8, dtype=t.dtype), atol=2e-3, rtol=0)
    assert float(cone(inside, t).loss) == 0
    behind = m.expmap0(0.2 * u)  # between the origin and the text
    assert torch.all(cone.exterior_angle(t, behind) > 3.0)
    assert float(cone(behind, t).loss) > 1.0


def test_gradients_are_finite_at_the_origin_and_at_identical_points():
    m = Lorentz(4, learnable=True)
    cone = EntailmentConeLoss(m)
    t = m.origin(3, 5).requires_grad_(True)
    v = m.random(3, 5).requires_grad_(True)
    cone(v, t).loss.backward()
    assert torch.isfinite(t.grad).all() and torch.isfinite(v.grad).all()
    x = m.random(3, 5, generator=torch.Generator().manual_seed(2))
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    cone(a, b).loss.backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert torch.isfinite(m.log_curvature.grad)


def test_each_rank_its_own_pairs_then_the_average_is_the_full_batch_loss():
    m = Lorentz(5)
    t, v = pairs(m, 12, seed=3)
    cone = EntailmentConeLoss(m)
    t.requires_grad_(True)
    full = cone(v, t).loss
    (g_full,) = torch.autograd.grad(full, t)
    shares = [cone(v[r::3], t[r::3]).loss for r in range(3)]  # 3 ranks, 4 pairs each
    mean = sum(shares) / 3
    (g_ranks,) = torch.autograd.grad(mean, t)
    torch.testing.assert_close(mean, full)
    torch.testing.assert_close(g_ranks, g_full)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="manifold"):
        EntailmentConeLoss(Sphere(4))
    with pytest.raises(ValueError, match="min_radius"):
        EntailmentConeLoss(Lorentz(4), min_radius=0.0)
    with pytest.raises(ValueError, match="image, text"):
        EntailmentConeLoss(Lorentz(4))(torch.zeros(3, 5), torch.zeros(2, 5))
