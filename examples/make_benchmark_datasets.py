"""Write small benchmark datasets in the standard on-disk layouts, from the synthetic shapes.

    python examples/make_benchmark_datasets.py OUT [--images-per-class N] [--damaged]

OUT gets imagenet1k/ (val/<wnid>/*.JPEG), colours/ (class folders + classnames.txt),
wds_colours/ (CLIP_benchmark's webdataset layout), coco/ and flickr30k/ (Karpathy split
files + images), ready for ``manifold-align eval --benchmark NAME=OUT/<folder>`` (see
docs/evaluation-standard.md). ``--damaged`` truncates one ImageNet image and leaves one
COCO image out, to show how unreadable images are counted. Exit status 2 if OUT already
holds these folders.
"""

from __future__ import annotations

import argparse
import sys

from manifold_align.evaluate.demo_datasets import write_benchmark_datasets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write into")
    parser.add_argument("--images-per-class", type=int, default=4, metavar="N")
    parser.add_argument("--retrieval-images", type=int, default=30, metavar="N")
    parser.add_argument("--image-size", type=int, default=64, metavar="PX")
    parser.add_argument("--damaged", action="store_true", help="one corrupt and one missing image")
    args = parser.parse_args(argv)
    try:
        paths = write_benchmark_datasets(
            args.out, images_per_class=args.images_per_class, retrieval_images=args.retrieval_images,
            image_size=args.image_size, damaged=args.damaged,
        )
    except FileExistsError as exc:
        print(f"make_benchmark_datasets: error: {exc}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name:12s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
