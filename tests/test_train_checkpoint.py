"""Checkpoints: exact round trip, atomic 'latest', foreign configs rejected, nothing unpickled."""

from __future__ import annotations

import json
import pickle
import random

import geoopt
import numpy as np
import pytest
import torch
from torch import nn

from manifold_align import Sphere
from manifold_align.train import checkpoint as ckpt
from manifold_align.train.checkpoint import (
    CheckpointError,
    capture_rng,
    config_mismatches,
    find_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from manifold_align.train.optimizers import build_optimizers

CONFIG = {"model": {"name": "toy", "width": 8}, "train": {"steps": 10, "log_every": 1}}


class Toy(nn.Module):
    """Linear + norm + embedding + a manifold parameter + a tied weight + a buffer."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.proj = nn.Linear(6, width)
        self.norm = nn.LayerNorm(width)
        self.embed = nn.Embedding(5, width)
        self.tied = nn.Linear(width, 5, bias=False)
        self.tied.weight = self.embed.weight
        sphere = Sphere(width)
        self.anchors = geoopt.ManifoldParameter(sphere.random(3, width), manifold=sphere)
        self.register_buffer("count", torch.zeros(()))

    def loss(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.proj(x)) + self.embed(t)
        return (h @ self.anchors.T).square().mean() + self.tied(h).square().mean()


def _trained(seed: int = 0, steps: int = 3, width: int = 8):
    torch.manual_seed(seed)
    model = Toy(width)
    opts = build_optimizers(model, lr=1e-2, weight_decay=0.1)
    for _ in range(steps):
        _step(model, opts)
    return model, opts


def _step(model, opts):
    x, t = torch.randn(4, 6), torch.randint(0, 5, (4,))
    model.loss(x, t).backward()
    for o in opts.values():
        o.step()
        o.zero_grad()
    model.count += 1


def test_round_trip_continues_bit_for_bit(tmp_path):
    model, opts = _trained()
    path = save_checkpoint(tmp_path, 3, model, opts, {"batches": 3}, CONFIG)
    _step(model, opts)  # the uninterrupted continuation (draws x, t after the saved RNG state)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    fresh, fresh_opts = _trained(seed=1, steps=1)  # different weights, state and RNG
    state = load_checkpoint(path, fresh, fresh_opts, CONFIG)
    assert state["step"] == 3 and state["extra"] == {"batches": 3}
    _step(fresh, fresh_opts)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert fresh.tied.weight is fresh.embed.weight


def test_manifold_survives_reload(tmp_path):
    model, opts = _trained()
    path = save_checkpoint(tmp_path, 3, model, opts, {}, CONFIG)
    fresh, fresh_opts = _trained(seed=2, steps=0)
    load_checkpoint(path, fresh, fresh_opts, CONFIG)
    assert isinstance(fresh.anchors, geoopt.ManifoldParameter)
    group = fresh_opts["riemannian"].param_groups[0]
    assert isinstance(group["manifold"], Sphere)
    assert group["params"][0] is fresh.anchors
    _step(fresh, fresh_opts)
    assert torch.allclose(fresh.anchors.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_rng_states_round_trip():  # the legacy global numpy generator is what is saved
    torch.manual_seed(3)
    np.random.seed(3)  # noqa: NPY002
    random.seed(3)
    js, ts = capture_rng()
    js = json.loads(json.dumps(js))  # what the checkpoint stores
    first = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    torch.rand(5)
    np.random.rand(5)  # noqa: NPY002
    random.random()
    restore_rng(js, ts)
    second = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]


def test_latest_pointer_and_pruning(tmp_path):
    model, opts = _trained()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, opts, {}, CONFIG, keep=2)
    assert find_checkpoint("latest", tmp_path).name == "step_00000003"
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_00000002", "step_00000003"]
    # a run folder resolves through its checkpoints/ directory
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints", 7, model, opts, {}, CONFIG)
    assert find_checkpoint(run, "unused").name == "step_00000007"


def test_killed_write_leaves_previous_latest(tmp_path, monkeypatch):
    model, opts = _trained()
    save_checkpoint(tmp_path, 1, model, opts, {}, CONFIG)

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ckpt, "save_file", die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, model, opts, {}, CONFIG)
    monkeypatch.undo()
    assert find_checkpoint("latest", tmp_path).name == "step_00000001"
    assert not (tmp_path / "step_00000002").exists()
    assert list(tmp_path.glob(".tmp-*"))  # the half-written directory...
    save_checkpoint(tmp_path, 3, model, opts, {}, CONFIG)
    assert not list(tmp_path.glob(".tmp-*"))  # ...is cleaned up by the next save


def test_missing_or_incomplete_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        find_checkpoint("latest", tmp_path)
    (tmp_path / "latest").write_text("step_00000009\n")
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        find_checkpoint("latest", tmp_path)


def test_other_configuration_is_rejected_naming_the_key(tmp_path):
    model, opts = _trained()
    path = save_checkpoint(tmp_path, 3, model, opts, {}, CONFIG)
    other = {"model": {"name": "toy", "width": 16}, "train": {"steps": 10, "log_every": 1}}
    with pytest.raises(CheckpointError, match=r"model\.width: 8 in the checkpoint, 16 now"):
        load_checkpoint(path, model, opts, other)
    longer = {"model": CONFIG["model"], "train": {"steps": 99, "log_every": 5}}
    load_checkpoint(path, model, opts, longer, ignore=["train"])  # allowed to differ


def test_config_mismatches_lists_every_difference():
    a = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    b = {"a": {"b": 1, "c": (1, 3)}, "e": 2}
    assert config_mismatches(a, b) == [
        "a.c: [1, 2] in the checkpoint, [1, 3] now",
        "d: 'x' in the checkpoint, '<absent>' now",
        "e: '<absent>' in the checkpoint, 2 now",
    ]
    assert config_mismatches(a, b, ignore=["a", "d", "e"]) == []


def test_other_model_shape_is_rejected_naming_the_tensor(tmp_path):
    model, opts = _trained(width=8)
    path = save_checkpoint(tmp_path, 3, model, opts, {}, CONFIG)
    wide, wide_opts = _trained(width=16, steps=0)
    with pytest.raises(CheckpointError, match=r"'anchors' has shape \(3, 8\) in the checkpoint, \(3, 16\) in the model"):
        load_checkpoint(path, wide, wide_opts)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model, opts = _trained()
    path = save_checkpoint(tmp_path, 3, model, opts, {}, CONFIG)
    assert sorted(p.name for p in path.iterdir()) == [
        "config.yaml", "manifest.json", "model.safetensors", "optimizer.safetensors",
        "rng.safetensors", "state.json",
    ]

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    fresh, fresh_opts = _trained(seed=1, steps=0)
    load_checkpoint(path, fresh, fresh_opts, CONFIG)
    assert torch.equal(fresh.proj.weight, model.proj.weight)
