"""CLIP_benchmark's webdataset layout, read exactly as ``clip_benchmark`` writes it.

``clip_benchmark_export_wds`` (``clip_benchmark.webdataset_builder``) writes::

    root/
      classnames.txt                           one class name a line, label order
      zeroshot_classification_templates.txt    one template a line, "{c}" for the name
      dataset_type.txt                         optional: "retrieval" or "multilabel"
      <split>/nshards.txt                      number of shards
      <split>/0.tar, 1.tar, ...                records "s0000000.webp" + "s0000000.cls"

A classification record holds one image (``webp``, ``png``, ``jpg`` or ``jpeg``) and its
label as decimal text in ``cls``; a retrieval record (``dataset_type.txt`` = ``retrieval``)
holds the image and its captions in ``txt``, one a line. Multilabel sets (``npy`` labels)
are refused. When ``nshards.txt`` is absent the split's ``*.tar`` files are read in numeric
order. Unreadable records become [SkippedSample][manifold_align.data.skipped.SkippedSample]
markers (reasons ``missing_image``, ``corrupt_image``, ``missing_caption``, ``bad_label``,
``unreadable_shard``), counted by the evaluation and never raised.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from manifold_align.data.skipped import SampleError, SkippedSample
from manifold_align.data.webdataset import WebDatasetReader
from manifold_align.evaluate.prompts import check_classnames, check_templates

__all__ = ["BAD_LABEL", "WdsBenchmark", "WdsSamples", "is_wds_layout", "read_wds_layout"]

BAD_LABEL = "bad_label"
"""A ``cls`` member that is not an integer label in ``[0, C)``."""

CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"


@dataclass(frozen=True)
class WdsBenchmark:
    """A CLIP_benchmark webdataset on disk.

    Attributes:
        root: the dataset folder.
        split: the split read (a sub-folder of ``root``).
        kind: ``"classification"`` or ``"retrieval"``.
        shards: the split's tar files in order.
        classnames: label-order names (classification; ``None`` if the file is absent).
        templates: templates with ``{}`` (classification; ``None`` if the file is absent).
    """

    root: Path
    split: str
    kind: str
    shards: tuple[Path, ...]
    classnames: tuple[str, ...] | None
    templates: tuple[str, ...] | None


def is_wds_layout(root: str | Path, split: str = "test") -> bool:
    """Whether ``root/split`` holds ``nshards.txt`` or tar shards."""
    folder = Path(root) / split
    return (folder / "nshards.txt").is_file() or any(folder.glob("*.tar"))


def _lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"path: cannot read {path} ({exc})") from None


def read_wds_layout(root: str | Path, split: str = "test") -> WdsBenchmark:
    """Read the layout's metadata and shard list (no record is opened).

    Raises:
        ValueError: no such folder, a bad ``nshards.txt``, a listed shard missing, no shard,
            a multilabel dataset, or a names/templates file with a repeated name or a
            template without a placeholder.
    """
    root = Path(root)
    folder = root / split
    if not folder.is_dir():
        raise ValueError(f"path: {folder} does not exist (CLIP_benchmark layout: root/<split>/N.tar)")
    kind_file = root / "dataset_type.txt"
    kind = _lines(kind_file)[0].lower() if kind_file.is_file() and _lines(kind_file) else "classification"
    if kind == "multilabel":
        raise ValueError(f"path: {root} is a multilabel dataset (npy labels); only single-label classification and retrieval are evaluated")
    if kind not in ("classification", "retrieval"):
        raise ValueError(f"path: {kind_file} says {kind!r}, expected 'retrieval', 'multilabel' or nothing")
    count_file = folder / "nshards.txt"
    if count_file.is_file():
        text = " ".join(_lines(count_file))
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"path: {count_file} holds {text!r}, expected a positive shard count")
        shards = [folder / f"{i}.tar" for i in range(int(text))]
        absent = [s.name for s in shards if not s.is_file()]
        if absent:
            raise ValueError(f"path: {count_file} lists {len(shards)} shards but {absent[:3]} are missing")
    else:
        def number(p: Path) -> tuple[int, str]:
            digits = re.findall(r"\d+", p.stem)
            return (int(digits[-1]) if digits else -1, p.name)

        shards = sorted(folder.glob("*.tar"), key=number)
    if not shards:
        raise ValueError(f"path: {folder} holds no .tar shard")
    classnames = templates = None
    if kind == "classification":
        if (root / CLASSNAMES_FILE).is_file():
            classnames = tuple(check_classnames(_lines(root / CLASSNAMES_FILE), str(root / CLASSNAMES_FILE)))
        if (root / TEMPLATES_FILE).is_file():
            templates = tuple(check_templates(_lines(root / TEMPLATES_FILE), str(root / TEMPLATES_FILE)))
    return WdsBenchmark(root, split, kind, tuple(shards), classnames, templates)


class WdsSamples(torch.utils.data.IterableDataset):
    """Records of some shards as ``(image tensor or SkippedSample, target)``.

    The target is the integer label (classification) or the list of captions (retrieval);
    ``-1`` / ``[]`` beside a marker. Records come in shard order; ``DataLoader`` workers split
    the shards between them.

    Args:
        shards: the tar files to read (e.g. this rank's share).
        kind: ``"classification"`` or ``"retrieval"``.
        transform: PIL image -> tensor.
        num_classes: labels must lie in ``[0, num_classes)``.
    """

    def __init__(self, shards: list[Path], kind: str, transform: Callable, num_classes: int = 0) -> None:
        super().__init__()
        self.shards = [str(s) for s in shards]
        self.kind = kind
        self.transform = transform
        self.num_classes = num_classes

    def __iter__(self) -> Iterator[tuple[torch.Tensor | SkippedSample, int | list[str]]]:
        if not self.shards:
            return
        member = "cls" if self.kind == "classification" else "txt"
        reader = WebDatasetReader(self.shards, caption_extension=member, rank=0, world_size=1)
        empty: int | list[str] = -1 if self.kind == "classification" else []
        for item in reader:
            if isinstance(item, SkippedSample):
                yield item, empty
                continue
            image, text = item
            if self.kind == "retrieval":
                captions = [c.strip() for c in text.splitlines() if c.strip()]
                yield self.transform(image), captions
                continue
            try:
                label = int(text)
                if not 0 <= label < self.num_classes:
                    raise ValueError(f"outside [0, {self.num_classes})")
            except ValueError as exc:
                yield SampleError(BAD_LABEL, f"cls {text[:20]!r}", str(exc)[:200]).marker(), -1
                continue
            yield self.transform(image), label
