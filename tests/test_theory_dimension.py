"""Which claims of the theory need room (dimension >= C - 1) and which do not."""

from __future__ import annotations

import math

import pytest
import torch

from manifold_align.manifolds import Sphere
from manifold_align.simulate import theory
from manifold_align.simulate.config import SweepConfig, TemperatureSpec
from manifold_align.simulate.sweep import run_sweep


def test_the_mean_gap_ceiling_needs_no_simplex():
    # 16 concepts on a circle (dimension 2 < C - 1 = 15), equally spaced so the mean is zero,
    # images equal to texts: the mean gap is the ceiling C / (C - 1) exactly ...
    c = 16
    angles = torch.arange(c, dtype=torch.float64) * 2 * math.pi / c
    x = torch.stack([angles.cos(), angles.sin()], -1)
    sim = Sphere(2).similarity(x, x)
    diag = sim.diagonal().sum()
    gap = diag / c - (sim.sum() - diag) / (c * (c - 1))
    assert float(gap) == pytest.approx(theory.max_similarity_gap(c), rel=1e-12)
    # ... but the negatives are not equal: that (the symmetric configuration) needs rank C - 1.
    off = sim[~torch.eye(c, dtype=torch.bool)]
    assert float(off.max() - off.min()) > 1.0
    assert int(torch.linalg.matrix_rank(sim)) == 2 < c - 1


def test_without_room_the_mean_gap_still_reaches_g_star_and_the_loss_pays():
    # 24 concepts: sphere:4 has no room for equal negatives, sphere:32 has.
    cfg = SweepConfig(
        noise=[0.3], manifolds=["sphere:4", "sphere:32"], temperatures=[TemperatureSpec("learnable", max=100.0)],
        concepts=[24], batch_sizes=[32], steps=600,
    )
    narrow, wide = run_sweep(cfg).records
    for rec in (narrow, wide):
        assert abs(rec["gap_ratio"] - 1) < 0.10
        assert rec["accuracy"] == 1.0
    # measured at 600 steps: excess 0.04 nats with room (not quite converged), 0.46 without
    wide_excess = wide["final_loss"] - wide["predicted_loss"]
    narrow_excess = narrow["final_loss"] - narrow["predicted_loss"]
    assert -0.03 < wide_excess < 0.08
    assert narrow_excess > 0.3 and narrow_excess > 4 * wide_excess
