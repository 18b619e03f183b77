"""Hostile data (issue 11): sources with nothing usable stop with a message instead of
spinning, missing and empty shards are named up front, a bad CSV row spoils only itself,
oversized images are skipped undecoded, and ``pipe:`` URLs run only when allowed.

Every test that could spin on a regression is bounded: batch sources are read through
``itertools.islice`` (a regression yields batches instead of raising, and the test fails),
every test runs under a ``SIGALRM`` deadline (a loop that never yields is interrupted), and
the end-to-end runs go through a subprocess with a timeout.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import zlib
from collections import Counter
from pathlib import Path

import pytest
import torch
import webdataset as wds
from PIL import Image

from manifold_align.config import ConfigError, load_config
from manifold_align.data.collate import Collate
from manifold_align.data.skipped import SampleError, SkippedSample, UnusableDataError
from manifold_align.data.tabular import CaptionTable, read_captions
from manifold_align.data.tokenizer import default_tokenizer
from manifold_align.data.transforms import MAX_IMAGE_PIXELS, ImageTransform, decode_image
from manifold_align.data.webdataset import WebDatasetReader
from manifold_align.train.batches import MAX_CONSECUTIVE_SKIPS, MapBatches, StreamBatches
from manifold_align.train.config import DataConfig, RunConfig

ROOT = Path(__file__).resolve().parents[1]
MICRO_MODEL = (
    "{vision_width: 32, vision_layers: 1, vision_heads: 2, patch_size: 8, image_size: 16,"
    " text_width: 32, text_layers: 1, text_heads: 2, token_dim: 16, context_length: 16}"
)


@pytest.fixture(autouse=True)
def _deadline():
    """Fail, instead of hanging CI, when a test runs past 300 s (the subprocess test's own
    timeout is shorter): ``SIGALRM`` interrupts a Python loop that never yields."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError("still running after 300 s: a data source spins")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 300)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _png(size=(12, 10), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that *declares* ``width x height`` RGB pixels but holds a few garbage bytes of
    image data: a decoder that read it would fail, so only a header check can name it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def _shard(path: Path, records: list[dict]) -> Path:
    with wds.TarWriter(str(path)) as sink:
        for i, record in enumerate(records):
            sink.write({"__key__": f"{i:09d}", **record})
    return path


def _collate() -> Collate:
    return Collate(default_tokenizer(), ImageTransform(8))


class _Rows(torch.utils.data.Dataset):
    """A map-style dataset whose item ``i`` is readable when ``good(i)``, else a marker."""

    def __init__(self, size: int, good=lambda i: False) -> None:
        self.size, self.good = size, good

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int):
        if self.good(i):
            return Image.new("RGB", (8, 8), (i % 255, 0, 0)), f"caption {i}"
        return SkippedSample("missing_file", f"rows#row{i}", "FileNotFoundError")


# -- a source with nothing usable stops, with counts and reasons ----------------------------


def test_an_all_bad_table_stops_within_one_epoch_naming_counts_and_reasons():
    batches = MapBatches(_Rows(10), 4, seed=0, collate=_collate(), source="data.csv.path 'x.csv'")
    with pytest.raises(UnusableDataError) as caught:
        list(itertools.islice(batches.iterate(0), 50))  # old code: 50 empty batches, no error
    message = str(caught.value)
    assert message.startswith("data.csv.path 'x.csv': no batch of at least 2 readable samples")
    assert "in 2 batches" in message and "8 skipped: missing_file=8 (rows#row" in message
    assert isinstance(caught.value, ConfigError)  # the CLI's exit-2 path


def test_the_skip_bound_stops_a_long_epoch_early_and_ignores_scattered_bad_rows():
    batches = MapBatches(_Rows(10_000), 4, seed=0, collate=_collate(), max_consecutive_skips=10)
    stream = batches.iterate(0)
    with pytest.raises(UnusableDataError, match=r"max_consecutive_skips = 10 samples in a row"):
        list(itertools.islice(stream, 50))
    # one row in five unreadable: every batch of 8 is usable, nothing stops
    half = MapBatches(_Rows(200, lambda i: i % 5), 8, 0, _collate(), max_consecutive_skips=1)
    batches = list(itertools.islice(half.iterate(0), 60))
    assert len(batches) == 60 and sum(b.skipped.total for b in batches) > 0


def test_a_single_readable_row_does_not_keep_a_run_alive():
    # one readable sample per batch is not a contrastive batch: still unusable
    lonely = MapBatches(_Rows(40, lambda i: i == 7), 4, 0, _collate())
    with pytest.raises(UnusableDataError, match="in 10 batches"):
        list(itertools.islice(lonely.iterate(0), 100))


def test_an_all_bad_shard_stops_after_one_pass(tmp_path):
    shard = _shard(tmp_path / "bad.tar", [{"jpg": b"not an image", "txt": b"x"}] * 10)
    reader = WebDatasetReader(shard)
    stream = StreamBatches(reader, 4, _collate(), source="data.webdataset.urls 'bad.tar'")
    with pytest.raises(UnusableDataError) as caught:
        list(itertools.islice(stream.iterate(0), 50))
    message = str(caught.value)
    assert "(all of epoch 0)" in message and "corrupt_image=8" in message
    assert "not an image format Pillow knows" in message and "BytesIO" not in message


def test_an_empty_epoch_names_the_shards_it_could_not_read(tmp_path):
    urls = [str(tmp_path / f"nope-{i:03d}.tar") for i in range(16)]
    reader = WebDatasetReader(urls, check_shards=False)
    stream = StreamBatches(reader, 64, _collate(), source="data.webdataset.urls")
    with pytest.raises(UnusableDataError) as caught:
        next(stream.iterate(0))
    message = str(caught.value)
    assert "epoch 0 gave no batch of 64 samples (its stream held 16 items)" in message
    assert "unreadable_shard=16 (nope-000.tar: FileNotFoundError" in message


def test_a_workers_incomplete_batch_still_counts_its_skips(tmp_path):
    records = [{"png": _png(), "txt": f"c{i}".encode()} for i in range(5)]
    records[4] = {"png": b"broken", "txt": b"c4"}
    reader = WebDatasetReader(_shard(tmp_path / "s.tar", records))
    batches = list(itertools.islice(StreamBatches(reader, 4, _collate()).iterate(0), 3))
    # every epoch: one batch of 4, then a tail of 1 marker, counted in the next epoch's batch
    assert [len(b.images) for b in batches] == [4, 4, 4]
    assert [b.skipped.total for b in batches] == [0, 1, 1]
    assert batches[1].skipped.examples == {"corrupt_image": ["s.tar/000000004: " + (
        "not an image format Pillow knows")]}


def test_an_endless_readers_exhaustion_says_what_it_skipped(tmp_path):
    bad = _shard(tmp_path / "bad.tar", [{"jpg": b"x", "txt": b"y"}, {"txt": b"z"}])
    reader = WebDatasetReader(bad, samples_per_epoch=8, batch_size=2)
    with pytest.raises(UnusableDataError, match=r"2 skipped: corrupt_image=1 .*missing_image=1"):
        list(itertools.islice(reader, 100))
    stream = StreamBatches(reader, 2, _collate(), source="data.webdataset.urls 'bad.tar'")
    with pytest.raises(UnusableDataError, match=r"^data.webdataset.urls 'bad.tar': urls: rank 0"):
        list(itertools.islice(stream.iterate(0), 100))


def test_a_readers_exhaustion_in_a_worker_comes_back_on_one_line(tmp_path):
    bad = _shard(tmp_path / "bad.tar", [{"jpg": b"x", "txt": b"y"}])
    reader = WebDatasetReader(bad, samples_per_epoch=8, batch_size=2)
    stream = StreamBatches(reader, 2, _collate(), num_workers=1, source="data.webdataset.urls")
    with pytest.raises(UnusableDataError) as caught:
        next(stream.iterate(0))
    message = str(caught.value)
    assert message.startswith("data.webdataset.urls: urls: rank 0 of 1")
    assert "\n" not in message and "corrupt_image=1" in message


# -- missing, empty and pipe shards are refused before anything is read --------------------


def test_mistyped_shard_paths_are_named_before_reading(tmp_path):
    pattern = str(tmp_path / "nope-{000..015}.tar")
    with pytest.raises(FileNotFoundError) as caught:
        WebDatasetReader(pattern)
    message = str(caught.value)
    assert message.startswith("urls: 16 of 16 shards do not exist: ")
    assert "nope-000.tar" in message and "nope-002.tar" in message
    assert "nope-003.tar" not in message and "(16 in all)" in message


def test_missing_and_empty_shards_among_good_ones_are_named(tmp_path):
    good = _shard(tmp_path / "good-000.tar", [{"png": _png(), "txt": b"a"}])
    (tmp_path / "good-001.tar").write_bytes(b"")
    (tmp_path / "file.tar").write_bytes(good.read_bytes())
    with pytest.raises(ValueError, match=r"1 of 2 shards are empty \(0 bytes\): \S*good-001.tar\. Fix"):
        WebDatasetReader(str(tmp_path / "good-{000..001}.tar"))
    with pytest.raises(FileNotFoundError) as caught:
        WebDatasetReader(str(tmp_path / "good-{000..003}.tar"))
    message = str(caught.value)
    assert "2 of 4 shards do not exist" in message and "good-002.tar" in message
    assert "1 of 4 shards are empty (0 bytes)" in message and "::" in message  # the remedy
    assert len(list(WebDatasetReader(f"file://{tmp_path / 'file.tar'}"))) == 1
    with pytest.raises(FileNotFoundError, match=r"absent\.tar"):
        WebDatasetReader(f"file://{tmp_path / 'absent.tar'}")


def test_pipe_urls_run_only_when_allowed(tmp_path):
    shard = _shard(tmp_path / "s.tar", [{"png": _png(), "txt": b"a caption"}])
    witness = tmp_path / "ran"
    command = f"pipe:touch {witness}; cat {shard}"
    for url in (command, command.replace("pipe:", "PIPE:"), [str(shard), command]):
        with pytest.raises(ValueError, match=r"data.webdataset.allow_pipe: true") as caught:
            WebDatasetReader(url)
        assert "run a shell command" in str(caught.value)
        with pytest.raises(ValueError, match="allow_pipe"):
            WebDatasetReader(url, check_shards=False)
    assert not witness.exists()
    samples = list(WebDatasetReader(command, allow_pipe=True))
    assert [c for _, c in samples] == ["a caption"] and witness.exists()


# -- one bad CSV row spoils only itself ------------------------------------------------------


def test_an_overlong_caption_skips_its_row_not_the_table(tmp_path):
    (tmp_path / "a.png").write_bytes(_png())
    long = "x" * (csv.field_size_limit() + 1)
    table = tmp_path / "t.csv"
    table.write_text(f"filepath,caption\na.png,first\na.png,{long}\na.png,third\n")
    ds = CaptionTable(table)  # old code: _csv.Error for the whole table
    items = [ds[i] for i in range(len(ds))]
    assert [c for _, c in items[::2]] == ["first", "third"]
    assert items[1].reason == "bad_row" and items[1].key == "t.csv#row1"
    assert items[1].detail.startswith("line 3: field larger than field limit")
    assert list(read_captions(table)) == ["first", "third"]


def test_a_non_utf8_byte_skips_its_row_with_its_line(tmp_path):
    (tmp_path / "a.png").write_bytes(_png())
    (tmp_path / "caf\xe9.png").write_bytes(_png(colour=(0, 0, 255)))  # a UTF-8 file name
    table = tmp_path / "t.csv"
    table.write_bytes(
        b"\xef\xbb\xbffilepath,caption\n"  # a byte-order mark, as spreadsheets write
        b"a.png,good one\n"
        b"a.png,caf\xe9 in latin-1\n"  # not UTF-8
        b"caf\xc3\xa9.png,the blue one\n"
    )
    ds = CaptionTable(table)  # old code: UnicodeDecodeError for the whole table
    good, bad = ds[0], ds[1]
    assert good[1] == "good one" and ds[2][1] == "the blue one"
    assert bad == SkippedSample(
        "bad_caption", "t.csv#row1", "line 3: caption byte 0xe9 at character 3 is not UTF-8"
    )
    assert list(read_captions(table)) == ["good one", "the blue one"]


def test_a_non_utf8_file_name_still_names_its_file(tmp_path):
    name = b"caf\xe9.png"  # latin-1 bytes on disk
    with open(os.path.join(bytes(tmp_path), name), "wb") as handle:
        handle.write(_png())
    table = tmp_path / "t.csv"
    table.write_bytes(b"filepath,caption\n" + name + b",a latin-1 file name\n")
    image, caption = CaptionTable(table)[0]
    assert caption == "a latin-1 file name" and image.size == (12, 10)


# -- images that declare too many pixels are skipped undecoded ---------------------------


def test_a_huge_declared_image_is_skipped_without_decoding():
    bomb = _png_header(12_000, 12_000)  # 144 MP declared, under 100 bytes
    assert len(bomb) < 100
    with pytest.raises(SampleError) as caught:
        decode_image(bomb, "k")  # old code: a warning, then an attempt to decode 144 MP
    assert caught.value.reason == "too_many_pixels"
    assert "12000 x 12000 = 144,000,000 pixels > max_image_pixels 64,000,000" in str(caught.value)
    # Pillow's own refusal (over twice its MAX_IMAGE_PIXELS) is the same reason
    with pytest.raises(SampleError, match="too_many_pixels"):
        decode_image(_png_header(20_000, 20_000), "k", max_pixels=None)
    # the limit is inclusive and configurable
    assert decode_image(_png((12, 10)), "k", max_pixels=120).size == (12, 10)
    with pytest.raises(SampleError, match="too_many_pixels"):
        decode_image(_png((12, 10)), "k", max_pixels=119)


def test_readers_count_oversized_images_under_their_own_reason(tmp_path):
    (tmp_path / "big.png").write_bytes(_png_header(12_000, 12_000))
    (tmp_path / "small.png").write_bytes(_png())
    table = tmp_path / "t.csv"
    table.write_text("filepath,caption\nbig.png,huge\nsmall.png,small\n")
    batch = _collate()([CaptionTable(table)[i] for i in range(2)])
    assert len(batch.images) == 1 and batch.skipped.counts == {"too_many_pixels": 1}
    assert CaptionTable(table, max_image_pixels=100)[1].reason == "too_many_pixels"
    shard = _shard(
        tmp_path / "s.tar",
        [{"png": _png_header(12_000, 12_000), "txt": b"huge"}, {"png": _png(), "txt": b"ok"}],
    )
    found = Counter(
        s.reason if isinstance(s, SkippedSample) else "ok" for s in WebDatasetReader(shard)
    )
    assert found == {"too_many_pixels": 1, "ok": 1}
    found = [getattr(s, "reason", "ok") for s in WebDatasetReader(shard, max_image_pixels=100)]
    assert found == ["too_many_pixels", "too_many_pixels"]


# -- the configuration keys ------------------------------------------------------------------


def test_data_keys_have_documented_defaults_and_are_checked():
    data = DataConfig()
    assert data.max_consecutive_skips == MAX_CONSECUTIVE_SKIPS == 100_000
    assert data.max_image_pixels == MAX_IMAGE_PIXELS == 64_000_000
    assert data.webdataset.allow_pipe is False
    for key in ("max_consecutive_skips", "max_image_pixels"):
        with pytest.raises(ConfigError, match=rf"data.{key}: expected > 0, got 0"):
            load_config(RunConfig, None, [f"data.{key}=0"])
    # a batch of one sample is never trained on: the trainer used to wait for a bigger one
    with pytest.raises(ConfigError, match=r"data.batch_size: expected >= 2"):
        load_config(RunConfig, None, ["data.batch_size=1"])


def test_a_run_stopped_by_the_skip_bound_can_resume_with_a_higher_one():
    import dataclasses

    from manifold_align.train.checkpoint import config_mismatches
    from manifold_align.train.trainer import RESUMABLE_KEYS

    saved = dataclasses.asdict(load_config(RunConfig, None, ["data.max_consecutive_skips=10"]))
    raised = dataclasses.asdict(load_config(RunConfig, None, ["data.max_consecutive_skips=99"]))
    assert config_mismatches(saved, raised, RESUMABLE_KEYS) == []  # old code: refused
    other = dataclasses.asdict(load_config(RunConfig, None, ["data.max_image_pixels=99"]))
    assert config_mismatches(saved, other, RESUMABLE_KEYS) == [  # which samples are used
        "data.max_image_pixels: 64000000 in the checkpoint, 99 now"
    ]


def _train_cli(tmp_path: Path, cases: dict[str, list[str]], timeout: float = 240) -> dict:
    """Run ``manifold-align train`` once per case in one subprocess (one import of torch),
    bounded by ``timeout``; ``{case: (exit code, stderr)}``."""
    script = (
        "import contextlib, io, json, sys\n"
        "from manifold_align.cli import main\n"
        "out = {}\n"
        "for name, argv in json.loads(sys.argv[1]).items():\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        out[name] = [main(argv), err.getvalue()]\n"
        "print(json.dumps(out))\n"
    )
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: {{name: tiny, overrides: {MICRO_MODEL}}}\n"
        "train: {steps: 2, device: cpu, progress: false, ckpt_every: 0}\n"
        "eval: {zeroshot_samples: 0, retrieval_samples: 0}\n"
    )
    argv = {
        name: ["train", "--config", str(config), "--out", str(tmp_path / f"run-{name}"),
               *itertools.chain.from_iterable(("--set", s) for s in sets)]
        for name, sets in cases.items()
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, json.dumps(argv)], capture_output=True, text=True,
            timeout=timeout, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"training did not stop within {timeout} s (it spins on unusable data)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_training_on_unusable_data_stops_with_one_line_instead_of_spinning(tmp_path):
    (tmp_path / "bad.csv").write_text(
        "filepath,caption\n" + "".join(f"nope{i}.png,caption {i}\n" for i in range(10))
    )
    _shard(tmp_path / "bad-000.tar", [{"jpg": b"not an image", "txt": b"a caption"}] * 10)
    (tmp_path / "empty-000.tar").write_bytes(b"")
    small = ["data.batch_size=4"]
    results = _train_cli(
        tmp_path,
        {
            "csv": ["data.source=csv", f"data.csv.path={tmp_path / 'bad.csv'}", *small],
            "shard": ["data.source=webdataset",
                      f"data.webdataset.urls={tmp_path / 'bad-000.tar'}", *small],
            "fixed_epoch": ["data.source=webdataset",
                            f"data.webdataset.urls={tmp_path / 'bad-000.tar'}",
                            "data.webdataset.samples_per_epoch=100", *small],
            "mistyped": ["data.source=webdataset",
                         f"data.webdataset.urls={tmp_path / 'nope-{000..015}.tar'}", *small],
            "empty": ["data.source=webdataset",
                      f"data.webdataset.urls={tmp_path / 'empty-000.tar'}"],
            "pipe": ["data.source=webdataset",
                     f"data.webdataset.urls=pipe:cat {tmp_path / 'bad-000.tar'}", *small],
        },
    )
    expected = {
        "csv": r"data.csv.path '.*bad.csv': no batch of at least 2 readable samples in 2 "
               r"batches .*; 8 skipped: missing_file=8",
        "shard": r"data.webdataset.urls '.*bad-000.tar': no batch .*corrupt_image=8",
        "fixed_epoch": r"tried each of its 1 shards .* 10 skipped: corrupt_image=10",
        "mistyped": r"data.webdataset: urls: 16 of 16 shards do not exist: .*nope-000.tar",
        "empty": r"1 of 1 shards are empty \(0 bytes\): .*empty-000.tar",
        "pipe": r"data.webdataset.allow_pipe: true",
    }
    for name, pattern in expected.items():
        code, stderr = results[name]
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1, (name, stderr)
        assert lines[0].startswith("manifold-align train: error: "), (name, stderr)
        assert re.search(pattern, lines[0]), (name, lines[0])
        assert not (tmp_path / f"run-{name}" / "checkpoints").exists()
