"""The exact equilibrium gap, checked against routes that share none of its code."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp

from manifold_align.losses import info_nce_from_logits
from manifold_align.manifolds import Oblique, Sphere
from manifold_align.simulate import theory
from manifold_align.simulate.sampling import sample_pairs


def brute_force_loss(gaps: np.ndarray, noise: float, batch_size: int, concepts: int) -> np.ndarray:
    """Expected symmetric InfoNCE by enumerating every batch of (image, caption) concepts.

    Each pair is (c, tau) with P(c) = 1/C and P(tau | c) = (1 - p)[tau = c] + p / C; the loss of
    a batch is CLIP's (row CE + column CE) / 2 on logits g [c_i = tau_j], diagonal positives.
    """
    pairs = list(itertools.product(range(concepts), repeat=2))
    pair_prob = np.array([((1 - noise) * (c == t) + noise / concepts) / concepts for c, t in pairs])
    batches = np.array(list(itertools.product(range(len(pairs)), repeat=batch_size)))  # (N, B)
    prob = pair_prob[batches].prod(axis=1)  # (N,)
    img = np.array([c for c, _ in pairs])[batches]
    cap = np.array([t for _, t in pairs])[batches]
    match = (img[:, :, None] == cap[:, None, :]).astype(float)  # (N, B, B)
    logits = np.asarray(gaps, dtype=float)[:, None, None, None] * match  # (G, N, B, B)
    diag = np.diagonal(logits, axis1=-2, axis2=-1)
    rows = (logsumexp(logits, axis=-1) - diag).mean(-1)
    cols = (logsumexp(logits, axis=-2) - diag).mean(-1)
    return (0.5 * (rows + cols)) @ prob


@pytest.mark.parametrize(("batch_size", "concepts"), [(3, 3), (4, 2)])
@pytest.mark.parametrize("noise", [0.1, 0.5, 0.9])
def test_expected_loss_matches_enumeration_of_every_batch(noise, batch_size, concepts):
    gaps = np.array([0.0, 0.7, 2.5, 6.0])
    exact = theory.expected_loss(gaps, noise, batch_size, concepts)
    assert np.allclose(exact, brute_force_loss(gaps, noise, batch_size, concepts), rtol=0, atol=1e-12)


@pytest.mark.parametrize("noise", [0.2, 0.5, 0.8])
def test_gap_minimizes_the_brute_force_loss_on_a_dense_grid(noise):
    grid = np.linspace(0.0, 6.0, 601)
    brute = brute_force_loss(grid, noise, 3, 3)
    g_grid = grid[np.argmin(brute)]
    g_star = theory.equilibrium_gap(noise, 3, 3)
    assert abs(g_star - g_grid) <= 0.01
    # and no grid point beats the theory's minimum
    assert theory.expected_loss(g_star, noise, 3, 3) <= brute.min() + 1e-12


def test_expected_loss_matches_monte_carlo_of_the_sampler_and_loss():
    noise, batch_size, concepts, runs = 0.3, 32, 8, 8000
    gen = torch.Generator().manual_seed(0)
    images, captions = sample_pairs(torch.full((runs,), noise), batch_size, concepts, gen)
    match = (images[:, :, None] == captions[:, None, :]).double()
    for gap in (0.5, 2.0, 4.0):
        losses = info_nce_from_logits(gap * match).numpy()
        stderr = losses.std() / math.sqrt(runs)
        assert abs(losses.mean() - theory.expected_loss(gap, noise, batch_size, concepts)) < 4 * stderr


@given(
    noise=st.floats(0.01, 0.99),
    batch_size=st.integers(2, 300),
    concepts=st.integers(2, 1000),
)
def test_gap_is_the_pointwise_mutual_information_whatever_the_batch(noise, batch_size, concepts):
    g = theory.equilibrium_gap(noise, batch_size, concepts)
    assert g == pytest.approx(math.log1p(concepts * (1 - noise) / noise), rel=1e-8, abs=1e-9)
    assert abs(theory.expected_loss_grad(g, noise, batch_size, concepts)) < 1e-9


def test_expected_loss_is_convex_and_gradient_matches_finite_differences():
    g = np.linspace(-3.0, 12.0, 301)
    loss = theory.expected_loss(g, 0.4, 64, 16)
    assert np.all(np.diff(loss, 2) >= -1e-12)
    h = 1e-5
    fd = (theory.expected_loss(g + h, 0.4, 64, 16) - theory.expected_loss(g - h, 0.4, 64, 16)) / (2 * h)
    assert np.allclose(theory.expected_loss_grad(g, 0.4, 64, 16), fd, atol=1e-7)


def test_no_noise_has_no_finite_equilibrium_and_full_noise_has_none_at_all():
    assert theory.equilibrium_gap(0.0, 32, 8) == math.inf
    assert theory.min_sphere_scale(0.0, 32, 8) == math.inf
    assert theory.min_oblique_tokens(0.0, 32, 8) == math.inf
    # The infimum at p = 0 is E[log N] (N - 1 ~ Binomial(B - 1, 1/C)), approached from above.
    n = np.arange(1, 33)
    from scipy.stats import binom

    limit = float(np.sum(binom.pmf(n - 1, 31, 1 / 8) * np.log(n)))
    assert theory.expected_loss(math.inf, 0.0, 32, 8) == pytest.approx(limit, rel=1e-12)
    assert theory.expected_loss(40.0, 0.0, 32, 8) == pytest.approx(limit, abs=1e-12)
    assert theory.expected_loss(math.inf, 0.1, 32, 8) == math.inf
    assert theory.equilibrium_gap(1.0, 32, 8) == 0.0


@pytest.mark.parametrize("noise", [0.01, 0.05, 0.2, 0.5, 0.8, 0.95])
@pytest.mark.parametrize("concepts", [2, 8, 100])
def test_min_tokens_and_scale_are_the_smallest_that_reach_the_gap(noise, concepts):
    g = theory.equilibrium_gap(noise, 32, concepts)
    k = theory.min_oblique_tokens(noise, 32, concepts)
    per_token = theory.max_similarity_gap(concepts)
    assert k * per_token >= g
    assert k == 1 or (k - 1) * per_token < g
    t = theory.min_sphere_scale(noise, 32, concepts)
    assert t * per_token == pytest.approx(g)


def test_equilibrium_caps_the_reachable_gap():
    eq = theory.equilibrium(0.2, 32, 8, components=2, max_scale=1.0)
    assert eq.max_gap == pytest.approx(2 * 8 / 7)
    assert eq.reachable_gap == eq.max_gap < eq.gap
    assert eq.reachable_loss > eq.loss
    free = theory.equilibrium(0.2, 32, 8, components=8, max_scale=1.0)
    assert free.reachable_gap == free.gap and free.reachable_loss == free.loss


def _mean_gap(sim: torch.Tensor) -> torch.Tensor:
    c = sim.shape[-1]
    diag = sim.diagonal(dim1=-2, dim2=-1).sum(-1)
    return diag / c - (sim.sum((-2, -1)) - diag) / (c * (c - 1))


@pytest.mark.parametrize("concepts", [3, 8])
def test_similarity_gap_ceiling_is_attained_by_the_simplex_and_never_exceeded(concepts):
    # Regular simplex in R^C: centred basis vectors, normalized; images = texts.
    simplex = torch.eye(concepts, dtype=torch.float64) - 1.0 / concepts
    simplex = simplex / simplex.norm(dim=-1, keepdim=True)
    sphere = Sphere(concepts)
    ceiling = theory.max_similarity_gap(concepts)
    assert float(_mean_gap(sphere.similarity(simplex, simplex))) == pytest.approx(ceiling)
    gen = torch.Generator().manual_seed(1)
    x = sphere.projx(torch.randn(2000, concepts, concepts, generator=gen, dtype=torch.float64))
    y = sphere.projx(x + 0.3 * torch.randn(x.shape, generator=gen, dtype=torch.float64))
    assert float(_mean_gap(sphere.similarity(x, y)).max()) <= ceiling + 1e-12
    # Oblique(k, d): k times the sphere's ceiling, reached with every token on the simplex.
    ob = Oblique(3, concepts)
    pts = simplex[:, None, :].expand(concepts, 3, concepts)
    assert float(_mean_gap(ob.similarity(pts, pts))) == pytest.approx(theory.max_similarity_gap(concepts, 3))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"noise": -0.1, "batch_size": 8, "concepts": 4}, "noise"),
        ({"noise": 1.5, "batch_size": 8, "concepts": 4}, "noise"),
        ({"noise": 0.5, "batch_size": 1, "concepts": 4}, "batch_size"),
        ({"noise": 0.5, "batch_size": 8, "concepts": 1}, "concepts"),
        ({"noise": 0.5, "batch_size": 8.0, "concepts": 4}, "batch_size"),
    ],
)
def test_bad_arguments_are_named(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        theory.equilibrium_gap(**kwargs)


def test_nan_gap_and_bad_caps_are_rejected():
    with pytest.raises(ValueError, match="gap"):
        theory.expected_loss(float("nan"), 0.5, 8, 4)
    with pytest.raises(ValueError, match="max_scale"):
        theory.equilibrium(0.5, 8, 4, max_scale=0.0)
    with pytest.raises(ValueError, match="components"):
        theory.max_similarity_gap(4, components=0)
