r"""Batches of (image concept, caption concept) pairs with caption noise, for many runs at once.

Each of the ``B`` pairs of run ``r`` draws its image's concept $c$ uniformly from
$\{0..C-1\}$; its caption's concept $\tau$ is $c$ with probability $1 - p_r$ and, with
probability $p_r$ (the run's *noise*), a concept drawn uniformly from all $C$ (it may equal
$c$ by chance, so $P(\tau = c) = 1 - p_r + p_r / C$). This is exactly the model that
[manifold_align.simulate.theory][manifold_align.simulate.theory] solves.
"""

from __future__ import annotations

import torch

__all__ = ["sample_pairs"]


def sample_pairs(
    noise: torch.Tensor,
    batch_size: int,
    concepts: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one batch of concept pairs per run.

    Args:
        noise: ``(R,)`` caption-noise probabilities $p_r \\in [0, 1]$, one per run.
        batch_size: ``B >= 1`` pairs per run.
        concepts: ``C >= 1`` concepts.
        generator: a ``torch.Generator`` on ``noise.device`` for reproducible draws.

    Returns:
        ``(image_concepts, caption_concepts)``, both ``(R, B)`` int64 on ``noise.device``.

    Raises:
        ValueError: ``noise`` not 1-D or outside ``[0, 1]``; ``batch_size`` or ``concepts`` < 1.
    """
    if noise.dim() != 1:
        raise ValueError(f"noise: expected shape (R,), got {tuple(noise.shape)}")
    if bool(((noise < 0) | (noise > 1) | noise.isnan()).any()):
        raise ValueError(f"noise: expected probabilities in [0, 1], got {noise.tolist()}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if concepts < 1:
        raise ValueError(f"concepts: expected >= 1, got {concepts}")
    runs, dev = noise.shape[0], noise.device
    image = torch.randint(concepts, (runs, batch_size), generator=generator, device=dev)
    random_caption = torch.randint(concepts, (runs, batch_size), generator=generator, device=dev)
    noisy = torch.rand((runs, batch_size), generator=generator, device=dev) < noise[:, None]
    return image, torch.where(noisy, random_caption, image)
