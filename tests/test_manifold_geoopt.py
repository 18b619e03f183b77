"""geoopt integration: ``ManifoldParameter`` + geoopt's Riemannian optimizers on our manifolds."""

from __future__ import annotations

import geoopt
import pytest
import torch

from manifold_align import Oblique, Product, Sphere

K, D, N = 4, 8, 64


def contrastive_loss(manifold: Oblique, p: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """InfoNCE of the points against fixed targets: pulls p_i to t_i, pushes it from t_j."""
    logits = 4.0 * manifold.similarity(p, targets)
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(p)))


def max_unit_error(p: torch.Tensor) -> float:
    return float((p.detach().norm(dim=-1) - 1).abs().max())


@pytest.mark.parametrize(
    "make_optimizer",
    [
        pytest.param(lambda ps: geoopt.optim.RiemannianAdam(ps, lr=2e-2), id="RiemannianAdam"),
        pytest.param(
            lambda ps: geoopt.optim.RiemannianAdam(ps, lr=2e-2, amsgrad=True, weight_decay=1e-3),
            id="RiemannianAdam-amsgrad-wd",
        ),
        pytest.param(
            lambda ps: geoopt.optim.RiemannianSGD(ps, lr=0.5, momentum=0.9),
            id="RiemannianSGD-momentum",
        ),
        pytest.param(lambda ps: geoopt.optim.RiemannianSGD(ps, lr=0.5), id="RiemannianSGD"),
    ],
)
def test_geoopt_optimizers_stay_on_the_oblique_manifold_for_thousands_of_steps(make_optimizer):
    torch.manual_seed(0)
    m = Oblique(K, D)
    targets = m.random(N, K, D)
    p = geoopt.ManifoldParameter(m.random(N, K, D), manifold=m)
    assert p.dtype == torch.float32
    opt = make_optimizer([p])
    first = contrastive_loss(m, p, targets).detach().item()
    worst = 0.0
    for _ in range(2000):
        opt.zero_grad()
        contrastive_loss(m, p, targets).backward()
        opt.step()
        worst = max(worst, max_unit_error(p))
    assert worst < 1e-5, worst  # no drift: the retraction renormalizes every token, every step
    assert m.check_point_on_manifold(p.detach(), atol=1e-5, rtol=0)
    assert contrastive_loss(m, p, targets).detach().item() < 0.5 * first  # it did optimize


def separable_loss(tokens: list[torch.Tensor], a: torch.Tensor) -> torch.Tensor:
    """sum_i f_i(x_i): each token's gradient depends on that token only."""
    return sum(((t @ a[i]) ** 2).sum() + (t * a[i, 0]).sum() for i, t in enumerate(tokens))


def test_oblique_optimizes_exactly_like_independent_spheres_and_the_product():
    """component_inner gives Riemannian Adam one second moment per token: identical trajectories."""
    torch.manual_seed(1)
    ob = Oblique(K, D)
    x0 = ob.random(N, K, D, dtype=torch.float64)
    a = torch.randn(K, D, D, dtype=torch.float64)
    p_ob = geoopt.ManifoldParameter(x0.clone(), manifold=ob)
    p_sph = [geoopt.ManifoldParameter(x0[:, i].clone(), manifold=Sphere(D)) for i in range(K)]
    prod = Product(*[Sphere(D) for _ in range(K)])
    p_prod = geoopt.ManifoldParameter(x0.flatten(-2).clone(), manifold=prod)
    runs = [
        (geoopt.optim.RiemannianAdam([p_ob], lr=1e-2), lambda: [p_ob[:, i] for i in range(K)]),
        (geoopt.optim.RiemannianAdam(p_sph, lr=1e-2), lambda: p_sph),
        (geoopt.optim.RiemannianAdam([p_prod], lr=1e-2), lambda: list(prod.split(p_prod))),
    ]
    for _ in range(300):
        for opt, tokens in runs:
            opt.zero_grad()
            separable_loss(tokens(), a).backward()
            opt.step()
    spheres = torch.stack([p.detach() for p in p_sph], dim=1)
    torch.testing.assert_close(p_ob.detach(), spheres, atol=1e-10, rtol=0)
    torch.testing.assert_close(p_prod.detach().unflatten(-1, (K, D)), spheres, atol=1e-10, rtol=0)
    assert float((p_ob.detach() - x0).abs().max()) > 0.1  # the points moved


def test_manifold_parameter_checks_and_reports_our_manifold():
    m = Oblique(2, 3)
    p = geoopt.ManifoldParameter(m.random(5, 2, 3), manifold=m)
    assert p.manifold is m and "Oblique(tokens=2, dim=3)" in repr(p)
    torch.testing.assert_close(
        p.proju(torch.ones(5, 2, 3)), m.proju(p.detach(), torch.ones(5, 2, 3))
    )
    t = geoopt.ManifoldTensor(m.random(2, 3), manifold=m)
    assert t.manifold.check_point_on_manifold(t.detach()) and not m.check_point_on_manifold(
        2 * t.detach()
    )
