"""The toy's accuracy and bias, and the sweep's `loss` and `bias` keys."""

from __future__ import annotations

import json
import math

import pytest
import torch

from manifold_align.config import ConfigError, load_config
from manifold_align.manifolds import Sphere
from manifold_align.simulate.config import SweepConfig
from manifold_align.simulate.sweep import run_sweep
from manifold_align.simulate.toy import ToyModel


def _model(runs=2, concepts=4, **kw):
    return ToyModel(Sphere(concepts), runs, concepts, generator=torch.Generator().manual_seed(0), **kw)


def test_accuracy_is_the_share_of_concepts_whose_own_caption_is_the_strict_top_match():
    model = _model(runs=3)
    eye = torch.eye(4)
    with torch.no_grad():
        model.image.copy_(eye.expand(3, 4, 4))
        model.text[0] = eye  # every own caption on top
        model.text[1] = eye[[1, 0, 2, 3]]  # concepts 0 and 1 see each other's caption
        model.text[2] = eye[[0, 0, 0, 3]]  # a tie on row 0, all-zero rows 1 and 2: misses
    acc = model.diagnostics()["accuracy"]
    assert acc.tolist() == [1.0, 0.5, 0.25]


def test_bias_is_a_per_run_parameter_that_only_the_sigmoid_loss_trains():
    model = _model(initial_bias=[-1.0, 2.0])
    assert model.bias.tolist() == [-1.0, 2.0]
    assert model.diagnostics()["bias"].tolist() == [-1.0, 2.0]
    with pytest.raises(ValueError, match="initial_bias"):
        _model(initial_bias=math.inf)
    with pytest.raises(ValueError, match="initial_bias"):
        _model(initial_bias=[0.0, 0.0, 0.0])

    base = ["noise=[0.3]", "manifolds=[sphere:4]", "temperatures=[{mode: none}]", "concepts=[3]", "steps=20"]
    infonce = run_sweep(load_config(SweepConfig, None, base))
    (rec,) = infonce.records
    assert rec["loss"] == "infonce" and rec["bias"] is None and rec["predicted_bias"] is None
    assert 0.0 <= rec["accuracy"] <= 1.0
    assert infonce.trajectories["bias"] == pytest.approx(-math.log(31))  # untouched by InfoNCE
    sigmoid = run_sweep(load_config(SweepConfig, None, [*base, "loss=sigmoid"]))
    traj = sigmoid.trajectories["bias"][0]
    assert traj[0] == pytest.approx(-math.log(31)) and traj[-1] != traj[0]
    assert sigmoid.records[0]["bias"] == pytest.approx(traj[-1])
    frozen = run_sweep(load_config(SweepConfig, None, [*base, "loss=sigmoid", "bias={init: -2.0, learnable: false}"]))
    assert (frozen.trajectories["bias"] == -2.0).all()
    assert frozen.records[0]["measured_gap"] != sigmoid.records[0]["measured_gap"]


@pytest.mark.parametrize(
    ("override", "needle"),
    [("loss=softmax", "loss"), ("bias.init=.nan", "init"), ("bias.init=zero", "bias.init")],
)
def test_bad_loss_or_bias_is_named(override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(SweepConfig, None, [override])


def test_sigmoid_report_at_the_noise_extremes_is_strict_json(tmp_path):
    from manifold_align.cli import main

    out = tmp_path / "edge"
    overrides = ["loss=sigmoid", "noise=[0.0, 1.0]", "manifolds=[sphere:4]", "temperatures=[{mode: none}]",
                 "concepts=[3]", "batch_sizes=[4]", "steps=10"]
    rc = main(["simulate", "--quiet", *(a for o in overrides for a in ("--set", o)), "--out", str(out)])
    assert rc == 0
    text = (out / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    clean, blind = json.loads(text)["runs"]
    assert clean["predicted_gap"] is None and clean["reachable_gap"] == pytest.approx(1.5)
    assert clean["predicted_neg_logit"] is not None  # the best offset at the capped gap is finite
    assert blind["predicted_gap"] == 0.0
    assert blind["predicted_pos_logit"] == pytest.approx(blind["predicted_neg_logit"]) == pytest.approx(-math.log(3))
    summary = (out / "summary.md").read_text()
    assert "Loss: **sigmoid**" in summary and "## Sigmoid loss: logits and bias" in summary
