"""Learning-rate schedule: linear warmup, then a half cosine down to a floor.

Stateless: the rate is a pure function of the optimizer step, so a resumed run needs to
store nothing but the step to continue on exactly the same curve.
"""

from __future__ import annotations

import math

__all__ = ["cosine_lr", "lr_factor"]


def cosine_lr(
    step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0
) -> float:
    r"""The learning rate for optimizer step ``step`` (0-based).

    $$
    \eta(s) = \begin{cases}
      \eta_0 \, \frac{s + 1}{W} & s < W \\
      \eta_{\min} + \tfrac12 (\eta_0 - \eta_{\min})\,(1 + \cos \pi p),
      \quad p = \frac{s - W}{\max(1, T - W)} \in [0, 1] & s \ge W
    \end{cases}
    $$

    The first warmup step already has a non-zero rate ($\eta_0 / W$); steps past ``total_steps``
    stay at ``min_lr``.

    Args:
        step: optimizer step, ``>= 0``.
        base_lr: peak rate $\eta_0$ reached at the end of warmup, ``>= 0``.
        warmup_steps: $W \ge 0$; ``0`` starts at the peak.
        total_steps: $T > 0$, the step at which the cosine reaches ``min_lr``.
        min_lr: floor $\eta_{\min}$, ``0 <= min_lr <= base_lr``.

    Returns:
        The rate as a Python float.

    Raises:
        ValueError: naming the argument that is negative or out of order.
    """
    if step < 0:
        raise ValueError(f"step: expected >= 0, got {step}")
    if base_lr < 0:
        raise ValueError(f"base_lr: expected >= 0, got {base_lr}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps: expected >= 0, got {warmup_steps}")
    if total_steps <= 0:
        raise ValueError(f"total_steps: expected > 0, got {total_steps}")
    if not 0 <= min_lr <= base_lr:
        raise ValueError(f"min_lr: expected in [0, base_lr={base_lr}], got {min_lr}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def lr_factor(
    step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> float:
    r"""The schedule as a multiplier of each parameter group's base rate, in ``[0, 1]``.

    ``lr_factor(s, W, T, r) = cosine_lr(s, 1, W, T, r)``; every group (Euclidean or Riemannian)
    is scaled by the same factor, so all groups warm up and decay together.

    Raises:
        ValueError: as [cosine_lr][manifold_align.train.schedule.cosine_lr], and for ``min_ratio`` outside ``[0, 1]``.
    """
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio: expected in [0, 1], got {min_ratio}")
    return cosine_lr(step, 1.0, warmup_steps, total_steps, min_ratio)
