"""The memory model against a real model: parameters, optimizer state and saved activations."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from manifold_align.models.registry import build_model, model_config
from manifold_align.train.memory import (
    activation_bytes,
    estimate_memory,
    loss_bytes,
    memory_table,
    parameter_count,
)
from manifold_align.train.optimizers import build_optimizers

SMALL = dataclasses.replace(
    model_config("tiny-oblique"), vision_width=32, vision_layers=1, vision_heads=2, image_size=16,
    text_width=32, text_layers=1, text_heads=2, tokens=2, token_dim=8, context_length=16,
)


def _batch(cfg, b):
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(b, 3, cfg.image_size, cfg.image_size, generator=gen)
    tokens = torch.randint(3, 100, (b, cfg.context_length), generator=gen)
    tokens[:, -1] = cfg.eot_id if cfg.eot_id is not None else cfg.vocab_size - 1
    return images, tokens


def test_model_state_is_16_bytes_a_parameter_as_held_after_an_optimizer_step():
    torch.manual_seed(0)
    model = build_model(SMALL)
    optimizers = build_optimizers(model, lr=1e-3)
    model(*_batch(SMALL, 4)).loss.backward()
    for opt in optimizers.values():
        opt.step()
    held = sum(p.numel() * p.element_size() * 2 for p in model.parameters())  # weights + grads
    for opt in optimizers.values():
        for state in opt.state.values():
            held += sum(t.numel() * t.element_size() for key, t in state.items()
                        if torch.is_tensor(t) and key != "step")
    count = sum(p.numel() for p in model.parameters())
    assert parameter_count(SMALL) == count
    est = estimate_memory(SMALL, batch=4, precision="fp32")
    assert est.parameters == count
    assert est.model_state == held == 16 * count
    assert estimate_memory(SMALL, batch=4, precision="bf16").model_state == 18 * count


def test_activation_estimate_matches_the_tensors_autograd_saves():
    cfg = dataclasses.replace(model_config("tiny"), vision_layers=2, text_layers=2)
    model = build_model(cfg)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*_batch(cfg, 8))
    measured = sum(n for ptr, n in saved.items() if ptr not in params)
    assert measured == pytest.approx(activation_bytes(cfg, 8, "fp32", False), rel=0.05)
    assert activation_bytes(cfg, 8, "bf16", False) == activation_bytes(cfg, 8, "fp32", False) // 2
    assert activation_bytes(cfg, 8, "fp32", True) < activation_bytes(cfg, 8, "fp32", False)


def test_loss_memory_follows_the_documented_formulas():
    b, w, d = 512, 64, 512
    big_b = b * w
    assert loss_bytes("infonce", b, w, d) == 16 * b * big_b + 16 * big_b * d
    assert loss_bytes("infonce-tiled", b, w, d, tile=128) == 8 * 128 * big_b + 16 * big_b * d
    assert loss_bytes("sigmoid-ring", b, w, d) == 8 * b * b + 16 * b * d
    assert loss_bytes("sigmoid-gather", b, w, d) == 8 * b * big_b + 8 * big_b * d
    # the sigmoid loss works in strips: one process on B = 65536 holds two 512 x B strips
    assert loss_bytes("sigmoid-ring", 65536, 1, d, tile=512) == 8 * 512 * 65536 + 16 * 65536 * d
    with pytest.raises(ValueError, match="kind"):
        loss_bytes("clip", b, w, d)
    with pytest.raises(ValueError, match="batch"):
        loss_bytes("infonce", 0, w, d)


def test_memory_table_has_a_row_per_configuration():
    table = memory_table([("tiny", 64, 1, False), ("tiny", 64, 2, True)])
    rows = table.splitlines()
    assert len(rows) == 4 and rows[2].startswith("| tiny | 64 | 1 (64) | no |")
    assert rows[3].startswith("| tiny | 64 | 2 (128) | yes |")
