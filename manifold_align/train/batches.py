"""Resumable batches: a seeded permutation per epoch, and the loader that follows it.

Batch ``b`` of epoch ``e`` holds the indices ``perm_e[b B : (b + 1) B]`` where ``perm_e`` is
``torch.randperm(N)`` drawn from a generator seeded with ``(seed, e)``; the incomplete last
batch of an epoch is dropped. On ``W`` ranks ``B`` is the *global* batch and rank ``r`` takes
the slice ``perm_e[b B + r B/W : b B + (r + 1) B/W]`` of it, so the ranks together see exactly
the batches one process with batch ``B`` sees. The whole order is a pure function of ``(seed, N, B)``, so the
data position of a run is one integer, the number of batches consumed, and a resumed run
sees exactly the batches the uninterrupted run would have seen.

A source that gives nothing to train on stops instead of spinning. A batch is *usable* when
it holds at least two readable samples (a contrastive batch needs a negative); both sources
raise [UnusableDataError][manifold_align.data.skipped.UnusableDataError], whose message counts the
skipped samples by reason, when

* a whole epoch's worth of batches in a row (map-style: ``N // B``; a stream: one pass)
  gave no usable batch, or
* more than ``max_consecutive_skips`` samples were skipped since the last usable batch
  (the bound for epochs too long to wait for, and for endless streams).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from manifold_align.data.skipped import SkippedSamples, UnusableDataError

__all__ = [
    "MAX_CONSECUTIVE_SKIPS",
    "MIN_USABLE",
    "EpochBatchSampler",
    "MapBatches",
    "StreamBatches",
    "UsableWatch",
]

MIN_USABLE = 2
"""Readable samples a batch needs to be trained on (the trainer drops smaller ones)."""

MAX_CONSECUTIVE_SKIPS = 100_000
"""Default bound on samples skipped in a row (``data.max_consecutive_skips``).

Ten of img2dataset's default shards (10,000 samples each) in a row: one wholly corrupt
shard never stops a run, while a source with nothing usable stops within an epoch or this
many samples (about a second of failed reads for missing files).
"""


def _readable(batch: Any) -> int | None:
    """Readable samples of a batch: the length of its first tensor (``None``: not a tensor)."""
    first = batch[0] if isinstance(batch, tuple | list) and batch else None
    shape = getattr(first, "shape", None)
    return int(shape[0]) if shape else None


def _skipped(batch: Any) -> SkippedSamples | None:
    """The skip record a [Batch][manifold_align.data.collate.Batch] carries, if any."""
    record = batch[2] if isinstance(batch, tuple | list) and len(batch) == 3 else None
    return record if isinstance(record, SkippedSamples) else None


class UsableWatch:
    """Counts what a batch source gave since its last usable batch, and stops it when too long.

    Args:
        source: names the data in messages (a config key and its value).
        max_consecutive_skips: raise once more samples than this were skipped since the last
            usable batch (``None``: no bound of this kind).

    Attributes:
        batches: unusable batches since the last usable one.
        skipped: the samples they skipped, by reason.
    """

    def __init__(self, source: str = "dataset", max_consecutive_skips: int | None = None) -> None:
        if max_consecutive_skips is not None and max_consecutive_skips < 1:
            raise ValueError(
                f"max_consecutive_skips: expected >= 1 (samples), got {max_consecutive_skips}"
            )
        self.source = source
        self.max_consecutive_skips = max_consecutive_skips
        self.batches = 0
        self.skipped = SkippedSamples()

    def see(self, batch: Any) -> None:
        """Account for one batch (a batch without a tensor first counts as usable).

        Raises:
            UnusableDataError: the skips since the last usable batch exceed the bound.
        """
        readable = _readable(batch)
        if readable is None or readable >= MIN_USABLE:
            self.batches, self.skipped = 0, SkippedSamples()
            return
        self.batches += 1
        record = _skipped(batch)
        if record is not None:
            self.skipped += record
        bound = self.max_consecutive_skips
        if bound is not None and self.skipped.total > bound:
            raise self.error(f"more than data.max_consecutive_skips = {bound} samples in a row")

    def error(self, why: str) -> UnusableDataError:
        """The exception that stops the source, saying ``why`` and what was skipped."""
        return UnusableDataError(
            f"{self.source}: no batch of at least {MIN_USABLE} readable samples in "
            f"{self.batches} batches ({why}); {self.skipped.summary()}"
        )


class _Counted:
    """``collate_fn`` wrapper that also returns how many stream items a batch was made of."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, samples: Sequence[Any]) -> tuple[int, Any]:
        return len(samples), self.collate(list(samples))


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

    ``iterate(start)`` returns the batches of `EpochBatchSampler` from position
    ``start`` on (this rank's slice of each global batch), loaded by a ``DataLoader`` whose own generator is seeded (so creating it
    never draws from torch's global generator, which stays the model's).

    Args:
        dataset: map-style dataset of ``size = len(dataset)`` samples.
        batch_size: samples per global batch (over all ranks).
        seed: the permutation seed.
        collate: ``list of samples -> batch``, e.g. [Collate][manifold_align.data.collate.Collate]
            (whose ``Batch`` carries the skipped-sample record of its own samples).
        num_workers: loader worker processes (``0`` loads in the main process).
        rank: this process's rank.
        world_size: number of ranks (divides ``batch_size``).
        source: names the data in error messages.
        max_consecutive_skips: see the module docstring (``None``: only the epoch bound).

    Raises:
        UnusableDataError: when iterated, if no usable batch comes for an epoch's worth of
            batches or more than ``max_consecutive_skips`` skipped samples.
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
        source: str = "dataset",
        max_consecutive_skips: int | None = MAX_CONSECUTIVE_SKIPS,
    ) -> None:
        self.source = source
        self.max_consecutive_skips = max_consecutive_skips
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
        return self._watched(loader, sampler.batches_per_epoch)

    def _watched(self, loader: Iterable[Any], epoch: int) -> Iterator[Any]:
        watch = UsableWatch(self.source, self.max_consecutive_skips)
        for batch in loader:
            watch.see(batch)
            if watch.batches >= epoch:
                raise watch.error("as many as one epoch has")
            yield batch


class StreamBatches:
    """An iterable (streaming) dataset as the trainer's batch source, epoch after epoch.

    When the stream ends, the next epoch starts (``dataset.set_epoch(e)`` if it has one).
    The data position is the number of batches consumed; ``iterate(start)`` reads and drops
    the first ``start`` batches, so a resumed run sees the same batches as long as the stream
    is deterministic for its seed (webdataset shards read in a seeded order).

    A loader worker's incomplete last batch is not trained on (every batch has
    ``batch_size`` stream items), but the samples it skipped are added to the next batch's
    record, so they are counted and an empty epoch can name them.

    Args:
        dataset: an ``IterableDataset`` of samples.
        batch_size: samples per batch.
        collate: ``list of samples -> batch``.
        num_workers: loader worker processes.
        source: names the data in error messages.
        max_consecutive_skips: see the module docstring (``None``: only the epoch bound).

    Raises:
        ValueError: if ``batch_size < 1``.
        UnusableDataError: when iterated, if an epoch yields no batch of ``batch_size``
            items, no usable one, or more than ``max_consecutive_skips`` skipped samples
            come without a usable batch; the message counts them by reason.
    """

    def __init__(
        self,
        dataset: torch.utils.data.IterableDataset,
        batch_size: int,
        collate: Callable[[list[Any]], Any],
        num_workers: int = 0,
        source: str = "dataset",
        max_consecutive_skips: int | None = MAX_CONSECUTIVE_SKIPS,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.collate = collate
        self.num_workers = num_workers
        self.source = source
        self.max_consecutive_skips = max_consecutive_skips

    def _epochs(self) -> Iterator[Any]:
        watch = UsableWatch(self.source, self.max_consecutive_skips)
        carry = SkippedSamples()  # skips of incomplete batches, for the next full one
        epoch = 0
        while True:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
            loader = DataLoader(
                self.dataset, batch_size=self.batch_size, collate_fn=_Counted(self.collate),
                num_workers=self.num_workers, drop_last=False,
            )
            count = items = 0
            stream = iter(loader)
            while (item := self._next(stream)) is not None:
                size, batch = item
                items += size
                record = _skipped(batch)
                if size < self.batch_size:
                    if record is not None:
                        carry += record
                    continue
                if carry and record is not None and hasattr(batch, "_replace"):
                    batch = batch._replace(skipped=carry + record)
                    carry = SkippedSamples()
                count += 1
                watch.see(batch)
                yield batch
            if count == 0:
                raise UnusableDataError(
                    f"{self.source}: epoch {epoch} gave no batch of {self.batch_size} samples "
                    f"(its stream held {items} items); {carry.summary()}"
                )
            if watch.batches >= count:
                raise watch.error(f"all of epoch {epoch}")
            epoch += 1

    def _next(self, stream: Iterator[Any]) -> Any:
        """The loader's next item (``None`` at the epoch's end); a reader's
        ``UnusableDataError`` comes back naming the source, on one line even when a
        ``DataLoader`` worker raised it (the worker's traceback is left out)."""
        try:
            return next(stream)
        except StopIteration:
            return None
        except UnusableDataError as exc:
            message = str(exc)
            if "Original Traceback" in message:  # re-raised from a worker
                marker = f"{UnusableDataError.__name__}: "
                message = message[message.rfind(marker) + len(marker):].strip()
            raise UnusableDataError(f"{self.source}: {message}") from None

    def iterate(self, start: int = 0) -> Iterator[Any]:
        """Endless batches after the first ``start`` (read and dropped)."""
        batches = self._epochs()
        for _ in range(start):
            next(batches)
        return batches
