"""The sigmoid loss's exact equilibrium, checked against routes that share none of its code,
and the toy trained with the sigmoid loss against it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from manifold_align.losses import sigmoid_from_logits
from manifold_align.simulate import sigmoid_theory, theory
from manifold_align.simulate.config import SweepConfig, TemperatureSpec
from manifold_align.simulate.sampling import sample_pairs
from manifold_align.simulate.sweep import run_sweep


def brute_force_loss(u: float, gap: float, noise: float, batch_size: int, concepts: int) -> float:
    """Expected SigLIP loss by enumerating every batch: logits u + gap [c_i = tau_j], diagonal
    labels +1, the rest -1, (1/B) sum_ij log(1 + exp(-z_ij l_ij))."""
    pairs = list(itertools.product(range(concepts), repeat=2))
    pair_prob = np.array([((1 - noise) * (c == t) + noise / concepts) / concepts for c, t in pairs])
    batches = np.array(list(itertools.product(range(len(pairs)), repeat=batch_size)))
    prob = pair_prob[batches].prod(axis=1)
    img = np.array([c for c, _ in pairs])[batches]
    cap = np.array([t for _, t in pairs])[batches]
    logits = u + gap * (img[:, :, None] == cap[:, None, :])
    z = np.where(np.eye(batch_size, dtype=bool), 1.0, -1.0)
    per_batch = np.logaddexp(0.0, -z * logits).sum((-2, -1)) / batch_size
    return float(per_batch @ prob)


@pytest.mark.parametrize(("batch_size", "concepts"), [(3, 3), (4, 2)])
@pytest.mark.parametrize("noise", [0.1, 0.5, 0.9])
def test_expected_loss_matches_enumeration_of_every_batch(noise, batch_size, concepts):
    for u, g in [(0.0, 0.0), (-2.0, 1.5), (1.0, 4.0), (-5.0, 0.3)]:
        exact = sigmoid_theory.expected_loss(u, g, noise, batch_size, concepts)
        assert exact == pytest.approx(brute_force_loss(u, g, noise, batch_size, concepts), rel=0, abs=1e-12)


def test_expected_loss_matches_monte_carlo_of_the_sampler_and_the_library_loss():
    noise, batch_size, concepts, runs = 0.3, 32, 8, 8000
    gen = torch.Generator().manual_seed(0)
    images, captions = sample_pairs(torch.full((runs,), noise), batch_size, concepts, gen)
    match = (images[:, :, None] == captions[:, None, :]).double()
    for u, gap in ((-4.0, 1.0), (-3.0, 3.0)):
        losses = sigmoid_from_logits(u + gap * match, 0.0).numpy()
        stderr = losses.std() / math.sqrt(runs)
        assert abs(losses.mean() - sigmoid_theory.expected_loss(u, gap, noise, batch_size, concepts)) < 4 * stderr


@given(noise=st.floats(0.01, 0.99), batch_size=st.integers(2, 300), concepts=st.integers(2, 1000))
def test_optimal_critic_is_the_log_odds_and_its_gap_is_infonces(noise, batch_size, concepts):
    v, u = sigmoid_theory.optimal_logits(noise, batch_size, concepts)
    q = 1 - noise + noise / concepts
    # sigma(v) = P(label + | concepts agree), sigma(u) = P(label + | concepts differ)
    agree = q / (q + (batch_size - 1) / concepts)
    differ = (1 - q) / ((1 - q) + (batch_size - 1) * (concepts - 1) / concepts)
    assert v == pytest.approx(math.log(agree / (1 - agree)), rel=1e-9, abs=1e-9)
    assert u == pytest.approx(math.log(differ / (1 - differ)), rel=1e-9, abs=1e-9)
    assert v - u == pytest.approx(theory.equilibrium_gap(noise, batch_size, concepts), rel=1e-7, abs=1e-8)
    assert sigmoid_theory.optimal_negative_logit(v - u, noise, batch_size, concepts) == pytest.approx(
        u, rel=1e-8, abs=1e-8
    )


@pytest.mark.parametrize("noise", [0.05, 0.5, 0.9])
def test_optimum_beats_every_grid_point_and_the_profile_is_convex(noise):
    b, c = 32, 8
    eq = sigmoid_theory.sigmoid_equilibrium(noise, b, c)
    us, gs = np.meshgrid(np.linspace(-9, 1, 201), np.linspace(-1, 8, 181))
    grid = sigmoid_theory.expected_loss(us, gs, noise, b, c)
    assert eq.loss <= grid.min() + 1e-12
    assert eq.loss == pytest.approx(sigmoid_theory.expected_loss(eq.negative_logit, eq.gap, noise, b, c))
    gaps = np.linspace(0.0, 8.0, 81)
    profile = np.array([sigmoid_theory.profile_loss(float(g), noise, b, c) for g in gaps])
    assert np.all(np.diff(profile, 2) >= -1e-10)
    assert gaps[np.argmin(profile)] == pytest.approx(eq.gap, abs=0.1)


def test_a_capped_gap_caps_the_loss_but_the_bias_still_places_the_logits():
    eq = sigmoid_theory.sigmoid_equilibrium(0.2, 32, 8, components=1, max_scale=1.0)
    assert eq.reachable_gap == pytest.approx(8 / 7) and eq.reachable_gap < eq.gap
    assert eq.reachable_loss > eq.loss
    # the sphere at the simplex (s+ = 1, s- = -1/7) needs the bias u_g + 1/7
    assert sigmoid_theory.bias_for(eq.reachable_negative_logit, 1.0, -1 / 7) == pytest.approx(
        eq.reachable_negative_logit + 1 / 7
    )
    # a scale or tokens are needed exactly where InfoNCE needs them
    assert eq.sphere_scale == pytest.approx(theory.min_sphere_scale(0.2, 32, 8))
    assert eq.oblique_tokens == theory.min_oblique_tokens(0.2, 32, 8)


def test_noise_extremes():
    clean = sigmoid_theory.sigmoid_equilibrium(0.0, 32, 8, max_scale=2.0)
    assert clean.gap == math.inf and clean.negative_logit == -math.inf
    assert clean.reachable_gap == pytest.approx(16 / 7) and math.isfinite(clean.reachable_loss)
    assert clean.loss < clean.reachable_loss
    blind = sigmoid_theory.sigmoid_equilibrium(1.0, 32, 8)
    assert blind.gap == 0.0 and blind.positive_logit == pytest.approx(-math.log(31))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="noise"):
        sigmoid_theory.optimal_logits(1.5, 8, 4)
    with pytest.raises(ValueError, match="gap"):
        sigmoid_theory.optimal_negative_logit(math.inf, 0.5, 8, 4)
    with pytest.raises(ValueError, match="negative_logit, gap"):
        sigmoid_theory.expected_loss(math.nan, 1.0, 0.5, 8, 4)
    with pytest.raises(ValueError, match="max_scale"):
        sigmoid_theory.sigmoid_equilibrium(0.5, 8, 4, max_scale=0.0)


# --- the toy, trained with the sigmoid loss ---------------------------------------------------


@pytest.fixture(scope="module")
def sigmoid_sweep():
    temperatures = [TemperatureSpec("learnable", init=1.0, max=100.0), TemperatureSpec("none")]
    return run_sweep(
        SweepConfig(loss="sigmoid", noise=[0.2, 0.5, 0.8], manifolds=["sphere:16", "oblique:8x8"],
                    temperatures=temperatures, steps=600)
    )


def _one(sweep, noise, manifold, temperature):
    (rec,) = [
        r
        for r in sweep.records
        if r["noise"] == noise and r["manifold"] == manifold and r["temperature"] == temperature
    ]
    return rec


@pytest.mark.parametrize("noise", [0.2, 0.5, 0.8])
@pytest.mark.parametrize(("manifold", "temperature"), [("sphere:16", "learnable"), ("oblique:8x8", "none")])
def test_sigmoid_gap_lands_within_ten_percent_of_the_theory(sigmoid_sweep, noise, manifold, temperature):
    rec = _one(sigmoid_sweep, noise, manifold, temperature)
    g = theory.equilibrium_gap(noise, 32, 8)
    assert rec["loss"] == "sigmoid" and rec["reachable_gap"] == pytest.approx(g)
    assert abs(rec["measured_gap"] / g - 1) < 0.10
    eq = sigmoid_theory.sigmoid_equilibrium(noise, 32, 8)
    assert rec["final_loss"] == pytest.approx(eq.loss, rel=0.03)
    # the bias puts the logits where the theory does
    assert rec["neg_logit"] == pytest.approx(eq.negative_logit, abs=0.15)
    assert rec["pos_logit"] == pytest.approx(eq.positive_logit, abs=0.15)
    assert rec["bias"] == pytest.approx(rec["predicted_bias"], abs=0.15)
    assert rec["accuracy"] == 1.0


@pytest.mark.parametrize("noise", [0.2, 0.5])
def test_a_bias_does_not_free_the_sphere_from_its_ceiling(sigmoid_sweep, noise):
    rec = _one(sigmoid_sweep, noise, "sphere:16", "none")
    ceiling = theory.max_similarity_gap(8)
    assert 0.9 * ceiling <= rec["measured_gap"] <= ceiling + 1e-4
    assert rec["measured_gap"] < 0.6 * rec["predicted_gap"]
    eq = sigmoid_theory.sigmoid_equilibrium(noise, 32, 8, components=1, max_scale=1.0)
    assert rec["final_loss"] == pytest.approx(eq.reachable_loss, rel=0.03)
    assert rec["final_loss"] > eq.loss
    assert rec["neg_logit"] == pytest.approx(eq.reachable_negative_logit, abs=0.15)
