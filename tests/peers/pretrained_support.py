"""Shared by the pretrained peer tests: the tolerance, captions, tiny token rows, perturbation."""

from __future__ import annotations

import torch

TOL = 1e-5
"""Largest absolute difference allowed between two float32 unit embeddings."""

CAPTIONS = [
    "a photo of a cat sitting on a red chair",
    "Two dogs play in the snow next to a parked car.",
    "an empty street at night, lit by neon signs &amp; rain",
    "",
]


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Add ``N(0, 0.05^2)`` to every parameter (so no layer norm stays ones, no bias zeros)."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def tiny_tokens(ends: tuple[int, ...] = (3, 9, 31, 17), seed: int = 0) -> torch.Tensor:
    """Rows for ``tiny`` (vocabulary 1024): SOT 1022, words, EOT 1023 (the largest id), zeros."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(len(ends), 32, dtype=torch.long)
    for i, end in enumerate(ends):
        tokens[i, 0] = 1022
        tokens[i, 1:end] = torch.randint(1, 1022, (end - 1,), generator=g)
        tokens[i, end] = 1023
    return tokens


def assert_state_equal(a: dict, b: dict) -> None:
    """Same keys, and every tensor bit for bit equal."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
