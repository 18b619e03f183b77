"""Our SigLIP equals OpenCLIP's ``SigLipLoss`` in value and in every gradient."""

import pytest
import torch
from open_clip.loss import SigLipLoss

from manifold_align import Oblique, Sphere
from manifold_align.losses import SigmoidLoss, Temperature


def features(m, b, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = m.projx(torch.randn(b, *m.point_shape, generator=g, dtype=torch.float64))
    y = m.projx(0.5 * x + torch.randn(b, *m.point_shape, generator=g, dtype=torch.float64))
    return x.to(dtype), y.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("m", [Sphere(64), Oblique(4, 16)], ids=repr)
@pytest.mark.parametrize(("b", "tile"), [(300, None), (300, 7), (1, None)])
def test_equals_openclip_siglip_loss(dtype, m, b, tile):
    x0, y0 = features(m, b, dtype, seed=b)
    results = []
    for who in ("openclip", "ours"):
        x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
        crit = SigmoidLoss(m, Temperature.learnable(init=10.0), bias_init=-10.0, tile_size=tile)
        crit = crit.to(dtype)
        if who == "ours":
            loss = crit(x, y).loss
        else:
            scale = crit.temperature.scale_as(dtype)
            loss = SigLipLoss()(m.flatten(x), m.flatten(y), scale, crit.logit_bias)
        loss.backward()
        grads = (x.grad, y.grad, crit.temperature.logit_scale.grad, crit.logit_bias.grad)
        results.append((loss.detach(), *grads))
    rtol = 1e-12 if dtype == torch.float64 else 1e-6
    for name, peer, got in zip(("loss", "x", "y", "scale", "bias"), *results, strict=True):
        err = float((got - peer).abs().max()) / max(float(peer.abs().max()), 1e-30)
        assert err <= rtol, f"{name}: relative error {err:.3g}"
