"""Resumable batches: a seeded permutation per epoch, and the loader that follows it.

Batch ``b`` of epoch ``e`` holds the indices ``perm_e[b B : (b + 1) B]`` where ``perm_e`` is
``torch.randperm(N)`` drawn from a generator seeded with ``(seed, e)``; the incomplete last
batch of an epoch is dropped. On ``W`` ranks ``B`` is the *global* batch and rank ``r`` takes
the slice ``perm_e[b B + r B/W : b B + (r + 1) B/W]`` of it, so the ranks together see exactly
the batches one process with batch ``B`` sees. The whole order is a pure function of ``(seed, N, B)``, so the
data position of a run is one integer, the number of batches consumed, and a resumed run
sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["EpochBatchSampler", "MapBatches", "StreamBatches"]


class EpochBatchSampler(Sampler[list[int]]):
    """Endless batches of dataset indices, starting after ``start`` consumed batches.

    Args:
        size: number of samples ``N`` in the dataset.
        batch_size: ``B``, ``1 <= B <= N``.
        seed: the permutation seed.
        start: batches already consumed (the data position), ``>= 0``.
        rank: this process's rank ``r``; it yields its ``B / W`` indices of each batch.
        world_size: number of ranks ``W``; must divide ``B``.

    Raises:
        ValueError: naming ``size``, ``batch_size``, ``start``, ``rank`` or ``world_size``
            when out of range.
    """

    def __init__(
        self, size: int, batch_size: int, seed: int, start: int = 0, rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if size <= 0:
            raise ValueError(f"size: expected a positive dataset size, got {size}")
        if not 1 <= batch_size <= size:
            raise ValueError(f"batch_size: expected in [1, {size}] (the dataset size), got {batch_size}")
        if start < 0:
            raise ValueError(f"start: expected >= 0, got {start}")
        if world_size < 1 or batch_size % world_size:
            raise ValueError(
                f"world_size: expected a positive divisor of batch_size {batch_size}, got {world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: expected in [0, {world_size}), got {rank}")
        self.rank = rank
        self.world_size = world_size
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.start = start

    @property
    def batches_per_epoch(self) -> int:
        """``N // B``."""
        return self.size // self.batch_size

    def position(self, consumed: int) -> tuple[int, int]:
        """``(epoch, batch index within the epoch)`` after ``consumed`` batches."""
        return divmod(consumed, self.batches_per_epoch)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch``: ``(N,)`` int64, a function of ``(seed, epoch)`` only."""
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (2**63))
        return torch.randperm(self.size, generator=gen)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, index = self.position(self.start)
        bpe, bs = self.batches_per_epoch, self.batch_size
        local = bs // self.world_size
        offset = self.rank * local
        while True:
            perm = self.permutation(epoch)
            for b in range(index, bpe):
                first = b * bs + offset
                yield perm[first : first + local].tolist()
            epoch, index = epoch + 1, 0


class MapBatches:
    """A map-style dataset as the trainer's resumable batch source.

    ``iterate(start)`` returns the batches of :class:`EpochBatchSampler` from position
    ``start`` on (this rank's slice of each global batch), loaded by a ``DataLoader`` whose own generator is seeded (so creating it
    never draws from torch's global generator, which stays the model's).

    Args:
        dataset: map-style dataset of ``size = len(dataset)`` samples.
        batch_size: samples per global batch (over all ranks).
        seed: the permutation seed.
        collate: ``list of samples -> batch``, e.g. :class:`~manifold_align.data.collate.Collate`
            (whose ``Batch`` carries the skipped-sample record of its own samples).
        num_workers: loader worker processes (``0`` loads in the main process).
        rank: this process's rank.
        world_size: number of ranks (divides ``batch_size``).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        collate: Callable[[list[Any]], Any],
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.collate = collate
        self.num_workers = num_workers
        self.rank = rank
        self.world_size = world_size
        # validate the sizes now
        EpochBatchSampler(len(dataset), batch_size, seed, 0, rank, world_size)

    def iterate(self, start: int = 0) -> Iterator[Any]:
        """Endless batches after the first ``start``."""
        sampler = EpochBatchSampler(len(self.dataset), self.batch_size, self.seed, start,
                                    self.rank, self.world_size)
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )
        return iter(loader)


class StreamBatches:
    """An iterable (streaming) dataset as the trainer's batch source, epoch after epoch.

    When the stream ends, the next epoch starts (``dataset.set_epoch(e)`` if it has one).
    The data position is the number of batches consumed; ``iterate(start)`` reads and drops
    the first ``start`` batches, so a resumed run sees the same batches as long as the stream
    is deterministic for its seed (webdataset shards read in a seeded order).

    Args:
        dataset: an ``IterableDataset`` of samples.
        batch_size: samples per batch.
        collate: ``list of samples -> batch``.
        num_workers: loader worker processes.

    Raises:
        ValueError: if ``batch_size < 1``, or (when iterated) an epoch yields no batch.
    """

    def __init__(
        self,
        dataset: torch.utils.data.IterableDataset,
        batch_size: int,
        collate: Callable[[list[Any]], Any],
        num_workers: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.collate = collate
        self.num_workers = num_workers

    def _epochs(self) -> Iterator[Any]:
        epoch = 0
        while True:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
            loader = DataLoader(
                self.dataset, batch_size=self.batch_size, collate_fn=self.collate,
                num_workers=self.num_workers, drop_last=True,
            )
            count = 0
            for batch in loader:
                count += 1
                yield batch
            if count == 0:
                raise ValueError(f"dataset: epoch {epoch} gave no batch of {self.batch_size} samples")
            epoch += 1

    def iterate(self, start: int = 0) -> Iterator[Any]:
        """Endless batches after the first ``start`` (read and dropped)."""
        batches = self._epochs()
        for _ in range(start):
            next(batches)
        return batches
