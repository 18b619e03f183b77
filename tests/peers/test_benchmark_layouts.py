"""Our benchmark readers and bundled data against the real CLIP_benchmark and OpenCLIP."""

from __future__ import annotations

import torch
from clip_benchmark.datasets.builder import build_wds_dataset
from clip_benchmark.webdataset_builder import PIL_to_bytes, convert_dataset
from open_clip.zero_shot_metadata import (
    IMAGENET_CLASSNAMES,
    OPENAI_IMAGENET_TEMPLATES,
    SIMPLE_IMAGENET_TEMPLATES,
)

from manifold_align.data.synthetic import SyntheticZeroShot
from manifold_align.data.transforms import to_tensor
from manifold_align.evaluate.benchmarks import open_benchmark
from manifold_align.evaluate.demo_datasets import write_benchmark_datasets
from manifold_align.evaluate.prompts import bundled_classnames, bundled_templates


def test_bundled_imagenet_names_and_templates_are_open_clips():
    assert bundled_classnames("imagenet1k") == list(IMAGENET_CLASSNAMES)
    assert bundled_templates("imagenet1k") == [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    assert bundled_templates("imagenet1k-7") == [t("{}") for t in SIMPLE_IMAGENET_TEMPLATES]


class _Shapes(torch.utils.data.Dataset):
    """(webp bytes, label) as clip_benchmark's converter takes them, with classes/templates."""

    def __init__(self) -> None:
        self.data = SyntheticZeroShot("shape", 10, image_size=24)
        self.classes = list(self.data.classnames)
        self.templates = ["a photo of a {c}."]
        self.encode = PIL_to_bytes("webp")

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        image, label = self.data[i]
        return self.encode(image), label


def test_we_read_what_clip_benchmark_writes(tmp_path):
    convert_dataset(_Shapes(), "test", str(tmp_path), max_count=4, verbose=False)
    bench = open_benchmark(f"wds/colours={tmp_path}")
    assert len(bench.shards) == 3 and bench.templates == ("a photo of a {}.",)
    assert bench.classnames == tuple(_Shapes().classes)
    labels = [y for _, y in bench.dataset(to_tensor)]
    assert labels == _Shapes().data.targets().tolist()


def test_clip_benchmark_reads_what_we_write(tmp_path):
    root = write_benchmark_datasets(tmp_path, images_per_class=2, retrieval_images=2, image_size=24)["wds_colours"]
    theirs = build_wds_dataset("shapes", transform=to_tensor, split="test", data_dir=str(root))
    ours = list(open_benchmark(f"wds/colours={root}").dataset(to_tensor))
    pairs = list(theirs)
    assert [int(y) for _, y in pairs] == [y for _, y in ours]
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(pairs, ours))
    assert theirs.classes == list(open_benchmark(f"wds/colours={root}").classnames)
