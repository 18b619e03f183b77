"""Process-group set-up and tear-down for a run started by ``torchrun`` (or by hand).

``torchrun --nproc_per_node=W`` starts ``W`` processes and gives each the environment
variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
[init_distributed][manifold_align.train.distributed.init_distributed] reads them and joins the default process group (``nccl`` on CUDA,
``gloo`` on CPU), with this process's device ``cuda:LOCAL_RANK`` on CUDA. Without
``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) nothing is initialised: a plain ``python`` run is a
run of one rank.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistEnv", "barrier", "close_distributed", "init_distributed", "is_main", "world"]


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the run.

    Attributes:
        rank: global rank ``0 <= rank < world_size``.
        world_size: number of processes ``W``.
        local_rank: rank on this machine (selects the GPU).
        started: whether [init_distributed][manifold_align.train.distributed.init_distributed] created the process group (and so
            [close_distributed][manifold_align.train.distributed.close_distributed] should destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started: bool = False


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}: expected an integer, got {value!r}") from None


def init_distributed(
    device: torch.device, env: Mapping[str, str] | None = None, timeout_s: float = 600.0
) -> DistEnv:
    """Join the default process group that ``torchrun``'s environment describes.

    Backend ``nccl`` when ``device`` is CUDA (and ``torch.cuda.set_device(LOCAL_RANK)``),
    ``gloo`` otherwise. An already initialised group (e.g. created by a test harness or a
    notebook) is used as it is.

    Args:
        device: the device the run asked for (``train.device`` resolved).
        env: the environment (default ``os.environ``).
        timeout_s: how long a collective (all-reduce, barrier) waits for every rank before
            it fails: a stalled rank then stops the job instead of holding every GPU for
            torch's default 30 minutes (``train.collective_timeout_s``; docs/scaling.md).

    Returns:
        The [DistEnv][manifold_align.train.distributed.DistEnv]; ``world_size = 1`` when no group is needed.

    Raises:
        ValueError: a non-integer ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, or a rank outside
            ``[0, WORLD_SIZE)``.
    """
    if dist.is_available() and dist.is_initialized():
        return DistEnv(dist.get_rank(), dist.get_world_size(),
                       _env_int(os.environ if env is None else env, "LOCAL_RANK", 0), False)
    env = os.environ if env is None else env
    world_size = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local_rank = _env_int(env, "LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK, WORLD_SIZE: got rank {rank} of {world_size}, expected 0 <= rank < WORLD_SIZE")
    if world_size == 1:
        return DistEnv(0, 1, 0, False)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return DistEnv(rank, world_size, local_rank, True)


def close_distributed(env: DistEnv) -> None:
    """Destroy the default process group if [init_distributed][manifold_align.train.distributed.init_distributed] created it."""
    if env.started and dist.is_initialized():
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process is rank 0 (the one that writes files)."""
    return world()[0] == 0


def barrier() -> None:
    """Wait for every rank (a no-op on one process)."""
    if world()[1] > 1:
        dist.barrier()
