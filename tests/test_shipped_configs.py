"""Configs ship inside the package: a name resolves from any folder, a file still wins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from manifold_align.cli import main
from manifold_align.config import ConfigError, load_config
from manifold_align.configs import resolve_config, shipped_configs
from manifold_align.simulate.config import SweepConfig

PACKAGE = Path(__file__).resolve().parents[1] / "manifold_align"


def test_configs_live_in_the_package():
    names = {(c.kind, c.name) for c in shipped_configs()}
    assert {("train", "tiny-oblique"), ("train", "tiny-sphere"), ("simulate", "quick")} <= names
    for c in shipped_configs():
        assert c.path.is_relative_to(PACKAGE / "configs" / c.kind)
        assert c.description and "\n" not in c.description, c.name


def test_a_name_resolves_to_the_shipped_file_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config("tiny-oblique", "train") == PACKAGE / "configs/train/tiny-oblique.yaml"
    assert resolve_config("tiny-oblique.yaml", "train").name == "tiny-oblique.yaml"
    assert resolve_config("quick", "simulate").parent.name == "simulate"


def test_a_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick").write_text("steps: 3\n")
    assert resolve_config("quick", "simulate") == Path("quick")
    assert load_config(SweepConfig, resolve_config("quick", "simulate")).steps == 3


def test_an_unknown_name_lists_the_shipped_names():
    with pytest.raises(ConfigError, match=r"'tiny-obliqe'.*shipped: .*tiny-oblique.*tiny-sphere"):
        resolve_config("tiny-obliqe", "train")
    assert resolve_config("no-such-dir/x.yaml", "train") == Path("no-such-dir/x.yaml")
    assert resolve_config("./tiny-oblique", "train") == Path("./tiny-oblique")  # never a name
    with pytest.raises(ConfigError, match=r"cannot read config file no-such-dir/x\.yaml"):
        load_config(SweepConfig, resolve_config("no-such-dir/x.yaml", "simulate"))
    with pytest.raises(ValueError, match="kind"):
        resolve_config("quick", "sweep")


def test_train_and_simulate_exit_2_with_the_names(tmp_path, capsys):
    assert main(["train", "--config", "tiny-obliqe", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "manifold-align train: error:" in err
    assert "tiny-oblique" in err and "ViT-B-16-sphere" in err
    assert main(["simulate", "--config", "nope", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "quick" in err and "standard" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_simulate_runs_a_shipped_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--config", "quick", "--set", "steps=2", "--set", "noise=[0.5]",
                 "--out", "out", "--quiet"]) == 0
    assert "name: quick" in (tmp_path / "out" / "config.yaml").read_text()


def test_configs_command_lists_names_with_descriptions(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    for c in shipped_configs():
        assert f"  {c.name} " in out and c.description in out
    assert out.index("train (") < out.index("simulate (")
    assert main(["configs", "--kind", "simulate"]) == 0
    assert "tiny-oblique" not in capsys.readouterr().out


def test_configs_command_prints_one_and_refuses_an_unknown(capsys):
    assert main(["configs", "tiny-sphere"]) == 0
    assert capsys.readouterr().out == resolve_config("tiny-sphere", "train").read_text()
    assert main(["configs", "tiny-sphre"]) == 2
    err = capsys.readouterr().err
    assert "tiny-sphre" in err and "tiny-sphere" in err


def test_the_installed_command_resolves_a_name_outside_the_repository(tmp_path):
    """``python -m manifold_align.cli`` from another folder, the package found on the path only."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "manifold_align.cli", "configs", "tiny-oblique"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Oblique(8, 16)" in done.stdout
