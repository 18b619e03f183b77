"""``manifold-align simulate`` end to end, and its configuration errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from manifold_align.cli import main
from manifold_align.config import ConfigError, load_config
from manifold_align.simulate.config import SweepConfig

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY = """\
name: tiny
noise: [0.2, 0.6]
manifolds: ["sphere:8", "oblique:2x8"]
temperatures:
  - {mode: learnable, init: 1.0, max: 50.0}
  - {mode: none}
batch_sizes: [8]
concepts: [4]
steps: 30
log_every: 5
final_window: 10
"""


def test_command_writes_every_artifact(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    rc = main(["simulate", "--config", str(cfg), "--set", "seed=3", "--out", str(out)])
    assert rc == 0
    assert "8 runs x 30 steps" in capsys.readouterr().out

    resolved = load_config(SweepConfig, out / "config.yaml")
    assert resolved == load_config(SweepConfig, cfg, ["seed=3"])

    payload = json.loads((out / "results.json").read_text())
    assert payload["name"] == "tiny" and payload["seconds"] > 0
    runs = payload["runs"]
    assert len(runs) == 8
    for key in (
        "manifold",
        "noise",
        "temperature",
        "batch_size",
        "concepts",
        "final_loss",
        "scale",
        "pos_sim",
        "neg_sim",
        "measured_gap",
        "predicted_gap",
        "reachable_gap",
        "scale_settle_step",
        "embedding_settle_step",
    ):
        assert all(key in r for r in runs), key
    assert {r["manifold"] for r in runs} == {"sphere:8", "oblique:2x8"}

    traj = np.load(out / "trajectories.npz")
    assert traj["steps"].tolist() == list(range(0, 31, 5))
    assert traj["gap"].shape == (8, 7)

    for png in (
        "gap_vs_noise.png",
        "scale_vs_noise.png",
        "predicted_vs_measured.png",
        "trajectories.png",
        "gap_vs_components.png",  # the two manifolds span h = 1 and h = 2 at scale 1
    ):
        data = (out / png).read_bytes()
        assert data.startswith(PNG_MAGIC), png
    summary = (out / "summary.md").read_text()
    assert "wall time" in summary and "| measured gap |" in summary
    assert summary.count("| sphere:8 |") == 4


@pytest.mark.parametrize("path", sorted((REPO / "manifold_align" / "configs" / "simulate").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(SweepConfig, path)
    assert cfg.steps >= 100


def test_standard_sweep_is_48_runs_of_1500_steps():
    cfg = load_config(SweepConfig, REPO / "manifold_align" / "configs" / "simulate" / "standard.yaml")
    n = len(cfg.noise) * len(cfg.manifolds) * len(cfg.temperatures) * len(cfg.batch_sizes)
    assert n * len(cfg.concepts) * cfg.replicates == 48 and cfg.steps == 1500


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("noise=[0.2, 1.5]", "noise[1]"),
        ("manifolds=[sphere:8, cube:3]", "manifolds[1]"),
        ("temperatures=[{mode: hot}]", "temperatures[0].mode"),
        ("temperatures=[{mode: learnable, init: 200.0, max: 100.0}]", "temperatures[0]"),
        ("temperatures=[{mode: fixed, value: -1}]", "temperatures[0]: value"),
        ("batch_sizes=[1]", "batch_sizes[0]"),
        ("concepts=[8, 1]", "concepts[1]"),
        ("steps=0", "steps"),
        ("optim.lr=-1", "optim: lr"),
        ("optim.schedule=linear", "optim.schedule"),
        ("stepz=10", "unknown key stepz"),
    ],
)
def test_config_errors_name_the_key(override, needle, tmp_path, capsys):
    with pytest.raises(ConfigError) as info:
        load_config(SweepConfig, None, [override])
    assert needle in str(info.value)
    rc = main(["simulate", "--set", override, "--out", str(tmp_path / "o")])
    assert rc == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing is written for a bad config


def test_missing_config_file_is_reported(tmp_path, capsys):
    rc = main(["simulate", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_noise_extremes_report_infinite_and_zero_gaps(tmp_path):
    out = tmp_path / "edge"
    rc = main(
        [
            "simulate",
            "--quiet",
            "--set",
            "noise=[0.0, 1.0]",
            "--set",
            "manifolds=[sphere:4]",
            "--set",
            "temperatures=[{mode: none}]",
            "--set",
            "concepts=[3]",
            "--set",
            "steps=10",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    text = (out / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    clean, pure_noise = json.loads(text)["runs"]
    assert clean["predicted_gap"] is None and clean["min_oblique_tokens"] is None  # g* = inf
    assert clean["reachable_gap"] == pytest.approx(1.5)  # the sphere's ceiling C/(C-1)
    assert pure_noise["predicted_gap"] == 0.0 and pure_noise["gap_ratio"] is None
    assert "| inf |" in (out / "summary.md").read_text()
