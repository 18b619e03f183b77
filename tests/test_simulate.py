"""The toy simulation: sampling, the batched model, the sweep, and the gap it reaches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from manifold_align.config import load_config
from manifold_align.manifolds import Oblique, Product, Sphere
from manifold_align.simulate import theory
from manifold_align.simulate.config import SweepConfig, parse_manifold
from manifold_align.simulate.sampling import sample_pairs
from manifold_align.simulate.sweep import expand, run_sweep, settle_step
from manifold_align.simulate.toy import ToyModel

# --- sampling ---------------------------------------------------------------------------------


def test_sample_pairs_follows_the_noise_model_per_run():
    noise = torch.tensor([0.0, 0.3, 1.0])
    gen = torch.Generator().manual_seed(0)
    images, captions = sample_pairs(noise, 20000, 5, gen)
    assert images.shape == captions.shape == (3, 20000)
    assert images.dtype == torch.int64
    match = (images == captions).double().mean(1)
    for r, p in enumerate(noise.tolist()):
        q = 1 - p + p / 5
        assert abs(float(match[r]) - q) < 4 * math.sqrt(q * (1 - q) / 20000) + 1e-12
    # images and (marginally) captions are uniform over the concepts
    for t in (images[1], captions[2]):
        freq = torch.bincount(t, minlength=5).double() / 20000
        assert torch.allclose(freq, torch.full((5,), 0.2, dtype=torch.float64), atol=0.015)
    # a fully noisy caption is independent of its image
    joint = torch.zeros(5, 5)
    joint.index_put_((images[2], captions[2]), torch.ones(20000), accumulate=True)
    assert torch.allclose(joint / 20000, torch.full((5, 5), 0.04), atol=0.01)


@pytest.mark.parametrize(
    ("noise", "b", "c", "needle"),
    [
        (torch.tensor([[0.1]]), 4, 3, "noise: expected shape"),
        (torch.tensor([1.2]), 4, 3, "noise: expected probabilities"),
        (torch.tensor([float("nan")]), 4, 3, "noise: expected probabilities"),
        (torch.tensor([0.1]), 0, 3, "batch_size"),
        (torch.tensor([0.1]), 4, 0, "concepts"),
    ],
)
def test_sample_pairs_rejects_bad_input(noise, b, c, needle):
    with pytest.raises(ValueError, match=needle):
        sample_pairs(noise, b, c)


# --- the batched model ------------------------------------------------------------------------


def _model(manifold, runs=3, concepts=4, **kw):
    return ToyModel(manifold, runs, concepts, generator=torch.Generator().manual_seed(0), **kw)


@pytest.mark.parametrize(
    "manifold", [Sphere(6), Oblique(3, 4), Product(Sphere(5), Oblique(2, 3))], ids=repr
)
def test_logits_are_scale_times_per_run_similarity(manifold):
    model = _model(manifold, initial_scale=[1.0, 2.0, 0.5], max_scale=10.0, learnable=True)
    assert model.image.shape == (3, 4, *manifold.point_shape)
    manifold.assert_check_point_on_manifold(model.image)
    gen = torch.Generator().manual_seed(1)
    images, captions = sample_pairs(torch.full((3,), 0.5), 5, 4, gen)
    logits = model.logits(images, captions)
    assert logits.shape == (3, 5, 5) and logits.dtype == torch.float32
    for r, scale in enumerate([1.0, 2.0, 0.5]):
        x = manifold.flatten(model.image[r, images[r]])
        y = manifold.flatten(model.text[r, captions[r]])
        assert torch.allclose(logits[r], scale * x @ y.T, atol=1e-5)


def test_runs_do_not_interact_and_only_learnable_scales_get_gradients():
    model = _model(Sphere(6), initial_scale=2.0, max_scale=10.0, learnable=[True, False, True])
    images, captions = sample_pairs(torch.full((3,), 0.2), 6, 4, torch.Generator().manual_seed(2))
    logits = model.logits(images, captions)
    logits[1].sum().backward()  # a loss of run 1 only
    assert model.image.grad[[0, 2]].abs().max() == 0 and model.text.grad[[0, 2]].abs().max() == 0
    assert model.image.grad[1].abs().max() > 0
    assert model.log_scale.grad[1] == 0  # run 1's temperature is fixed
    model.zero_grad()
    model.logits(images, captions).sum().backward()
    assert model.log_scale.grad[0] != 0 and model.log_scale.grad[2] != 0 and model.log_scale.grad[1] == 0


def test_clamp_projects_each_scale_under_its_own_maximum():
    model = _model(Sphere(4), initial_scale=[1.0, 1.0, 1.0], max_scale=[2.0, 50.0, 100.0], learnable=True)
    with torch.no_grad():
        model.log_scale.fill_(math.log(60.0))
    model.clamp_()
    assert torch.allclose(model.scale(), torch.tensor([2.0, 50.0, 60.0]))


def test_per_run_scale_has_the_semantics_of_the_temperature_object():
    from manifold_align.losses import Temperature

    temps = [Temperature.learnable(2.0, 30.0), Temperature.fixed(7.0), Temperature.none()]
    model = _model(
        Sphere(4),
        initial_scale=[2.0, 7.0, 1.0],
        max_scale=[30.0, 7.0, 1.0],
        learnable=[True, False, False],
    )
    assert torch.allclose(model.scale().detach(), torch.stack([t.scale.detach() for t in temps]))
    with torch.no_grad():  # the same excursion above the cap, then the same projection
        model.log_scale[0] = math.log(45.0)
        temps[0].logit_scale.fill_(math.log(45.0))
    model.clamp_()
    for t in temps:
        t.clamp_()
    assert torch.allclose(model.scale().detach(), torch.stack([t.scale.detach() for t in temps]))
    assert float(model.scale().detach()[0]) == pytest.approx(30.0)


def test_diagnostics_at_the_regular_simplex():
    c = 5
    simplex = torch.eye(c) - 1.0 / c
    simplex = simplex / simplex.norm(dim=-1, keepdim=True)
    model = _model(Oblique(2, c), runs=1, concepts=c, initial_scale=3.0, max_scale=3.0)
    with torch.no_grad():
        model.image.copy_(simplex[None, :, None, :].expand(1, c, 2, c))
        model.text.copy_(model.image)
    d = model.diagnostics()
    assert float(d["pos_sim"][0]) == pytest.approx(2.0, abs=1e-5)
    assert float(d["neg_sim"][0]) == pytest.approx(-2.0 / (c - 1), abs=1e-5)
    assert float(d["gap"][0]) == pytest.approx(3.0 * theory.max_similarity_gap(c, 2), abs=1e-4)
    assert float(d["alignment"][0]) == pytest.approx(0.0, abs=1e-6)
    # every pair of distinct vertices is at squared distance 2 * 2 (1 - cos) with cos = -1/(c-1)
    sq = 2 * 2 * (1 + 1 / (c - 1))
    assert float(d["uniformity"][0]) == pytest.approx(-2.0 * sq, abs=1e-4)


def test_model_rejects_bad_settings():
    with pytest.raises(ValueError, match="initial_scale"):
        ToyModel(Sphere(3), 2, 3, initial_scale=5.0, max_scale=1.0)
    with pytest.raises(ValueError, match="max_scale"):
        ToyModel(Sphere(3), 2, 3, max_scale=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="concepts"):
        ToyModel(Sphere(3), 2, 1)
    model = _model(Sphere(3))
    with pytest.raises(ValueError, match="caption_concepts"):
        model.logits(torch.zeros(3, 4, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))


# --- sweep plumbing ---------------------------------------------------------------------------


def test_settle_step_is_the_first_step_after_which_values_stay_near_the_end():
    steps = np.arange(0, 60, 10)
    values = np.array(
        [
            [0.0, 5.0, 1.0],
            [0.5, 5.0, 2.0],
            [0.99, 5.0, 1.0],  # column 0 enters the band here and stays
            [1.02, 5.0, 2.0],
            [0.98, 5.0, 1.0],
            [1.0, 5.0, 2.0],
        ]
    )
    got = settle_step(values, steps, rel_tol=0.05, abs_tol=0.0)
    assert got.tolist() == [20, 0, 50]
    with pytest.raises(ValueError, match="values"):
        settle_step(values[:, 0], steps, 0.05, 0.0)


def test_expand_groups_runs_by_shape_and_numbers_them_in_order():
    cfg = load_config(
        SweepConfig,
        None,
        ["noise=[0.1, 0.5]", "manifolds=[sphere:8, oblique:2x4]", "batch_sizes=[4, 8]", "replicates=2"],
    )
    groups = expand(cfg)
    assert len(groups) == 4  # manifolds x batch sizes
    runs = sorted((r for g in groups for r in g.runs), key=lambda r: r.index)
    assert [r.index for r in runs] == list(range(2 * 2 * 2 * 3 * 2))
    for g in groups:
        assert len(g.runs) == 2 * 3 * 2  # noise x temperatures x replicates
        assert all((r.manifold, r.batch_size, r.concepts) == (g.manifold, g.batch_size, g.concepts) for r in g.runs)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sphere:16", Sphere(16)),
        ("oblique:4x8", Oblique(4, 8)),
        ("product:sphere:8+oblique:2x4", Product(Sphere(8), Oblique(2, 4))),
    ],
)
def test_parse_manifold(spec, expected):
    assert repr(parse_manifold(spec)) == repr(expected)


@pytest.mark.parametrize("spec", ["cube:3", "sphere", "sphere:1", "oblique:4", "oblique:0x8", "product:sphere:8"])
def test_parse_manifold_rejects_bad_specs(spec):
    with pytest.raises(ValueError, match="where"):
        parse_manifold(spec, key="where")


# --- the equilibrium itself -------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_sweep():
    cfg = load_config(
        SweepConfig,
        None,
        [
            "noise=[0.2, 0.5, 0.8]",
            "manifolds=[sphere:16, oblique:8x8]",
            "temperatures=[{mode: learnable, init: 1.0, max: 100.0}, {mode: none}]",
            "steps=600",
            "final_window=100",
        ],
    )
    return run_sweep(cfg)


@pytest.mark.parametrize("noise", [0.2, 0.5, 0.8])
@pytest.mark.parametrize(("manifold", "temperature"), [("sphere:16", "learnable"), ("oblique:8x8", "none")])
def test_measured_gap_lands_within_ten_percent_of_the_prediction(short_sweep, noise, manifold, temperature):
    (rec,) = [
        r
        for r in short_sweep.records
        if r["noise"] == noise and r["manifold"] == manifold and r["temperature"] == temperature
    ]
    predicted = theory.equilibrium_gap(noise, 32, 8)
    assert rec["predicted_gap"] == pytest.approx(predicted)
    assert rec["reachable_gap"] == pytest.approx(predicted)  # the ceiling is above g*
    assert abs(rec["measured_gap"] / predicted - 1) < 0.10
    # the training loss settles at the theory's expected loss, too
    assert rec["final_loss"] == pytest.approx(rec["predicted_loss"], rel=0.03)


@pytest.mark.parametrize("noise", [0.2, 0.5])
def test_sphere_without_temperature_is_stuck_at_its_ceiling(short_sweep, noise):
    (rec,) = [
        r
        for r in short_sweep.records
        if r["noise"] == noise and r["manifold"] == "sphere:16" and r["temperature"] == "none"
    ]
    ceiling = theory.max_similarity_gap(8)
    assert rec["max_gap"] == pytest.approx(ceiling)
    assert 0.9 * ceiling <= rec["measured_gap"] <= ceiling + 1e-4
    assert rec["measured_gap"] < 0.6 * rec["predicted_gap"]
    assert rec["final_loss"] > theory.expected_loss(rec["predicted_gap"], noise, 32, 8)


def test_sweep_records_and_trajectories_are_consistent(short_sweep):
    res = short_sweep
    assert [r["run"] for r in res.records] == list(range(12))
    assert res.steps[0] == 0 and res.steps[-1] == 600
    for r in res.records:
        i = r["run"]
        assert r["scale"] == pytest.approx(res.trajectories["scale"][i, -1])
        assert r["measured_gap"] == pytest.approx(r["scale"] * (r["pos_sim"] - r["neg_sim"]), rel=1e-5)
        assert 0 <= r["scale_settle_step"] <= 600 and 0 <= r["embedding_settle_step"] <= 600
        if r["temperature"] == "none":
            assert r["scale"] == 1.0 and r["scale_settle_step"] == 0
        else:  # a learnable scale starts at 1 and must move to reach g*
            assert r["scale_settle_step"] > 0
    assert np.isnan(res.trajectories["loss"][:, 0]).all()  # no loss before the first step
    assert np.isfinite(res.trajectories["loss"][:, 1:]).all()


def test_sweep_is_deterministic_for_a_seed():
    overrides = ["noise=[0.3]", "manifolds=[sphere:8]", "temperatures=[{mode: none}]", "steps=20"]
    a = run_sweep(load_config(SweepConfig, None, overrides))
    b = run_sweep(load_config(SweepConfig, None, overrides))
    c = run_sweep(load_config(SweepConfig, None, [*overrides, "seed=1"]))
    assert a.records == b.records
    assert a.records[0]["measured_gap"] != c.records[0]["measured_gap"]
