"""The training config: shipped files load, bad keys and values are rejected by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifold_align.cli import main
from manifold_align.config import ConfigError, dump_config, load_config
from manifold_align.train.config import RunConfig

CONFIGS = sorted((Path(__file__).parents[1] / "manifold_align" / "configs" / "train").glob("*.yaml"))
TINY = Path(__file__).parents[1] / "manifold_align" / "configs" / "train" / "tiny-sphere.yaml"


def test_shipped_configs_exist():
    names = {p.stem for p in CONFIGS}
    assert {"tiny-sphere", "tiny-oblique", "ViT-B-16-sphere", "ViT-B-16-oblique"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_load_and_round_trip(path, tmp_path):
    cfg = load_config(RunConfig, path)
    dump_config(cfg, tmp_path / "config.yaml")
    assert load_config(RunConfig, tmp_path / "config.yaml") == cfg


def test_overrides_reach_nested_sections():
    cfg = load_config(
        RunConfig, None,
        ["optim.betas=[0.8, 0.9]", "train.precision=bf16", "data.synthetic.caption_noise=0.5",
         "model.name=tiny-oblique", "model.overrides.tokens=4"],
    )
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.train.precision == "bf16"
    assert cfg.data.synthetic.caption_noise == 0.5
    assert cfg.model.overrides == {"tokens": 4}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.stpes=10", r"unknown key train\.stpes; valid keys here: .*steps"),
        ("optimizer.lr=1", r"unknown key optimizer; valid keys here: data, eval, model"),
        ("data.synthetic.noise=0.1", r"unknown key data\.synthetic\.noise"),
        ("train.precision=fp16", r"train\.precision: got 'fp16', expected one of \['fp32', 'bf16'\]"),
        ("train.steps=ten", r"train\.steps: got 'ten', expected an integer"),
        ("train.steps=0", r"train\.steps: expected > 0, got 0"),
        ("train.grad_accum=-1", r"train\.grad_accum: expected > 0, got -1"),
        ("optim.lr=-0.1", r"optim\.lr: expected >= 0, got -0\.1"),
        ("optim.betas=[0.9, 1.0]", r"optim\.betas: expected two numbers in \[0, 1\)"),
        ("optim.betas=[0.9]", r"optim\.betas: got 1 items, expected 2"),
        ("data.synthetic.caption_noise=1.5", r"data\.synthetic\.caption_noise: expected in \[0, 1\]"),
        ("data.source=s3", r"data\.source: got 's3', expected one of"),
        ("data.source=csv", r"data\.csv\.path: required when data\.source is 'csv'"),
        ("schedule.min_lr=1.0", r"schedule\.min_lr: expected <= optim\.lr"),
        ("train.device=tpu", r"train\.device: expected 'auto', 'cpu'"),
        ("train.progress=maybe", r"train\.progress: got 'maybe', expected true or false"),
    ],
)
def test_bad_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RunConfig, None, [override])


def test_unknown_key_in_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  steps: 5\n  warmup: 2\n")
    with pytest.raises(ConfigError, match=r"unknown key train\.warmup"):
        load_config(RunConfig, path)


def _cli(capsys, *args):
    code = main(["train", *args])
    return code, capsys.readouterr().err


def test_command_reports_config_errors_by_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: tiny}\noptim: {lr: 1.0e-3, momentum: 0.9}\n")
    code, err = _cli(capsys, "--config", str(bad), "--out", str(tmp_path / "run"))
    assert code == 2
    assert "unknown key optim.momentum" in err
    assert not (tmp_path / "run").exists()

    code, err = _cli(capsys, "--config", str(TINY), "--set", "train.precision=half",
                     "--out", str(tmp_path / "run"))
    assert code == 2
    assert "train.precision: got 'half'" in err

    code, err = _cli(capsys, "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "run"))
    assert code == 2
    assert "cannot read config file" in err

    code, err = _cli(capsys, "--set", "train.steps=5")
    assert code == 2
    assert "give --config FILE" in err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.overrides.depthh=3", "unknown key model.overrides.depthh; valid keys here:"),
        ("model.name=ViT-Z-99", "model.name: unknown model 'ViT-Z-99'"),
        ("model.overrides.vision_heads=5",
         "model.overrides.vision_heads: 5 does not divide vision_width 128"),
        ("model.overrides.vocab_size=10", "model.overrides.vocab_size: 10 is smaller than the tokenizer"),
        ("data.synthetic.appearance.glow=1", "unknown key data.synthetic.appearance.glow"),
        ("data.tokenizer=/nonexistent/tokenizer.json", "data.tokenizer: path:"),
    ],
)
def test_command_reports_bad_model_and_data_settings(tmp_path, capsys, override, message):
    code, err = _cli(capsys, "--config", str(TINY), "--set", override, "--out", str(tmp_path / "run"),
                     "--no-progress")
    assert code == 2
    assert message in err
    assert not (tmp_path / "run" / "checkpoints").exists()
