"""Half-precision inputs at the largest allowed scale: float32 arithmetic, finite values."""

from __future__ import annotations

import math

import pytest
import torch

from manifold_align import Oblique, Sphere
from manifold_align.losses import InfoNCE, SigmoidLoss, Temperature

HALF = [torch.bfloat16, torch.float16]
# Sphere at CLIP's cap (logits up to 100); Oblique(16, 8) at the same cap: logits up to 1600.
CASES = [(Sphere(32), 100.0), (Oblique(16, 8), 100.0)]
CRITERIA = {
    "dense": lambda m, t: InfoNCE(m, t),
    "tiled": lambda m, t: InfoNCE(m, t, tile_size=3),
    "sigmoid": lambda m, t: SigmoidLoss(m, t),
}


def points(m, b, seed):
    g = torch.Generator().manual_seed(seed)
    return m.projx(torch.randn(b, *m.point_shape, generator=g))


def run(m, kind, x, y, scale):
    t = Temperature.learnable(init=scale, max=scale)
    crit = CRITERIA[kind](m, t)
    x = x.clone().requires_grad_()
    y = y.clone().requires_grad_()
    out = crit(x, y)
    out.loss.backward()
    return out, x.grad, y.grad, t.logit_scale.grad


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize(
    ("m", "scale"), CASES, ids=lambda v: repr(v) if not isinstance(v, float) else ""
)
@pytest.mark.parametrize("kind", list(CRITERIA))
def test_half_inputs_at_max_scale_are_finite_and_computed_in_float32(dtype, m, scale, kind):
    x32 = points(m, 10, seed=1)
    y32 = m.projx(x32 + 0.3 * points(m, 10, seed=2))  # peaked: diagonal logits near the cap
    xh, yh = x32.to(dtype), y32.to(dtype)
    out, gx, gy, gs = run(m, kind, xh, yh, scale)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert gx.dtype == dtype and gy.dtype == dtype
    for g in (gx, gy, gs):
        assert torch.isfinite(g).all()
    # float32 arithmetic on the rounded inputs, not half arithmetic
    ref, *_ = run(m, kind, xh.float(), yh.float(), scale)
    torch.testing.assert_close(out.loss.detach(), ref.loss.detach(), rtol=1e-6, atol=1e-5)
    assert all(torch.isfinite(v) for k, v in out.diagnostics.items() if k != "neg_sim")


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("kind", ["dense", "tiled"])
def test_extreme_logits_1600_exact_values(dtype, kind):
    """All pairs identical: every logit is +1600, loss log B. Anti-aligned: loss 3200."""
    m, b = Oblique(16, 8), 6
    e = m.projx(torch.ones(1, 16, 8)).expand(b, 16, 8).contiguous()
    out, gx, gy, _ = run(m, kind, e.to(dtype), e.to(dtype), 100.0)
    # float32 spacing at 1600 is 1.2e-4: lse - pos cannot be more exact than a couple of ulps
    assert float(out.loss.detach()) == pytest.approx(math.log(b), abs=3e-4)
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
    x = torch.cat([e[:1], -e[:1]])
    out, gx, gy, gs = run(m, kind, x.to(dtype), (-x).to(dtype), 100.0)
    top = 100.0 * float(e[0].to(dtype).float().square().sum())  # 1600 up to input rounding
    assert float(out.loss.detach()) == pytest.approx(2 * top, rel=1e-6)
    for g in (gx, gy, gs):
        assert torch.isfinite(g).all()


@pytest.mark.parametrize("kind", list(CRITERIA))
def test_under_bf16_autocast_loss_is_float32_and_finite(kind):
    m = Oblique(16, 8)
    x, y = points(m, 8, seed=3), points(m, 8, seed=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, gx, gy, gs = run(m, kind, x, y, 100.0)
    ref, *_ = run(m, kind, x, y, 100.0)
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss.detach(), ref.loss.detach(), rtol=1e-6, atol=1e-5)
    for g in (gx, gy, gs):
        assert torch.isfinite(g).all()
