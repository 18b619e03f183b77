"""Which shards one reader of a distributed run reads, in which order, and for how long.

A *reader* is one ``DataLoader`` worker ``w`` of ``n`` on rank ``r`` of ``W``. Given the
shard list ``S`` (``|S|`` shards) and an epoch ``e``:

* **Split** (non-resampled): the list (with ``shardshuffle``, shuffled with the seed
  ``(seed, e)`` that every rank shares) is split first by rank, then by worker, as
  ``webdataset.split_by_node`` followed by ``webdataset.split_by_worker`` would: reader
  ``(r, w)`` gets ``S_e[r::W][w::n]``. The ``W n`` slices partition ``S``.
* **Resampling**: each reader draws shards with replacement from all of ``S``
  (``webdataset.ResampledShards``) with its own seed ``(seed, e, r, w)``.
* **Fixed epoch**: every rank yields exactly
  ``N = samples_per_epoch // (batch_size * W)`` batches per epoch; worker ``w`` makes
  ``N // n + [w < N mod n]`` of them, i.e. that many times ``batch_size`` stream items.
  A reader whose shards run out reads them again ([cycle_shards][manifold_align.data.sharding.cycle_shards]), so uneven shards
  never make one rank stop early and leave the others waiting in a collective.

Everything here is a pure function of ``(seed, epoch, rank, world, worker, workers)``, so a
resumed run that sets the same epoch reads the same shards in the same order.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import webdataset as wds

__all__ = [
    "assign_shards",
    "cycle_shards",
    "discover_rank",
    "epoch_batches",
    "split_by_rank",
    "stream_seed",
    "worker_batches",
    "worker_info",
]

T = TypeVar("T")


def stream_seed(*parts: int) -> int:
    """A 31-bit seed from integers, the same in every process and Python version.

    ``seed = blake2b(repr(parts))[:8] mod 2^31``. (Python's ``hash`` of a string changes
    per process; a digest does not.)

    Raises:
        TypeError: if a part is not an ``int``.
    """
    for i, part in enumerate(parts):
        if not isinstance(part, int) or isinstance(part, bool):
            raise TypeError(f"parts[{i}]: got {type(part).__name__}, expected int")
    digest = hashlib.blake2b(repr(tuple(parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"environment variable {name}: got {value!r}, expected an integer"
        ) from None


def discover_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` of this process.

    Looked up in this order: the arguments (both or neither); ``torch.distributed`` when its
    default process group is initialized; the ``RANK`` and ``WORLD_SIZE`` environment
    variables (set by ``torchrun`` and most launchers); otherwise ``(0, 1)``.

    Raises:
        ValueError: if only one of ``rank``/``world_size`` is given, only one of the two
            environment variables is set or is not an integer, ``world_size < 1``, or
            ``rank`` is outside ``[0, world_size)``.
    """
    if (rank is None) != (world_size is None):
        raise ValueError(
            f"rank, world_size: got rank={rank!r}, world_size={world_size!r}, expected both "
            "or neither (neither: discover them from torch.distributed or RANK/WORLD_SIZE)"
        )
    source = "arguments"
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
            source = "torch.distributed"
        elif "RANK" in os.environ or "WORLD_SIZE" in os.environ:
            missing = [n for n in ("RANK", "WORLD_SIZE") if n not in os.environ]
            if missing:
                raise ValueError(
                    f"environment variable {missing[0]}: not set, expected it next to "
                    f"{'WORLD_SIZE' if missing[0] == 'RANK' else 'RANK'} (both or neither)"
                )
            rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
            source = "RANK/WORLD_SIZE"
        else:
            return 0, 1
    rank, world_size = int(rank), int(world_size)
    if world_size < 1:
        raise ValueError(f"world_size ({source}): got {world_size}, expected >= 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank ({source}): got {rank}, expected in [0, {world_size})")
    return rank, world_size


def worker_info() -> tuple[int, int]:
    """``(worker, num_workers)`` of the calling ``DataLoader`` worker; ``(0, 1)`` outside one.

    The same values ``webdataset.split_by_worker`` uses (it also honours the ``WORKER`` and
    ``NUM_WORKERS`` environment variables), so a count made with them agrees with its split.
    """
    _, _, worker, num_workers = wds.utils.pytorch_worker_info()
    return worker, num_workers


def split_by_rank(src: Iterable[T], rank: int, world_size: int) -> Iterator[T]:
    """Items ``rank, rank + W, rank + 2W, ...`` of ``src`` (``W = world_size``).

    ``webdataset.split_by_node`` with the rank given rather than looked up when iterated:
    the rank is fixed when the reader is built (in the main process, where
    ``torch.distributed`` is initialized) and travels with it into ``DataLoader`` workers,
    which may be spawned processes without a process group; and tests can simulate ranks.
    """
    return itertools.islice(src, rank, None, world_size)


def assign_shards(
    shards: Sequence[T], rank: int, world_size: int, worker: int, num_workers: int
) -> list[T]:
    """The shards of reader ``(rank, worker)``: ``shards[rank::W][worker::n]``.

    Over all ``W n`` readers the slices partition ``shards``.
    """
    return list(shards)[rank::world_size][worker::num_workers]


def epoch_batches(samples_per_epoch: int, global_batch: int) -> int:
    """Batches per rank per epoch: ``N = samples_per_epoch // global_batch``.

    ``global_batch = batch_size * world_size``; every rank takes ``N`` steps per epoch.

    Raises:
        ValueError: if ``global_batch < 1`` or ``N`` would be 0.
    """
    if global_batch < 1:
        raise ValueError(f"global_batch: got {global_batch}, expected >= 1")
    batches = samples_per_epoch // global_batch
    if batches < 1:
        raise ValueError(
            f"samples_per_epoch: got {samples_per_epoch}, expected at least one global batch "
            f"of {global_batch} samples (batch_size x world_size)"
        )
    return batches


def worker_batches(batches: int, worker: int, num_workers: int) -> int:
    """Batches worker ``w`` of ``n`` makes so that the ``n`` workers make ``batches`` in all.

    ``N // n + 1`` for ``w < N mod n``, else ``N // n``.

    Raises:
        ValueError: if ``num_workers < 1`` or ``worker`` is outside ``[0, num_workers)``.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers: got {num_workers}, expected >= 1")
    if not 0 <= worker < num_workers:
        raise ValueError(f"worker: got {worker}, expected in [0, {num_workers})")
    return batches // num_workers + (1 if worker < batches % num_workers else 0)


def cycle_shards(
    shards: Sequence[dict[str, Any]], seed_parts: Sequence[int], shuffle: bool
) -> Iterator[dict[str, Any]]:
    """Endless passes over ``shards``: the first in the given order, pass ``c >= 1``
    shuffled with the seed ``(*seed_parts, c)`` when ``shuffle`` (else the given order again).

    ``webdataset``'s ``with_epoch`` repeats a pipeline too, but ends the epoch early when a
    pass yields nothing; here [WebDatasetReader][manifold_align.data.webdataset.WebDatasetReader]
    decides, so an epoch is never short.

    Raises:
        ValueError: if ``shards`` is empty (when iterated).
    """
    if not shards:
        raise ValueError("shards: got an empty list, expected at least one shard to cycle over")
    order = list(shards)
    for cycle in itertools.count():
        if cycle > 0 and shuffle:
            random.Random(stream_seed(*seed_parts, cycle)).shuffle(order)
        yield from order
