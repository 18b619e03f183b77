"""Webdataset shards and CSV/TSV tables, with deliberately corrupt samples counted exactly;
the skip record; collate."""

from __future__ import annotations

import io
import itertools
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from manifold_align.data.collate import Batch, Collate
from manifold_align.data.skipped import SampleError, SkippedSample, SkippedSamples
from manifold_align.data.synthetic import SyntheticCaptions
from manifold_align.data.tabular import CaptionTable, read_captions
from manifold_align.data.tokenizer import default_tokenizer
from manifold_align.data.transforms import ImageTransform
from manifold_align.data.webdataset import WebDatasetReader, write_shards


def _png(colour=(200, 30, 30), size=(12, 10), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpg(colour=(30, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _split(stream):
    good = [s for s in stream if isinstance(s, tuple)]
    bad = [s for s in stream if isinstance(s, SkippedSample)]
    return good, bad


@pytest.fixture(scope="module")
def synthetic_shards(tmp_path_factory) -> tuple[list[Path], SyntheticCaptions]:
    ds = SyntheticCaptions("train", 10, seed=0, image_size=16)
    out = tmp_path_factory.mktemp("shards")
    paths = write_shards(
        (ds[i] for i in range(len(ds))), out / "shard-%05d.tar", maxcount=4, image_format="png"
    )
    return paths, ds


@pytest.fixture(scope="module")
def corrupt_shards(tmp_path_factory) -> dict[str, Path]:
    """good.tar: 3 good records and one of each kind of bad record; whole.tar: 3 records;
    cut.tar: whole.tar cut between two records (2 survive); torn.tar: cut inside the third
    record's image."""
    out = tmp_path_factory.mktemp("corrupt")
    full = _jpg()
    records = [
        {"__key__": "000000000", "jpg": full, "txt": b"a green square", "json": b"{}"},
        {"__key__": "000000001", "jpg": full[: len(full) // 2], "txt": b"truncated image bytes"},
        {"__key__": "000000002", "png": b"\x89PNG not really", "txt": b"undecodable image"},
        {"__key__": "000000003", "jpg": full},  # no caption
        {"__key__": "000000004", "txt": b"a caption without its image", "json": b"{}"},
        {"__key__": "000000005", "jpg": full, "txt": b"\xff\xfe bad utf-8"},
        {
            "__key__": "000000006",
            "png": _png(mode="RGBA", colour=(1, 2, 3, 0)),
            "txt": b"  a clear png  ",
        },
        {"__key__": "000000007", "jpg": full, "txt": b"   \n"},  # empty caption
        {"__key__": "000000008", "webp": _png(), "txt": b"bytes are png, the name says webp"},
    ]
    with wds.TarWriter(str(out / "good.tar")) as sink:
        for record in records:
            sink.write(record)
    # cut.tar: three records, cut exactly after the second one's last member (a block boundary)
    with wds.TarWriter(str(out / "whole.tar")) as sink:
        for i in range(3):
            sink.write({"__key__": f"{i:09d}", "jpg": full, "txt": f"caption {i}".encode()})
    import tarfile

    with tarfile.open(out / "whole.tar") as tar:
        members = tar.getmembers()
    second_end = members[3].offset_data + ((members[3].size + 511) // 512) * 512
    data = (out / "whole.tar").read_bytes()
    (out / "cut.tar").write_bytes(data[:second_end])
    # torn.tar: cut in the middle of the third record's image bytes
    (out / "torn.tar").write_bytes(data[: members[4].offset_data + 100])
    return {
        "good": out / "good.tar",
        "cut": out / "cut.tar",
        "torn": out / "torn.tar",
        "whole": out / "whole.tar",
    }


# -- webdataset ------------------------------------------------------------------------------


def test_written_shards_read_back_exactly(synthetic_shards):
    paths, ds = synthetic_shards
    assert [p.name for p in paths] == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    pattern = str(paths[0].parent / "shard-{00000..00002}.tar")
    samples = list(WebDatasetReader(pattern))
    assert len(samples) == 10
    for i, (image, caption) in enumerate(samples):
        expected_image, expected_caption = ds[i]
        assert caption == expected_caption
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), np.asarray(expected_image))
    # a list of paths works the same as the brace pattern
    assert [c for _, c in WebDatasetReader(paths)] == [c for _, c in samples]


def test_corrupt_records_are_skipped_and_counted_exactly(corrupt_shards):
    good, bad = _split(list(WebDatasetReader(corrupt_shards["good"])))
    assert [c for _, c in good] == [
        "a green square",
        "a clear png",
        "bytes are png, the name says webp",
    ]
    assert np.asarray(good[1][0]).tolist() == [[[255, 255, 255]] * 12] * 10  # transparent -> white
    assert Counter(b.reason for b in bad) == {
        "corrupt_image": 2,
        "missing_caption": 1,
        "missing_image": 1,
        "bad_caption": 1,
        "empty_caption": 1,
    }
    keys = {b.reason: b.key for b in bad}
    assert keys["missing_caption"] == "good.tar/000000003"
    assert keys["missing_image"] == "good.tar/000000004"


def test_broken_and_missing_shards_are_counted_once_each(corrupt_shards, tmp_path):
    urls = [
        corrupt_shards["whole"],
        tmp_path / "absent.tar",
        corrupt_shards["cut"],
        corrupt_shards["torn"],
    ]
    # check_shards=False: absent.tar is not refused up front (as if it vanished after the
    # reader was built), so the read-time count is what is tested
    good, bad = _split(list(WebDatasetReader(urls, check_shards=False)))
    # whole: 3; absent: 0; cut: 2 (then the stream ends without an end-of-archive block);
    # torn: 2 full records, then the third record's image breaks off mid-member
    whole, cut, torn = (
        ["caption 0", "caption 1", "caption 2"],
        ["caption 0", "caption 1"],
        ["caption 0", "caption 1"],
    )
    assert [c for _, c in good] == [*whole, *cut, *torn]
    assert Counter((b.reason, b.key) for b in bad) == {
        ("unreadable_shard", "absent.tar"): 1,
        ("unreadable_shard", "cut.tar"): 1,
        ("unreadable_shard", "torn.tar"): 1,
    }


def test_compressed_shards_read_whole_and_report_a_cut(tmp_path):
    with wds.TarWriter(str(tmp_path / "z.tar.gz")) as sink:
        for i in range(3):
            sink.write({"__key__": f"{i:09d}", "png": _png(), "txt": f"caption {i}".encode()})
    good, bad = _split(list(WebDatasetReader(tmp_path / "z.tar.gz")))
    assert [c for _, c in good] == ["caption 0", "caption 1", "caption 2"] and bad == []
    data = (tmp_path / "z.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) * 2 // 3])
    good, bad = _split(list(WebDatasetReader(tmp_path / "cut.tar.gz")))
    assert len(good) < 3
    assert [b.reason for b in bad].count("unreadable_shard") == 1


def test_counts_reach_the_main_process_through_dataloader_workers(corrupt_shards):
    reader = WebDatasetReader([corrupt_shards["good"], corrupt_shards["cut"]])
    collate = Collate(default_tokenizer(), ImageTransform(16))
    loader = torch.utils.data.DataLoader(reader, batch_size=4, num_workers=2, collate_fn=collate)
    total, images = SkippedSamples(), 0
    for batch in loader:
        assert isinstance(batch, Batch)
        assert batch.images.shape[1:] == (3, 16, 16) and batch.tokens.shape == (
            len(batch.images),
            32,
        )
        total += batch.skipped
        images += len(batch.images)
    assert images == 3 + 2
    assert total.counts == {
        "corrupt_image": 2,
        "missing_caption": 1,
        "missing_image": 1,
        "bad_caption": 1,
        "empty_caption": 1,
        "unreadable_shard": 1,
    }
    assert total.total == 7


def test_markers_can_stay_out_of_the_stream(corrupt_shards):
    reader = WebDatasetReader(corrupt_shards["good"], emit_skipped=False)
    samples = list(reader)
    assert len(samples) == 3 and all(isinstance(s, tuple) for s in samples)
    assert reader.skipped.total == 6 and reader.skipped.counts["corrupt_image"] == 2


def test_shuffle_is_seeded_and_keeps_every_sample(synthetic_shards):
    paths, _ = synthetic_shards
    stored = [c for _, c in WebDatasetReader(paths)]

    def order(seed, epoch=0):
        reader = WebDatasetReader(paths, shuffle=8, seed=seed, shardshuffle=True)
        reader.set_epoch(epoch)
        return [c for _, c in reader]

    assert order(1) == order(1)
    assert sorted(order(1)) == sorted(stored)
    assert order(1) != stored
    assert order(1) != order(1, epoch=1)


def test_resampled_streams_forever_from_the_given_shards(synthetic_shards):
    paths, ds = synthetic_shards
    captions = {ds[i][1] for i in range(len(ds))}
    first = [c for _, c in itertools.islice(WebDatasetReader(paths, resampled=True, seed=3), 25)]
    assert len(first) == 25 and set(first) <= captions
    again = [c for _, c in itertools.islice(WebDatasetReader(paths, resampled=True, seed=3), 25)]
    assert first == again


def test_write_shards_validates_and_accepts_tensors(tmp_path):
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    image[0] = 255
    paths = write_shards(
        [(image, "red")] * 3, tmp_path / "t-%03d.tar", image_format="png", maxcount=2
    )
    assert len(paths) == 2
    (read_image, caption), *_ = list(WebDatasetReader(paths))
    assert caption == "red" and np.asarray(read_image)[0, 0].tolist() == [255, 0, 0]
    assert len(write_shards(iter([(image, "x")] * 5), tmp_path / "l-%03d.tar", limit=2)) == 1
    assert len(list(WebDatasetReader(tmp_path / "l-000.tar"))) == 2
    with pytest.raises(ValueError, match="pattern"):
        write_shards([(image, "x")], tmp_path / "plain.tar")
    with pytest.raises(ValueError, match="image_format"):
        write_shards([(image, "x")], tmp_path / "a-%d.tar", image_format="gif")
    with pytest.raises(ValueError, match="samples"):
        write_shards([], tmp_path / "b-%d.tar")
    with pytest.raises(TypeError, match="caption"):
        write_shards([(image, 3)], tmp_path / "c-%d.tar")
    with pytest.raises(TypeError, match="image"):
        write_shards([(image.float(), "x")], tmp_path / "d-%d.tar")
    with pytest.raises(ValueError, match="urls"):
        WebDatasetReader([])
    with pytest.raises(ValueError, match="shuffle"):
        WebDatasetReader("x.tar", shuffle=-1)


# -- CSV / TSV ----------------------------------------------------------------------------


def test_csv_rows_with_every_kind_of_problem_are_counted_exactly(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "red.png").write_bytes(_png((255, 0, 0)))
    (images / "grey.png").write_bytes(_png(128, mode="L"))
    (images / "broken.jpg").write_bytes(_jpg()[:200])
    (images / "text.png").write_bytes(b"this is not an image")
    absolute = tmp_path / "abs.jpg"
    absolute.write_bytes(_jpg((0, 0, 250)))
    table = tmp_path / "captions.csv"
    table.write_text(
        "filepath,caption,extra\n"
        "images/red.png,a red patch,1\n"
        'images/grey.png,"a grey patch, quoted",2\n'
        f"{absolute},a blue patch,3\n"
        "images/missing.png,gone,4\n"
        "images/broken.jpg,truncated,5\n"
        "images/text.png,not an image,6\n"
        "images/red.png,,7\n"
        "images/red.png\n",
        encoding="utf-8",
    )
    ds = CaptionTable(table)
    assert len(ds) == 8
    good, bad = _split([ds[i] for i in range(len(ds))])
    assert [c for _, c in good] == ["a red patch", "a grey patch, quoted", "a blue patch"]
    assert np.asarray(good[1][0])[0, 0].tolist() == [128, 128, 128]
    assert Counter(b.reason for b in bad) == {
        "missing_file": 1,
        "corrupt_image": 2,
        "empty_caption": 1,
        "missing_caption": 1,
    }
    assert next(b for b in bad if b.reason == "missing_file").key == "captions.csv#row3"
    batch = Collate(default_tokenizer(), ImageTransform(8))([ds[i] for i in range(len(ds))])
    assert batch.images.shape == (3, 3, 8, 8)
    assert batch.skipped.total == 5 and batch.skipped.counts["corrupt_image"] == 2


def test_tsv_with_custom_columns_and_image_root(tmp_path):
    root = tmp_path / "pictures"
    root.mkdir()
    (root / "a.png").write_bytes(_png())
    table = tmp_path / "meta" / "pairs.tsv"
    table.parent.mkdir()
    table.write_text("url\ttext\na.png\tthe first picture\n", encoding="utf-8")
    ds = CaptionTable(table, image_column="url", caption_column="text", image_root=root)
    image, caption = ds[0]
    assert caption == "the first picture" and image.size == (12, 10)
    assert ds.resolve(0) == root / "a.png"
    # without image_root the table's folder is used: the file is not there
    assert isinstance(
        CaptionTable(table, image_column="url", caption_column="text")[0], SkippedSample
    )
    with pytest.raises(ValueError, match=r"caption_column: column .caption.*\[.url., .text.\]"):
        CaptionTable(table, image_column="url")
    with pytest.raises(FileNotFoundError, match="path"):
        CaptionTable(tmp_path / "nope.csv")
    with pytest.raises(IndexError, match="index"):
        ds[1]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="header"):
        CaptionTable(empty)


def test_explicit_separator_and_caption_corpus(tmp_path):
    table = tmp_path / "semi.txt"
    table.write_text(
        "filepath;caption\na.png;  First Caption \nb.png;\nc.png;third; extra\nd.png\n"
    )
    ds = CaptionTable(table, separator=";")
    assert list(ds.captions) == ["  First Caption ", "", "third", None]
    assert list(read_captions(table, separator=";")) == ["First Caption", "third"]
    with pytest.raises(ValueError, match="caption_column"):
        list(read_captions(table))  # a comma table has one column "filepath;caption"
    with pytest.raises(ValueError, match="separator"):
        CaptionTable(table, separator=";;")


# -- skip record and collate --------------------------------------------------------------


def test_skipped_samples_record_combines_and_round_trips():
    a = SkippedSamples(max_examples=2)
    for key in ("k1", "k2", "k3"):
        a.record("corrupt_image", key)
    a.add(SkippedSample("missing_caption", "k4", "no .txt"))
    assert a.total == 4 and a.counts == {"corrupt_image": 3, "missing_caption": 1}
    assert a.examples["corrupt_image"] == ["k1", "k2"]
    b = SkippedSamples()
    b.record("missing_caption", "k5")
    merged = a + b
    assert merged.counts == {"corrupt_image": 3, "missing_caption": 2} and a.total == 4
    assert merged.as_metrics() == {
        "data/skipped": 5,
        "data/skipped/corrupt_image": 3,
        "data/skipped/missing_caption": 2,
    }
    assert "corrupt_image=3 (k1, k2)" in merged.summary()
    assert SkippedSamples.from_dict(merged.to_dict()) == merged
    assert pickle.loads(pickle.dumps(merged)) == merged
    assert not SkippedSamples() and SkippedSamples().summary() == "0 skipped"
    handle = b.handler("unreadable_shard")
    assert handle(SampleError("bad_caption", "k6", "x")) is True
    assert handle(OSError("disk said no", "shard-7.tar")) is True
    assert b.counts == {"missing_caption": 1, "bad_caption": 1, "unreadable_shard": 1}
    assert b.examples["unreadable_shard"] == ["shard-7.tar: OSError: disk said no"]
    with pytest.raises(ValueError, match="reason"):
        b.record("")
    with pytest.raises(ValueError, match="max_examples"):
        SkippedSamples(-1)
    with pytest.raises(ValueError, match="counts"):
        SkippedSamples.from_dict({"counts": {"x": -1}})


def test_collate_builds_batches_from_pil_and_tensors():
    tok = default_tokenizer()
    transform = ImageTransform(16)
    ds = SyntheticCaptions("train", 6, image_size=16)
    samples = [ds[i] for i in range(6)]
    batch = Collate(tok, transform)(
        [*samples[:3], SkippedSample("corrupt_image", "x"), *samples[3:]]
    )
    assert batch.images.shape == (6, 3, 16, 16) and batch.images.dtype == torch.float32
    assert torch.equal(batch.images[4], transform(samples[4][0]))
    assert torch.equal(batch.tokens, tok([c for _, c in samples]))
    assert batch.skipped.counts == {"corrupt_image": 1}
    raw = Collate(tok, None, context_length=8)(
        [(torch.full((3, 4, 4), 255, dtype=torch.uint8), "a red star")]
    )
    assert raw.tokens.shape == (1, 8) and torch.equal(raw.images, torch.ones(1, 3, 4, 4))
    empty = Collate(tok, transform)([SkippedSample("missing_file", "y")])
    assert (
        empty.images.shape == (0, 3, 16, 16)
        and empty.tokens.shape == (0, 32)
        and empty.skipped.total == 1
    )
    with pytest.raises(TypeError, match=r"samples\[0\]"):
        Collate(tok, transform)(["just a caption"])
    with pytest.raises(TypeError, match="caption"):
        Collate(tok, transform)([(samples[0][0], 3)])
