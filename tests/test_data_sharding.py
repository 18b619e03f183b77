"""Webdataset shards on many ranks and workers: disjoint splits, resampling, a fixed number of
batches per rank per epoch (uneven shards included), seeded order, clear errors, and the
skipped-sample count. Ranks are simulated in one process (explicit rank/world or RANK and
WORLD_SIZE); workers by webdataset's WORKER/NUM_WORKERS variables or real DataLoader workers."""

from __future__ import annotations

import io
import itertools
from collections import Counter
from pathlib import Path

import pytest
import torch
import webdataset as wds
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from manifold_align.data.collate import Collate
from manifold_align.data.sharding import (
    assign_shards,
    cycle_shards,
    discover_rank,
    epoch_batches,
    split_by_rank,
    stream_seed,
    worker_batches,
)
from manifold_align.data.skipped import SkippedSample, SkippedSamples
from manifold_align.data.tokenizer import default_tokenizer
from manifold_align.data.transforms import ImageTransform
from manifold_align.data.webdataset import WebDatasetReader

COUNTS = (7, 3, 5, 1, 4)  # samples in shards 0..4: uneven on purpose


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _write(path: Path, name: str, captions: list[str | None]) -> Path:
    image = _png()
    with wds.TarWriter(str(path)) as sink:
        for i, caption in enumerate(captions):
            record = {"__key__": f"{i:09d}", "png": image}
            if caption is not None:
                record["txt"] = caption.encode()
            sink.write(record)
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    """Five shards of 7, 3, 5, 1 and 4 samples; caption ``"s{shard} r{record}"``."""
    out = tmp_path_factory.mktemp("uneven")
    return [
        str(_write(out / f"s{j}.tar", f"s{j}", [f"s{j} r{i}" for i in range(n)]))
        for j, n in enumerate(COUNTS)
    ]


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "WORKER", "NUM_WORKERS"):
        monkeypatch.delenv(name, raising=False)


def _shard(item) -> int:
    return int(item[1].split()[0][1:])


def _read(reader, monkeypatch, worker=0, workers=1, epoch=0) -> list:
    """The items reader yields in worker ``worker`` of ``workers`` (webdataset's env vars)."""
    monkeypatch.setenv("WORKER", str(worker))
    monkeypatch.setenv("NUM_WORKERS", str(workers))
    reader.set_epoch(epoch)
    try:
        return list(itertools.islice(reader, 10_000))
    finally:
        monkeypatch.delenv("WORKER")
        monkeypatch.delenv("NUM_WORKERS")


# -- pure pieces ----------------------------------------------------------------------------


def test_splits_partition_the_shards_and_worker_batches_sum_to_the_epoch():
    shards = list(range(11))
    for world, workers in itertools.product(range(1, 5), range(1, 4)):
        slices = [
            assign_shards(shards, r, world, w, workers)
            for r in range(world)
            for w in range(workers)
        ]
        assert sorted(itertools.chain(*slices)) == shards
        # the same as webdataset's own split_by_node then split_by_worker
        for r in range(world):
            assert list(split_by_rank(shards, r, world)) == shards[r::world]
    for batches, workers in itertools.product(range(0, 13), range(1, 6)):
        parts = [worker_batches(batches, w, workers) for w in range(workers)]
        assert sum(parts) == batches and max(parts) - min(parts) <= 1
    assert epoch_batches(103, 10) == 10
    with pytest.raises(ValueError, match=r"samples_per_epoch: got 9.*10 samples"):
        epoch_batches(9, 10)
    with pytest.raises(ValueError, match="worker: got 3"):
        worker_batches(4, 3, 3)
    with pytest.raises(ValueError, match="num_workers"):
        worker_batches(4, 0, 0)


def test_stream_seed_is_stable_and_distinct():
    assert stream_seed(1, 2, 3) == stream_seed(1, 2, 3)
    seeds = {stream_seed(s, e, r) for s in range(3) for e in range(3) for r in range(3)}
    assert len(seeds) == 27 and all(0 <= s < 2**31 for s in seeds)
    with pytest.raises(TypeError, match=r"parts\[1\]"):
        stream_seed(1, "2")


def test_cycle_shards_repeats_and_reshuffles_each_pass():
    items = [{"url": str(i)} for i in range(6)]
    passes = list(itertools.islice(cycle_shards(items, (0, 0), shuffle=True), 18))
    first, second, third = passes[:6], passes[6:12], passes[12:]
    assert first == items and sorted(second, key=lambda d: d["url"]) == items
    assert second != first and third != second
    assert list(itertools.islice(cycle_shards(items, (0, 0), shuffle=False), 12)) == items * 2
    with pytest.raises(ValueError, match="shards"):
        next(cycle_shards([], (0,), shuffle=False))


# -- rank discovery -------------------------------------------------------------------------


def test_rank_comes_from_arguments_then_torch_distributed_then_env(monkeypatch):
    assert discover_rank() == (0, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert discover_rank() == (1, 4)
    assert discover_rank(2, 3) == (2, 3)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 3)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 8)
    assert discover_rank() == (3, 8)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 8)
    with pytest.raises(
        ValueError, match=r"rank \(torch.distributed\): got 8, expected in \[0, 8\)"
    ):
        discover_rank()


def test_rank_errors_name_what_is_wrong(monkeypatch):
    with pytest.raises(ValueError, match="both or neither"):
        discover_rank(rank=1)
    with pytest.raises(ValueError, match=r"rank \(arguments\): got 2, expected in \[0, 2\)"):
        discover_rank(2, 2)
    with pytest.raises(ValueError, match=r"world_size.*got 0"):
        discover_rank(0, 0)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="WORLD_SIZE: not set"):
        discover_rank()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE: got 'two'"):
        discover_rank()


# -- disjoint shards, fixed epochs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("world", "workers", "batch", "samples"),
    [(1, 1, 3, 25), (1, 3, 2, 40), (2, 1, 2, 40), (2, 2, 3, 37), (3, 1, 1, 12), (5, 1, 2, 50)],
)
def test_every_rank_yields_the_same_number_of_batches_from_its_own_shards(
    shards, monkeypatch, world, workers, batch, samples
):
    batches = samples // (batch * world)
    seen: dict[tuple[int, int], set[int]] = {}
    for rank in range(world):
        reader = WebDatasetReader(
            shards, samples_per_epoch=samples, batch_size=batch, rank=rank, world_size=world
        )
        assert reader.batches_per_epoch == batches
        total = 0
        for worker in range(workers):
            items = _read(reader, monkeypatch, worker, workers)
            assert len(items) == worker_batches(batches, worker, workers) * batch
            mine = assign_shards(range(len(shards)), rank, world, worker, workers)
            # the stream is this reader's shards in order, cycled as often as needed
            expected = [f"s{j} r{i}" for j in mine for i in range(COUNTS[j])]
            assert [c for _, c in items] == list(
                itertools.islice(itertools.cycle(expected), len(items))
            )
            seen[rank, worker] = {_shard(item) for item in items}
            total += len(items)
        assert total == batches * batch
    for a, b in itertools.combinations(seen.values(), 2):
        assert not a & b  # no two readers share a shard


SEVEN = (1, 6, 2, 9, 3, 1, 5)


@pytest.fixture(scope="module")
def seven(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("seven")
    return [
        str(_write(out / f"s{j}.tar", f"s{j}", [f"s{j} r{i}" for i in range(n)]))
        for j, n in enumerate(SEVEN)
    ]


@st.composite
def _layouts(draw):
    resampled = draw(st.booleans())
    world = draw(st.integers(1, 4))
    workers = draw(st.integers(1, 3 if resampled else max(1, len(SEVEN) // world)))
    batch = draw(st.integers(1, 4))
    samples = draw(st.integers(batch * world, batch * world * 6))
    seed, epoch = draw(st.integers(0, 3)), draw(st.integers(0, 2))
    return resampled, world, workers, batch, samples, seed, epoch, draw(st.booleans())


@given(layout=_layouts())
def test_any_layout_gives_every_rank_n_batches_from_disjoint_shards(seven, layout):
    resampled, world, workers, batch, samples, seed, epoch, shardshuffle = layout
    batches = samples // (batch * world)
    readers: dict[tuple[int, int], list[int]] = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for rank in range(world):
            reader = WebDatasetReader(
                seven,
                samples_per_epoch=samples,
                batch_size=batch,
                rank=rank,
                world_size=world,
                resampled=resampled,
                shardshuffle=shardshuffle,
                seed=seed,
            )
            for worker in range(workers):
                items = _read(reader, monkeypatch, worker, workers, epoch)
                assert len(items) == worker_batches(batches, worker, workers) * batch
                readers[rank, worker] = [_shard(item) for item in items]
            total = sum(len(readers[rank, w]) for w in range(workers))
            assert total == batches * batch
        again = _read(reader, monkeypatch, workers - 1, workers, epoch)
        assert [_shard(item) for item in again] == readers[world - 1, workers - 1]
    if not resampled:
        for a, b in itertools.combinations(readers.values(), 2):
            assert not set(a) & set(b)


def test_env_ranks_read_what_explicit_ranks_read(shards, monkeypatch):
    explicit = [
        [
            c
            for _, c in WebDatasetReader(
                shards, samples_per_epoch=20, batch_size=2, rank=r, world_size=2
            )
        ]
        for r in range(2)
    ]
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        reader = WebDatasetReader(shards, samples_per_epoch=20, batch_size=2)
        assert (reader.rank, reader.world_size) == (rank, 2)
        assert [c for _, c in reader] == explicit[rank]
    assert {_shard((None, c)) for c in explicit[0]} == {0, 2}  # 10 of s0, s2, s4
    assert {_shard((None, c)) for c in explicit[1]} == {1, 3}  # 4 samples, read 2.5 times


def test_dataloader_workers_give_every_rank_exactly_n_batches(shards):
    seen = []
    for rank in range(2):
        reader = WebDatasetReader(
            shards,
            samples_per_epoch=26,
            batch_size=3,
            rank=rank,
            world_size=2,
            shuffle=4,
            shardshuffle=True,
            seed=5,
        )
        assert reader.batches_per_epoch == 4
        loader = torch.utils.data.DataLoader(
            reader, batch_size=3, num_workers=2, drop_last=True, collate_fn=list
        )
        for epoch in range(2):
            reader.set_epoch(epoch)
            batches = list(loader)
            assert len(batches) == 4 and all(len(b) == 3 for b in batches)
            seen.append((rank, epoch, {_shard(s) for b in batches for s in b}))
    for epoch in range(2):
        ranks = [s for r, e, s in seen if e == epoch]
        assert not ranks[0] & ranks[1]


def test_shard_shuffle_is_shared_so_worker_splits_partition_every_epoch(shards, monkeypatch):
    reader = WebDatasetReader(shards, shardshuffle=True, seed=2)
    orders = []
    for epoch in range(4):
        parts = [[_shard(s) for s in _read(reader, monkeypatch, w, 2, epoch)] for w in range(2)]
        assert sorted(parts[0] + parts[1]) == sorted(
            j for j, n in enumerate(COUNTS) for _ in range(n)
        )
        orders.append(tuple(dict.fromkeys(parts[0] + parts[1])))
    assert len(set(orders)) > 1  # the shard order changes with the epoch


# -- determinism and resume -----------------------------------------------------------------


def test_the_same_seed_and_epoch_give_the_same_stream_on_resume(shards):
    def reader():
        return WebDatasetReader(
            shards,
            shuffle=5,
            seed=9,
            shardshuffle=True,
            samples_per_epoch=24,
            batch_size=2,
            rank=1,
            world_size=2,
        )

    run = reader()
    epochs = []
    for epoch in range(3):
        run.set_epoch(epoch)
        epochs.append([c for _, c in run])
    resumed = reader()
    resumed.set_epoch(2)
    assert [c for _, c in resumed] == epochs[2]
    assert epochs[0] != epochs[1] != epochs[2]
    assert all(len(e) == 12 for e in epochs)


# -- resampling -----------------------------------------------------------------------------


def test_resampled_readers_draw_their_own_seeded_streams(shards, monkeypatch):
    def stream(rank, worker, epoch=0, seed=1):
        reader = WebDatasetReader(
            shards,
            resampled=True,
            seed=seed,
            samples_per_epoch=64,
            batch_size=4,
            rank=rank,
            world_size=2,
        )
        items = _read(reader, monkeypatch, worker, 2, epoch)
        assert len(items) == worker_batches(8, worker, 2) * 4  # 8 batches per rank, 4 a worker
        return [c for _, c in items]

    streams = {(r, w): stream(r, w) for r in range(2) for w in range(2)}
    assert len({tuple(s) for s in streams.values()}) == 4
    assert stream(1, 1) == streams[1, 1]
    assert stream(1, 1, epoch=1) != streams[1, 1]
    assert stream(1, 1, seed=2) != streams[1, 1]
    drawn = {_shard((None, c)) for s in streams.values() for c in s}
    assert drawn == set(range(5))


def test_resampling_serves_more_ranks_than_shards(shards):
    for rank in range(8):
        reader = WebDatasetReader(
            shards[:3],
            resampled=True,
            samples_per_epoch=48,
            batch_size=2,
            rank=rank,
            world_size=8,
        )
        assert len(list(reader)) == 6


# -- too few shards -------------------------------------------------------------------------


def test_fewer_shards_than_readers_is_an_error_naming_the_numbers(shards, monkeypatch):
    with pytest.raises(ValueError, match="5 shards cannot be split over 6 ranks"):
        WebDatasetReader(shards, samples_per_epoch=60, batch_size=2, rank=0, world_size=6)
    reader = WebDatasetReader(shards, samples_per_epoch=60, batch_size=2, rank=1, world_size=2)
    with pytest.raises(ValueError, match=r"5 shards split over 2 ranks x 3 workers = 6 readers"):
        _read(reader, monkeypatch, 2, 3)
    # (the same error from a real DataLoader worker is re-raised in the main process; not run
    # here because torch then takes 5 s per surviving worker to shut the loader down)


def test_settings_that_would_let_ranks_diverge_are_rejected(shards):
    with pytest.raises(ValueError, match="samples_per_epoch: required on 2 ranks"):
        WebDatasetReader(shards, rank=0, world_size=2)
    with pytest.raises(ValueError, match=r"both \(a fixed epoch\) or neither"):
        WebDatasetReader(shards, samples_per_epoch=10)
    with pytest.raises(ValueError, match="batch_size: got 0"):
        WebDatasetReader(shards, samples_per_epoch=10, batch_size=0)
    with pytest.raises(ValueError, match=r"got 7, expected at least one global batch of 8"):
        WebDatasetReader(shards, samples_per_epoch=7, batch_size=4, rank=0, world_size=2)
    with pytest.raises(ValueError, match="nodesplitter, workersplitter: not used"):
        WebDatasetReader(shards, resampled=True, nodesplitter=wds.split_by_node)
    with pytest.raises(ValueError, match="nodesplitter, workersplitter: not used"):
        WebDatasetReader(shards, resampled=True, workersplitter=wds.split_by_node)
    # endless resampled streams need no epoch on many ranks
    assert WebDatasetReader(shards, resampled=True, rank=1, world_size=2).batches_per_epoch is None


# -- skipped samples ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flawed(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("flawed")
    return {
        "good": str(_write(out / "good.tar", "good", ["g0", "g1", "g2"])),
        "gap": str(_write(out / "gap.tar", "gap", ["h0", None, "h2"])),  # one without caption
        "absent": str(out / "absent.tar"),
        "small": str(_write(out / "small.tar", "small", ["k0", "k1"])),
    }


def test_markers_fill_their_slots_and_are_counted(flawed):
    urls = [flawed["good"], flawed["gap"], flawed["absent"], flawed["small"]]
    collate = Collate(default_tokenizer(), ImageTransform(4))
    expected = [
        # rank 0: good, absent, good, absent (8 slots)
        (6, {"unreadable_shard": 2}),
        # rank 1: gap (h0, marker, h2), small (k0, k1), gap again (h0, marker, h2)
        (6, {"missing_caption": 2}),
    ]
    for rank, (images, counts) in enumerate(expected):
        reader = WebDatasetReader(
            urls, samples_per_epoch=16, batch_size=2, rank=rank, world_size=2, check_shards=False
        )
        batches = list(
            torch.utils.data.DataLoader(reader, batch_size=2, drop_last=True, collate_fn=collate)
        )
        assert len(batches) == 4
        total = sum((b.skipped for b in batches), SkippedSamples())
        assert sum(len(b.images) for b in batches) == images and total.counts == counts
        quiet = WebDatasetReader(
            urls, samples_per_epoch=16, batch_size=2, rank=rank, world_size=2,
            emit_skipped=False, check_shards=False,
        )
        items = list(quiet)
        assert len(items) == 8 and not any(isinstance(s, SkippedSample) for s in items)
        assert quiet.skipped.counts == counts


def test_a_reader_whose_shards_are_all_unreadable_fails_instead_of_spinning(flawed, monkeypatch):
    urls = [flawed["good"], flawed["absent"]]
    for emit in (True, False):
        reader = WebDatasetReader(
            urls, samples_per_epoch=8, batch_size=2, emit_skipped=emit, check_shards=False
        )
        assert len(_read(reader, monkeypatch, 0, 2)) == 4  # worker 0 reads good.tar
        with pytest.raises(ValueError, match="tried each of its 1 shards"):
            _read(reader, monkeypatch, 1, 2)  # worker 1 has only absent.tar
    resampled = WebDatasetReader(
        [flawed["absent"]] * 3, resampled=True, emit_skipped=False, check_shards=False
    )
    with pytest.raises(ValueError, match="tried each of its 1 shards"):
        next(iter(resampled))
    # a single pass (no fixed epoch) keeps the old behaviour: one marker per unreadable shard
    once = list(WebDatasetReader([flawed["absent"], flawed["absent"]], check_shards=False))
    assert Counter(s.reason for s in once) == {"unreadable_shard": 2}


# -- real processes -------------------------------------------------------------------------


def _rank_main(rank: int, world: int, store: str, shards: list[str], out: str) -> None:
    import datetime
    import json

    torch.distributed.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        reader = WebDatasetReader(shards, samples_per_epoch=22, batch_size=2, shardshuffle=True)
        loader = torch.utils.data.DataLoader(
            reader, batch_size=2, drop_last=True, num_workers=0, collate_fn=list
        )
        steps, seen = 0, []
        for epoch in range(2):
            reader.set_epoch(epoch)
            seen.append(set())
            for batch in loader:
                step = torch.ones(1)
                torch.distributed.all_reduce(step)  # hangs (then times out) if a rank is done
                steps += int(step.item()) // world
                seen[epoch].update(_shard(s) for s in batch)
        state = {"rank": reader.rank, "world": reader.world_size, "steps": steps}
        Path(out).write_text(json.dumps({**state, "seen": [sorted(s) for s in seen]}))
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_processes_step_together_through_uneven_shards(shards, tmp_path):
    import json

    outs = [str(tmp_path / f"rank{r}.json") for r in range(2)]
    context = torch.multiprocessing.get_context("fork")
    procs = [
        context.Process(target=_rank_main, args=(r, 2, str(tmp_path / "store"), shards, outs[r]))
        for r in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    results = [json.loads(Path(o).read_text()) for o in outs]
    # the shuffled 7, 3, 5, 1, 4 samples split unevenly; both ranks take 22 // 4 = 5 steps
    # an epoch, each from its own shards
    assert [{k: v for k, v in r.items() if k != "seen"} for r in results] == [
        {"rank": r, "world": 2, "steps": 10} for r in range(2)
    ]
    for epoch in range(2):
        assert not set(results[0]["seen"][epoch]) & set(results[1]["seen"][epoch])
