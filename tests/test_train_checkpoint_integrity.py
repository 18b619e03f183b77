"""Damaged checkpoints: every bad file is named with what is wrong (a CheckpointError, never a
raw SafetensorError or traceback); sha256 sums catch silent bit flips; old checkpoints without
a manifest still load; a full disk leaves the last checkpoint intact."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file
from test_train_checkpoint import CONFIG, _trained

from manifold_align.train import checkpoint as ckpt
from manifold_align.train.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    read_state,
    save_checkpoint,
)


def _flip(path, offset: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _torch_saved() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, buf)
    return buf.getvalue()


# name -> how the file is damaged
DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "zero-byte": lambda p: p.write_bytes(b""),
    "pickled": lambda p: p.write_bytes(pickle.dumps({"w": [0.0] * 8})),
    "torch.save": lambda p: p.write_bytes(_torch_saved()),
}


@pytest.fixture
def saved(tmp_path):
    model, opts = _trained()
    path = save_checkpoint(tmp_path, 3, model, opts, {"batches": 3}, CONFIG)
    return path, model, opts


def _load(path):
    fresh, fresh_opts = _trained(seed=1, steps=0)
    return load_checkpoint(path, fresh, fresh_opts, CONFIG)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_weights_are_named_by_the_checksum(saved, damage):
    path = saved[0]
    DAMAGE[damage](path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: .*(bytes|checksum)"):
        _load(path)


@pytest.mark.parametrize(("damage", "message"), [
    ("truncated", "not a readable safetensors file, truncated or damaged"),
    ("zero-byte", r"empty \(0 bytes\)"),
    ("pickled", "a torch.save/pickle file, not safetensors"),
    ("torch.save", "a torch.save/pickle file, not safetensors"),
])
def test_damaged_weights_without_a_manifest_get_a_named_format_error(saved, damage, message):
    path = saved[0]
    (path / "manifest.json").unlink(missing_ok=True)  # as written before manifests existed
    DAMAGE[damage](path / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"model\.safetensors: {message}"):
        _load(path)


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "rng.safetensors",
                                  "state.json"])
def test_a_flipped_bit_is_caught_by_the_checksum(saved, name):
    path = saved[0]
    _flip(path / name)
    with pytest.raises(CheckpointError, match=rf"{name}: sha256 checksum differs"):
        _load(path)


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "cannot read checkpoint state"),
    (b"\xff\xfe\x00", "cannot read checkpoint state"),
    (b"[1, 2]", "expected a JSON object, found list"),
    (b'{"format": 1, "step": 3}', "key 'extra' should be a dict"),
    (b'{"format": 7}', "checkpoint format 7"),
])
def test_damaged_state_without_a_manifest_is_named(saved, content, message):
    path = saved[0]
    (path / "manifest.json").unlink(missing_ok=True)
    (path / "state.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"state\.json.*{message}|{message}.*state\.json"):
        _load(path)


def test_damaged_rng_and_optimizer_without_a_manifest_are_named(saved):
    path = saved[0]
    (path / "manifest.json").unlink(missing_ok=True)
    save_file({"torch_cpu": torch.zeros(3, dtype=torch.uint8)}, str(path / "rng.safetensors"))
    with pytest.raises(CheckpointError, match=r"rng\.safetensors.*random generator state is damaged"):
        _load(path)
    (path / "rng.safetensors").write_bytes(b"garbage!")
    with pytest.raises(CheckpointError, match=r"rng\.safetensors: not a readable safetensors"):
        _load(path)
    save_file({"adamw.0.exp_avg": torch.zeros(1)}, str(path / "optimizer.safetensors"))
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors"):
        _load(path)


def test_damaged_manifest_and_pointer_are_named(saved, tmp_path):
    path = saved[0]
    (tmp_path / "latest").write_text("../../etc\n")
    with pytest.raises(CheckpointError, match=r"latest: expected the name of a checkpoint"):
        find_checkpoint("latest", tmp_path)
    (tmp_path / "latest").write_bytes(b"\xff\xfe")
    with pytest.raises(CheckpointError, match="unreadable pointer"):
        find_checkpoint("latest", tmp_path)
    (path / "manifest.json").write_text("{]")
    with pytest.raises(CheckpointError, match=r"manifest\.json: damaged checksum manifest"):
        read_state(path)


def test_a_checkpoint_without_a_manifest_still_loads(saved):
    path = saved[0]
    (path / "manifest.json").unlink(missing_ok=True)
    assert ckpt.verify_checkpoint(path) is False
    state = _load(path)
    assert state["step"] == 3


def test_manifest_lists_every_file_with_its_sha256(saved):
    path = saved[0]
    files = json.loads((path / "manifest.json").read_text())["files"]
    assert sorted(files) == sorted(p.name for p in path.iterdir() if p.name != "manifest.json")
    assert ckpt.verify_checkpoint(path) is True


def test_a_full_disk_keeps_the_last_checkpoint_intact(saved, monkeypatch):
    path, model, opts = saved
    root = path.parent

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(CheckpointError, match=r"No space left on device.*step_00000003.*intact"):
        save_checkpoint(root, 4, model, opts, {}, CONFIG)
    monkeypatch.undo()
    assert find_checkpoint("latest", root) == path
    assert not list(root.glob(".tmp-*"))  # the partial write is gone, its space freed
    assert ckpt.verify_checkpoint(path) is True
    _load(path)


def test_eval_and_load_trained_name_a_damaged_file(tmp_path, capsys):
    from test_train_loop import micro

    from manifold_align.cli import main
    from manifold_align.train.run import load_trained, train

    run = tmp_path / "run"
    train(micro("train.steps=1", "eval.zeroshot_samples=8"), run)
    step = run / "checkpoints" / "step_00000001"
    _flip(step / "model.safetensors")
    assert main(["eval", "--checkpoint", str(run)]) == 2
    assert "model.safetensors: sha256 checksum differs" in capsys.readouterr().err
    (step / "manifest.json").unlink()
    (step / "tokenizer.json").write_text('{"model": 3}')
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: not a readable tokenizer"):
        load_trained(run)


def test_a_full_disk_at_the_pointer_keeps_latest_on_the_previous_checkpoint(saved, monkeypatch):
    path, model, opts = saved

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "write_atomic", full)
    with pytest.raises(CheckpointError, match=r"step_00000004 is complete, but .*latest could not"):
        save_checkpoint(path.parent, 4, model, opts, {}, CONFIG)
    monkeypatch.undo()
    assert find_checkpoint("latest", path.parent) == path
