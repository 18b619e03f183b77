"""Sharing an evaluation between the ranks of a ``torch.distributed`` process group.

Rank ``r`` of ``W`` takes the contiguous block ``[r m, min((r + 1) m, n))`` of ``n`` items,
``m = ceil(n / W)`` ([shard_bounds][manifold_align.evaluate.ranks.shard_bounds]); its results are gathered with
[gather_rows][manifold_align.evaluate.ranks.gather_rows] (blocks of any length, in rank order, so the gathered rows are in item
order) or summed with [all_sum][manifold_align.evaluate.ranks.all_sum]. Without an initialised process group, or with
``distributed=False``, there is one rank and every helper is the identity. Every rank must
make the same calls in the same order (collectives).

`RankSplitEncoder` wraps a two-tower model so that its encoders split their rows over the
ranks the same way and gather the points: the trainer's periodic evaluation on ``W`` ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "RankSplitEncoder", "all_sum", "gather_objects", "gather_rows", "rank_world", "shard_bounds",
]


def rank_world(distributed: bool) -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` unless ``distributed`` and a group is initialised."""
    if distributed and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s block of ``n`` items (may be empty)."""
    m = -(-n // world)
    return min(rank * m, n), min((rank + 1) * m, n)


def gather_rows(x: torch.Tensor, world: int) -> torch.Tensor:
    """Concatenate every rank's ``x`` (any first dimension, same trailing shape and dtype)
    in rank order; ``x`` itself on one rank."""
    if world == 1:
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    longest = max(int(s) for s in sizes)
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)])


def gather_objects(obj: Any, world: int) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order; ``[obj]`` on one rank."""
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def all_sum(x: torch.Tensor, world: int) -> torch.Tensor:
    """``x`` summed over the ranks (in place); ``x`` itself on one rank."""
    if world > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


class RankSplitEncoder(nn.Module):
    """A two-tower model whose ``encode_image``/``encode_text`` split their rows over the ranks.

    For ``n`` input rows on ``W`` ranks, rank ``r`` encodes rows ``r m .. r m + m - 1`` with
    ``m = ceil(n / W)`` (the last rows repeated where ``W m > n``), the ranks all-gather their
    ``m`` points and every rank returns the ``n`` points in input order. Every rank must make
    the same calls with the same row counts (a deterministic evaluation does). Everything
    else (``manifold``, ``temperature``, ``vision``, ...) is the wrapped model's. On one
    process it is the model itself.

    Args:
        model: the two-tower model (unwrapped, not the DDP module).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    def _split(self, encode: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        rank, world = rank_world(True)
        if world == 1:
            return encode(rows)
        n = rows.shape[0]
        m = -(-n // world)
        index = torch.arange(rank * m, (rank + 1) * m, device=rows.device).clamp_(max=n - 1)
        local = encode(rows[index]).contiguous()
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local)
        return torch.cat(parts)[:n]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``model.encode_image`` on this rank's rows, gathered: ``(n, *point_shape)``."""
        return self._split(self.model.encode_image, images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``model.encode_text`` on this rank's rows, gathered: ``(n, *point_shape)``."""
        return self._split(self.model.encode_text, tokens)
