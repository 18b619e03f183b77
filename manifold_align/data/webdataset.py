"""Read and write webdataset tar shards in the layout img2dataset writes.

A shard is a tar file of records; the files of one record share a key and differ by
extension: ``000000000.jpg`` (or ``.jpeg``/``.png``/``.webp``), ``000000000.txt`` (the
caption, UTF-8) and optionally ``000000000.json`` (metadata, ignored here).

[WebDatasetReader][manifold_align.data.webdataset.WebDatasetReader] is an ``IterableDataset`` built from the ``webdataset`` package's
stages (shard list, rank/worker split, ``tarfile_to_samples``, shuffle buffer); on many ranks
it can give every rank the same number of batches per epoch (see
[sharding][manifold_align.data.sharding]). It yields
``(PIL RGB image, caption)`` pairs; an unreadable record or shard is replaced by a
[SkippedSample][manifold_align.data.skipped.SkippedSample] marker (reason and key), which
[Collate][manifold_align.data.collate.Collate] counts. Nothing is dropped silently and no bad
sample raises.

[write_shards][manifold_align.data.webdataset.write_shards] writes any ``(image, caption)`` iterable (e.g. the synthetic data) as
such shards, so the real loading path can be tried without downloading anything.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import webdataset as wds
from PIL import Image

from manifold_align.data.sharding import (
    cycle_shards,
    discover_rank,
    epoch_batches,
    split_by_rank,
    stream_seed,
    worker_batches,
    worker_info,
)
from manifold_align.data.skipped import (
    BAD_CAPTION,
    EMPTY_CAPTION,
    MISSING_CAPTION,
    MISSING_IMAGE,
    UNREADABLE_SHARD,
    SampleError,
    SkippedSample,
    SkippedSamples,
    UnusableDataError,
)
from manifold_align.data.transforms import MAX_IMAGE_PIXELS, decode_image, to_rgb

__all__ = ["IMAGE_EXTENSIONS", "WebDatasetReader", "check_shard_list", "write_shards"]

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")
"""Image member extensions looked for, in this order."""

_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}


class _TrackedStream:
    """Read-only wrapper of a shard's byte stream that notices a tar cut at a block boundary.

    A complete tar ends with zero blocks; Python's ``tarfile`` stops quietly at end-of-file
    too, so a shard truncated between two members would lose its tail silently. The wrapper
    remembers whether end-of-file was reached and the last 512 bytes: end-of-file right after
    a non-zero block means the archive was cut. Compressed shards (gzip, bzip2, xz) are not
    judged this way (their last bytes are a checksum); a cut there fails in the decompressor.
    """

    _COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")

    def __init__(self, raw: Any, url: str) -> None:
        self.raw = raw
        self.url = url
        self.eof = False
        self.head = b""
        self.tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if size is None or size < 0 or len(data) < size:
            self.eof = True
        if len(self.head) < 6:
            self.head = (self.head + data)[:6]
        if data:
            self.tail = (self.tail + data)[-512:]
        return data

    def truncated(self) -> bool:
        """An uncompressed stream reached end-of-file and its last block is not all zeros."""
        compressed = self.head.startswith(self._COMPRESSED)
        return self.eof and not compressed and any(self.tail)

    def close(self) -> None:
        self.raw.close()

    def __repr__(self) -> str:
        return f"<shard {self.url}>"


def _expand(urls: str | list[str]) -> list[str]:
    """The shard list of ``urls``: a brace pattern expanded (``webdataset.expand_urls``)."""
    shards = wds.shardlists.expand_urls(urls) if isinstance(urls, str) else list(urls)
    if not shards:
        raise ValueError(f"urls: {urls!r} names no shard, expected at least one")
    return shards


def _local_path(url: str) -> Path | None:
    """The file a shard URL names on this machine (no scheme or ``file:``), else ``None``."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "" and url != "-":
        return Path(url)
    return None


def _named(urls: list[str], limit: int = 3) -> str:
    shown = ", ".join(urls[:limit])
    return shown + (f", ... ({len(urls)} in all)" if len(urls) > limit else "")


def check_shard_list(shards: Sequence[str], *, allow_pipe: bool = False, local: bool = True) -> None:
    """Refuse a shard list that cannot be read as given, before anything is read.

    * ``pipe:`` URLs run their text as a shell command (``webdataset.gopen``); a
      configuration string must not run commands unless that was asked for explicitly.
    * With ``local``, local shards (a path, or a ``file:`` URL) that do not exist or are
      empty (0 bytes): usually a mistyped pattern or an unfinished download. The message names the first
      few and the count. Remote shards are judged when read (an unreadable one is counted as
      ``unreadable_shard``).

    Raises:
        ValueError: ``pipe:`` URLs without ``allow_pipe``, or empty local shards.
        FileNotFoundError: local shards that do not exist (empty ones are named too).
    """
    pipes = [u for u in shards if urllib.parse.urlparse(u).scheme == "pipe"]
    if pipes and not allow_pipe:
        raise ValueError(
            f"urls: {len(pipes)} shard URL(s) run a shell command ({_named(pipes, 1)}); a "
            "'pipe:' URL runs only when allowed explicitly: allow_pipe=True "
            "(data.webdataset.allow_pipe: true in a run config)"
        )
    missing, empty = [], []
    for url in shards if local else ():
        path = _local_path(url)
        if path is None:
            continue
        try:
            if path.stat().st_size == 0:
                empty.append(url)
        except OSError:
            missing.append(url)
    if not missing and not empty:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {len(shards)} shards do not exist: {_named(missing)}")
    if empty:
        parts.append(f"{len(empty)} of {len(shards)} shards are empty (0 bytes): {_named(empty)}")
    message = (
        "urls: " + "; ".join(parts) + ". Fix the pattern, or leave them out (a brace pattern "
        "takes several parts joined by '::', e.g. 'a-{000..004}.tar::a-{006..009}.tar')"
    )
    raise (FileNotFoundError if missing else ValueError)(message)


def _url_list(urls: str | os.PathLike | Sequence[str | os.PathLike]) -> str | list[str]:
    if isinstance(urls, str | os.PathLike):
        return os.fspath(urls)
    out = [os.fspath(u) for u in urls]
    if not out:
        raise ValueError("urls: got an empty list, expected at least one shard")
    return out


class WebDatasetReader(torch.utils.data.IterableDataset):
    """``(image, caption)`` pairs from img2dataset-style webdataset shards.

    On a distributed run each rank reads its own part of the shards; with
    ``samples_per_epoch`` and ``batch_size`` every rank yields exactly the same number of
    batches per epoch (see [sharding][manifold_align.data.sharding]):

    $$N = \\lfloor \\text{samples\\_per\\_epoch} / (\\text{batch\\_size} \\cdot W) \\rfloor$$

    batches of ``batch_size`` stream items per rank (``W`` ranks), of which ``DataLoader``
    worker ``w`` of ``n`` makes ``N // n + [w < N mod n]``. Load it with
    ``DataLoader(reader, batch_size=reader.batch_size, drop_last=True, ...)`` and no
    ``persistent_workers`` (the workers must see each ``set_epoch``).

    Args:
        urls: a shard path/URL, a brace pattern (``"data/{00000..00127}.tar"``) or a list.
        shuffle: shuffle-buffer size in samples (``0``: keep the stored order).
        seed: seed of the shard order and the shuffle buffer (mixed with the epoch, the
            rank and the worker id); the same seed gives the same stream.
        shardshuffle: shuffle the shard list each epoch, the same way on every rank, before
            it is split (ignored when ``resampled``).
        resampled: draw shards with replacement (``webdataset.ResampledShards``), each
            reader with its own seed ``(seed, epoch, rank, worker)``; endless unless
            ``samples_per_epoch`` bounds it. Readers do not share a list to split, so a
            custom ``nodesplitter`` or ``workersplitter`` is rejected.
        image_extensions: image members looked for, first match wins.
        caption_extension: caption member (UTF-8 text).
        emit_skipped: yield a [SkippedSample][manifold_align.data.skipped.SkippedSample] marker for each unreadable record or
            shard (for [Collate][manifold_align.data.collate.Collate]). With ``False`` the
            markers are only counted in [skipped][manifold_align.data.skipped], which is exact only with
            ``num_workers=0`` (a worker's record stays in the worker).
        nodesplitter: stage that splits the shard list between ranks; ``None`` splits it by
            this reader's ``rank`` and ``world_size``
            ([split_by_rank][manifold_align.data.sharding.split_by_rank]; a no-op on one process).
        workersplitter: stage that splits a rank's shards between ``DataLoader`` workers.
        samples_per_epoch: the nominal epoch in samples over all ranks (stream items:
            skipped-sample markers count, so batch counts stay exact); with ``batch_size``
            it fixes ``N`` above, a reader whose shards run out reads them again, and each
            epoch ends after exactly ``N`` batches per rank. ``None``: an epoch is one pass
            over the shards (without resampling; one process only) or endless (resampled).
        batch_size: samples per batch on one rank (the ``DataLoader``'s); required with
            ``samples_per_epoch``.
        rank: this process's rank; with ``world_size``, or neither (then discovered from
            ``torch.distributed`` or ``RANK``/``WORLD_SIZE``, see
            [discover_rank][manifold_align.data.sharding.discover_rank]) when the reader is built.
        world_size: number of ranks.
        allow_pipe: accept ``pipe:`` URLs, which run their text as a shell command (off by
            default: see [check_shard_list][manifold_align.data.webdataset.check_shard_list]).
        check_shards: refuse missing or empty local shards when built (see
            [check_shard_list][manifold_align.data.webdataset.check_shard_list]); ``False`` counts them as ``unreadable_shard`` when read.
        max_image_pixels: images whose header declares more pixels are skipped undecoded
            (reason ``too_many_pixels``); ``None``: no limit of ours.

    Attributes:
        skipped: [SkippedSamples][manifold_align.data.skipped.SkippedSamples] of this process (see ``emit_skipped``).
        shards: the expanded shard list.
        rank, world_size: as resolved when the reader was built.

    Raises:
        FileNotFoundError: local shards that do not exist (with ``check_shards``).
        ValueError: if ``urls`` is empty; a shard is a ``pipe:`` URL without
            ``allow_pipe``; a local shard is empty (with ``check_shards``); ``shuffle`` is
            negative; only one of
            ``samples_per_epoch``/``batch_size`` (or ``rank``/``world_size``) is given;
            ``batch_size < 1``; ``samples_per_epoch`` is below one global batch; a custom
            splitter is given with ``resampled``; or, without
            resampling on more than one rank, there are fewer shards than ranks or no
            ``samples_per_epoch`` (ranks would run different numbers of steps). When
            iterated: a worker that must make batches got no shard (fewer shards than
            ranks x workers, message names the numbers). ``UnusableDataError`` when
            iterated: every shard of an endless or fixed epoch was tried since the last
            readable sample without one (the message counts the skipped samples by reason).
    """

    def __init__(
        self,
        urls: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        shuffle: int = 0,
        seed: int = 0,
        shardshuffle: bool = False,
        resampled: bool = False,
        image_extensions: Sequence[str] = IMAGE_EXTENSIONS,
        caption_extension: str = "txt",
        emit_skipped: bool = True,
        nodesplitter: Callable[[Iterable[Any]], Iterator[Any]] | None = None,
        workersplitter: Callable[[Iterable[Any]], Iterator[Any]] | None = wds.split_by_worker,
        samples_per_epoch: int | None = None,
        batch_size: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        allow_pipe: bool = False,
        check_shards: bool = True,
        max_image_pixels: int | None = MAX_IMAGE_PIXELS,
    ) -> None:
        super().__init__()
        self.urls = _url_list(urls)
        self.shards = _expand(self.urls)
        self.allow_pipe = bool(allow_pipe)
        self.max_image_pixels = max_image_pixels
        if shuffle < 0:
            raise ValueError(f"shuffle: got {shuffle}, expected >= 0 (buffer size in samples)")
        self.shuffle = int(shuffle)
        self.seed = int(seed)
        self.shardshuffle = bool(shardshuffle)
        self.resampled = bool(resampled)
        self.image_extensions = tuple(e.lower().lstrip(".") for e in image_extensions)
        self.caption_extension = caption_extension.lower().lstrip(".")
        self.emit_skipped = bool(emit_skipped)
        self.nodesplitter = nodesplitter
        self.workersplitter = workersplitter
        if self.resampled and (
            nodesplitter is not None or workersplitter not in (None, wds.split_by_worker)
        ):
            raise ValueError(
                "nodesplitter, workersplitter: not used with resampled=True (each rank and "
                "worker draws its own seeded stream, there is no shared list to split); "
                "leave them at their defaults"
            )
        self.rank, self.world_size = discover_rank(rank, world_size)
        if (samples_per_epoch is None) != (batch_size is None):
            raise ValueError(
                f"samples_per_epoch, batch_size: got samples_per_epoch={samples_per_epoch!r}, "
                f"batch_size={batch_size!r}, expected both (a fixed epoch) or neither"
            )
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size: got {batch_size}, expected >= 1 (samples per rank)")
        self.samples_per_epoch = None if samples_per_epoch is None else int(samples_per_epoch)
        self.batch_size = None if batch_size is None else int(batch_size)
        if self.samples_per_epoch is not None and self.batch_size is not None:
            epoch_batches(self.samples_per_epoch, self.batch_size * self.world_size)
        if not self.resampled and self.world_size > 1:
            if self.nodesplitter is None and len(self.shards) < self.world_size:
                raise ValueError(
                    f"urls: {len(self.shards)} shards cannot be split over {self.world_size} "
                    "ranks (each needs at least one); use resampled=True or more shards"
                )
            if self.samples_per_epoch is None:
                raise ValueError(
                    f"samples_per_epoch: required on {self.world_size} ranks without "
                    "resampling, else each rank's epoch ends with its own shards and a rank "
                    "with fewer samples leaves the others waiting in a collective"
                )
        # last: the arguments are checked before any file is looked at
        check_shard_list(self.shards, allow_pipe=self.allow_pipe, local=check_shards)
        self.skipped = SkippedSamples()
        self.epoch = 0

    @property
    def batches_per_epoch(self) -> int | None:
        """Batches per rank per epoch, the same on every rank (``None`` without a fixed epoch)."""
        if self.samples_per_epoch is None or self.batch_size is None:
            return None
        return epoch_batches(self.samples_per_epoch, self.batch_size * self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Mix ``epoch`` into the shard and buffer seeds (a new order per epoch)."""
        self.epoch = int(epoch)

    def decode(self, sample: dict[str, Any]) -> tuple[Image.Image, str]:
        """One grouped tar record -> ``(RGB image, caption)``.

        Raises:
            SampleError: ``missing_image``, ``missing_caption``, ``bad_caption``,
                ``empty_caption``, ``too_many_pixels`` or ``corrupt_image`` (checked in that
                order).
        """
        key = f"{Path(str(sample.get('__url__', ''))).name}/{sample.get('__key__', '?')}"
        image_ext = next((e for e in self.image_extensions if e in sample), None)
        if image_ext is None:
            found = sorted(k for k in sample if not k.startswith("__"))
            raise SampleError(MISSING_IMAGE, key, f"members {found}")
        if self.caption_extension not in sample:
            raise SampleError(MISSING_CAPTION, key, f"no .{self.caption_extension} member")
        try:
            caption = bytes(sample[self.caption_extension]).decode("utf-8")
        except UnicodeDecodeError as exn:
            raise SampleError(BAD_CAPTION, key, str(exn)[:200]) from exn
        caption = caption.strip()
        if not caption:
            raise SampleError(EMPTY_CAPTION, key)
        return decode_image(sample[image_ext], key, self.max_image_pixels), caption

    def _shard_stream(self) -> tuple[Iterable[dict[str, Any]], list[str], int | None]:
        """This reader's shard source for the current epoch, in the calling worker.

        Returns:
            ``(source, universe, quota)``: an iterable of ``{"url": ...}``; the shards it
            draws from; the stream items this worker yields this epoch (``None``: no bound).

        Raises:
            ValueError: if the worker must make batches but got no shard.
        """
        worker, workers = worker_info()
        quota = None
        batches = self.batches_per_epoch
        if batches is not None and self.batch_size is not None:
            quota = worker_batches(batches, worker, workers) * self.batch_size
        if self.resampled:
            reader_seed = stream_seed(self.seed, self.epoch, self.rank, worker)
            shards = wds.ResampledShards(
                self.shards, seed=self.seed, worker_seed=lambda: reader_seed, deterministic=True
            )
            return shards, list(self.shards), quota
        order = wds.SimpleShardList(
            self.shards, seed=stream_seed(self.seed, self.epoch) if self.shardshuffle else None
        )
        source: Iterable[dict[str, Any]] = iter(order)
        if self.nodesplitter is None:
            source = split_by_rank(source, self.rank, self.world_size)
        else:
            source = self.nodesplitter(source)
        if self.workersplitter is not None:
            source = self.workersplitter(source)
        mine = list(source)
        if quota is None:
            return mine, [item["url"] for item in mine], None
        if not mine and quota > 0:
            raise ValueError(
                f"urls: rank {self.rank} of {self.world_size}, DataLoader worker {worker} of "
                f"{workers} got no shard: {len(self.shards)} shards split over "
                f"{self.world_size} ranks x {workers} workers = {self.world_size * workers} "
                "readers (each needs at least one without resampling); use resampled=True, "
                "fewer workers or more shards"
            )
        cycle_seed = (self.seed, self.epoch, self.rank, worker)
        return (
            cycle_shards(mine, cycle_seed, self.shardshuffle) if mine else [],
            [item["url"] for item in mine],
            quota,
        )

    def __iter__(self) -> Iterator[tuple[Image.Image, str] | SkippedSample]:
        pending: list[SkippedSample] = []
        current: dict[str, Any] = {"stream": None, "failed": True}
        shards, universe, quota = self._shard_stream()
        endless = self.resampled or quota is not None
        all_shards = set(universe)
        tried: set[str] = set()  # shards opened since the last readable sample
        since = SkippedSamples()  # what was skipped since the last readable sample

        def shard_failed(url: str, detail: str) -> None:
            pending.append(SkippedSample(UNREADABLE_SHARD, Path(url).name, detail[:200]))

        def open_shards(source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for item in source:
                url = item["url"]
                if endless and url in tried and tried >= all_shards:
                    raise UnusableDataError(
                        f"urls: rank {self.rank} of {self.world_size} (worker "
                        f"{worker_info()[0]}) tried each of its {len(all_shards)} shards since "
                        "its last readable sample and none gave one, so its epoch cannot be "
                        f"filled; {since.summary()}"
                    )
                tried.add(url)
                try:
                    stream = _TrackedStream(wds.gopen(url, "rb"), url)
                except Exception as exn:  # gopen raises OSError or a pipe error for a bad URL
                    shard_failed(url, f"{type(exn).__name__}: {exn}")
                    continue
                if current["stream"] is not None:
                    current["stream"].close()  # the previous shard is done
                current.update(stream=stream, failed=False)
                yield {**item, "stream": stream}

        def on_tar_error(exn: Exception) -> bool:
            # One break of a shard raises up to twice (the member read, then the next
            # header); count it once per shard.
            stream = current["stream"]
            if not current["failed"] and stream is not None:
                current["failed"] = True
                shard_failed(
                    stream.url, f"{type(exn).__name__}: {exn.args[0] if exn.args else exn}"
                )
            return True

        def check_ends(source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for item in source:
                if item == {}:  # end of one shard
                    stream = current["stream"]
                    if stream is not None and not current["failed"] and stream.truncated():
                        current["failed"] = True
                        shard_failed(stream.url, "tar stream ends without an end-of-archive block")
                yield item

        def decode_stage(source: Iterable[dict[str, Any]]) -> Iterator[Any]:
            nonlocal since
            iterator = iter(source)
            while True:
                sample = next(iterator, None)
                since.update(pending)
                yield from self._drain(pending)
                if sample is None:
                    return
                try:
                    decoded = self.decode(sample)
                except SampleError as exn:
                    since.add(exn.marker())
                    yield from self._drain([exn.marker()])
                    continue
                tried.clear()
                since = SkippedSamples()
                yield decoded

        stages: list[Any] = [
            lambda: iter(shards),  # a bare list would be taken for a list of stages
            open_shards,
            wds.pipelinefilter(wds.tariterators.tar_file_expander)(handler=on_tar_error),
            check_ends,
            wds.pipelinefilter(wds.tariterators.group_by_keys)(handler=on_tar_error),
            decode_stage,
        ]
        if self.shuffle > 0:
            buffer_seed = stream_seed(self.seed, self.epoch, self.rank, worker_info()[0])
            stages.append(
                wds.shuffle(
                    self.shuffle, initial=min(self.shuffle, 100), rng=random.Random(buffer_seed)
                )
            )
        stream: Iterable[Any] = wds.DataPipeline(*stages)
        if quota is not None:
            stream = itertools.islice(stream, quota)
        try:
            yield from stream
        finally:
            if current["stream"] is not None:
                current["stream"].close()

    def _drain(self, markers: list[SkippedSample]) -> Iterator[SkippedSample]:
        while markers:
            marker = markers.pop(0)
            if self.emit_skipped:
                yield marker
            else:
                self.skipped.add(marker)

    def __repr__(self) -> str:
        epoch = (
            ""
            if self.samples_per_epoch is None
            else f", samples_per_epoch={self.samples_per_epoch}, batch_size={self.batch_size}"
        )
        return (
            f"WebDatasetReader({self.urls!r}, shuffle={self.shuffle}, seed={self.seed}, "
            f"resampled={self.resampled}{epoch}, rank={self.rank}, world_size={self.world_size})"
        )


def _encode_image(image: Any, fmt: str, quality: int) -> bytes:
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise TypeError(
                f"image: got tensor {image.dtype} {tuple(image.shape)}, expected uint8 (3, H, W)"
            )
        image = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    if not isinstance(image, Image.Image):
        raise TypeError(
            f"image: got {type(image).__name__}, expected PIL image, uint8 tensor or bytes"
        )
    buffer = io.BytesIO()
    options = {"quality": quality} if _FORMATS[fmt] in ("JPEG", "WEBP") else {}
    to_rgb(image).save(buffer, format=_FORMATS[fmt], **options)
    return buffer.getvalue()


def write_shards(
    samples: Iterable[tuple[Any, str]],
    pattern: str | os.PathLike,
    *,
    maxcount: int = 1000,
    image_format: str = "jpg",
    quality: int = 95,
    limit: int | None = None,
) -> list[Path]:
    """Write ``(image, caption)`` pairs as img2dataset-style shards with ``wds.ShardWriter``.

    Record ``i`` gets key ``f"{i:09d}"`` and members ``.{image_format}``, ``.txt`` and
    ``.json`` (``{"key", "caption"}``), like img2dataset's output.

    Args:
        samples: ``(image, caption)`` pairs; images as PIL, uint8 ``(3, H, W)`` tensors or
            already-encoded bytes.
        pattern: shard path with a printf field, e.g. ``"out/shard-%05d.tar"``.
        maxcount: records per shard.
        image_format: ``"jpg"``, ``"jpeg"``, ``"png"`` or ``"webp"``.
        quality: JPEG/WebP quality.
        limit: stop after this many records.

    Returns:
        The written shard paths, in order.

    Raises:
        ValueError: if ``pattern`` has no ``%`` field, ``image_format`` is unknown,
            ``maxcount < 1`` or ``samples`` is empty.
        TypeError: if an image or caption has the wrong type.
    """
    pattern = os.fspath(pattern)
    if "%" not in pattern:
        raise ValueError(
            f"pattern: got {pattern!r}, expected a printf field such as 'shard-%05d.tar'"
        )
    if image_format not in _FORMATS:
        raise ValueError(f"image_format: got {image_format!r}, expected one of {list(_FORMATS)}")
    if maxcount < 1:
        raise ValueError(f"maxcount: got {maxcount}, expected >= 1")
    iterator = iter(samples)
    first = next(iterator, None)
    if first is None or limit == 0:
        raise ValueError("samples: got no samples, expected at least one (image, caption) pair")
    Path(pattern).parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with wds.ShardWriter(
        pattern, maxcount=maxcount, verbose=0, post=lambda f: written.append(Path(f))
    ) as sink:
        count = 0
        for image, caption in itertools.chain([first], iterator):
            if limit is not None and count >= limit:
                break
            if not isinstance(caption, str):
                raise TypeError(
                    f"caption of sample {count}: got {type(caption).__name__}, expected str"
                )
            key = f"{count:09d}"
            sink.write(
                {
                    "__key__": key,
                    image_format: _encode_image(image, image_format, quality),
                    "txt": caption.encode("utf-8"),
                    "json": json.dumps({"key": key, "caption": caption}).encode("utf-8"),
                }
            )
            count += 1
    return written
