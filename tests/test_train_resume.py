"""Kill -9 a real training process, resume it, and get exactly the uninterrupted run's losses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manifold_align.train.metrics import read_metrics

# A model small enough for a test: width 32, one layer per tower, 16-pixel images.
CONFIG = """
model:
  name: tiny
  overrides: {vision_width: 32, vision_layers: 1, vision_heads: 2, patch_size: 8, image_size: 16,
              text_width: 32, text_layers: 1, text_heads: 2, token_dim: 16, context_length: 16}
data:
  synthetic: {size: 256, seed: 3, caption_noise: 0.2}
  batch_size: 16
optim: {lr: 2.0e-3}
schedule: {warmup_steps: 5}
train: {steps: 60, seed: 7, log_every: 1, ckpt_every: 4, keep_checkpoints: 0, progress: false}
eval: {zeroshot_samples: 0, retrieval_samples: 0}
"""

# One thread per process: the losses of two processes are then bit-identical, and a loaded
# CI machine does not slow the test down through thread oversubscription.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "manifold_align.cli", "train", *args]


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"}


def _latest_step(run: Path) -> int:
    pointer = run / "checkpoints" / "latest"
    try:
        return int(pointer.read_text().strip().removeprefix("step_"))
    except (OSError, ValueError):
        return -1


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "micro.yaml"
    path.write_text(CONFIG)
    return path


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(config_file, tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(_train_cmd("--config", str(config_file), "--out", str(reference)),
                   check=True, env=ENV, capture_output=True, timeout=600)
    expected = _losses(reference)
    assert sorted(expected) == list(range(1, 61))

    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd("--config", str(config_file), "--out", str(run)),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while _latest_step(run) < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = _latest_step(run)
    assert 8 <= killed_at < 60

    resumed = subprocess.run(_train_cmd("--out", str(run), "--resume", "latest"),
                             env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    got = _losses(run)
    assert sorted(got) == list(range(1, 61))  # nothing logged twice, nothing missing
    for step in range(1, 61):
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-6), step
    # the resumed half really trained: the loss moved after the kill
    assert got[60] != pytest.approx(got[killed_at], abs=1e-3)


def test_resume_with_another_config_is_refused_naming_the_key(config_file, tmp_path):
    run = tmp_path / "run"
    subprocess.run(_train_cmd("--config", str(config_file), "--out", str(run),
                              "--set", "train.steps=2", "--set", "train.ckpt_every=1"),
                   check=True, env=ENV, capture_output=True, timeout=600)
    proc = subprocess.run(
        _train_cmd("--config", str(config_file), "--out", str(run), "--resume", "latest",
                   "--set", "train.steps=4", "--set", "optim.lr=0.5", "--set", "train.ckpt_every=1"),
        env=ENV, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 2
    assert "another configuration" in proc.stderr
    assert "optim.lr: 0.002 in the checkpoint, 0.5 now" in proc.stderr

    # a fresh run into a folder that holds one is refused too (no silent overwrite)
    proc = subprocess.run(_train_cmd("--config", str(config_file), "--out", str(run)),
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert "--resume latest" in proc.stderr


def test_a_checkpoint_from_before_a_config_key_existed_resumes_at_that_keys_default(tmp_path):
    # Checkpoints written before a release added config keys (data.max_image_pixels,
    # train.collective_timeout_s, ...) hold no value for them; they must resume when the run
    # keeps the default, and be refused when it asks for something else.
    import json

    from test_train_loop import micro

    from manifold_align.train.checkpoint import CheckpointError
    from manifold_align.train.run import train

    run = tmp_path / "run"
    train(micro("train.steps=2", "train.ckpt_every=1"), run)
    ckpt = run / "checkpoints" / "step_00000002"
    state = json.loads((ckpt / "state.json").read_text())
    del state["config"]["data"]["max_image_pixels"]
    del state["config"]["train"]["collective_timeout_s"]
    (ckpt / "state.json").write_text(json.dumps(state))
    (ckpt / "manifest.json").unlink()  # an old checkpoint: no checksums either
    result = train(micro("train.steps=3"), run, resume="latest")
    assert result.step == 3
    with pytest.raises(CheckpointError, match=r"data\.max_image_pixels"):
        train(micro("train.steps=4", "data.max_image_pixels=1000"), run,
              resume=str(ckpt))
