"""Collective plumbing of the distributed losses: rank and world, a gather with gradients, ring
shifts.

Nothing here knows a loss. ``gather_with_grad`` is the differentiable all-gather (its backward
reduce-scatters, summing every rank's gradient for a block onto the block's owner);
``start_shift`` / ``finish`` move one block to the next rank of a ring while the caller
computes. Every function takes an optional ``group`` (``None``: the world) and addresses
point-to-point peers by their global rank, as ``torch.distributed`` requires inside a
subgroup.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather", "finish", "gather_with_grad", "rank_and_world", "start_shift"]

# torch >= 2.13 names these ``*_single``; older releases only have ``*_tensor``.
all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def rank_and_world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` in ``group`` (default: the world), ``(0, 1)`` without a process group.

    Raises:
        ValueError: the calling process is not a member of ``group``.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError("group: this process is not a member of the given process group")
    return rank, dist.get_world_size(group)


class _GatherWithGrad(torch.autograd.Function):
    """Concatenate every rank's ``(b, ...)`` block in rank order; backward reduce-scatters (sum)."""

    @staticmethod
    def forward(ctx, x, group):  # type: ignore[override]
        ctx.group = group
        world = dist.get_world_size(group)
        out = x.new_empty((world * x.shape[0], *x.shape[1:]))
        all_gather(out, x.contiguous(), group=group)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        world = dist.get_world_size(ctx.group)
        out = grad.new_empty((grad.shape[0] // world, *grad.shape[1:]))
        _reduce_scatter(out, grad.contiguous(), group=ctx.group)
        return out, None


def gather_with_grad(x: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """All ranks' blocks ``(W b, ...)`` in rank order, differentiable.

    Math: forward $X = [x_0; \\dots; x_{W-1}]$; backward
    $\\nabla x_r = \\sum_s (\\partial L_s / \\partial X)_{\\text{block } r}$, one reduce-scatter
    (the same volume as the gather, half an all-reduce's). Summing, not averaging, is what
    makes DDP's gradient average exact (see [manifold_align.losses.distributed][]). Every
    rank must pass the same shape; without a process group (or with one rank) ``x`` is
    returned unchanged.

    Args:
        x: ``(b, ...)`` this rank's block.
        group: the process group; ``None`` for the world.

    Returns:
        ``(W b, ...)``.
    """
    _, world = rank_and_world(group)
    if world == 1:
        return x
    return _GatherWithGrad.apply(x, group)


def _global_rank(group: dist.ProcessGroup | None, rank: int) -> int:
    return rank if group is None else dist.get_global_rank(group, rank)


def start_shift(
    t: torch.Tensor, group: dist.ProcessGroup | None, rank: int, world: int
) -> tuple[torch.Tensor, list]:
    """Start sending ``t`` to rank ``r + 1`` and receiving rank ``r - 1``'s block of its shape.

    Args:
        t: the block to send; it must not be written until the requests are finished.
        group: the process group; ``None`` for the world.
        rank: this process's rank in ``group``.
        world: the size of ``group``.

    Returns:
        The receive buffer and the requests to pass to
        [finish][manifold_align.losses.collectives.finish] before reading it (or overwriting ``t``).
    """
    received = torch.empty_like(t)
    ops = [
        dist.P2POp(dist.isend, t, _global_rank(group, (rank + 1) % world), group),
        dist.P2POp(dist.irecv, received, _global_rank(group, (rank - 1) % world), group),
    ]
    return received, dist.batch_isend_irecv(ops)


def finish(requests: list) -> None:
    """Wait for the requests of a [start_shift][manifold_align.losses.collectives.start_shift]."""
    for request in requests:
        request.wait()
