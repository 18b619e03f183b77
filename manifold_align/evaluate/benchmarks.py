"""Standard benchmarks on disk: which layout a ``NAME=PATH`` names, checked before encoding.

Names (``NAME`` of ``--benchmark NAME=PATH`` and of ``eval.benchmarks``):

| name | task | ``PATH`` | class names / templates |
|---|---|---|---|
| ``imagenet1k`` | zero-shot | ``val/<wnid>/*.JPEG`` (``PATH`` or ``PATH/val``) | bundled 1,000 names, OpenAI's 80 |
| ``cifar10``, ``cifar100`` | zero-shot | ``PATH/<class name>/*.png`` | bundled names, the 18 CIFAR templates |
| ``folder/<any>`` | zero-shot | ``PATH/<class>/*`` | ``PATH/classnames.txt`` or ``.tsv``; ``PATH/zeroshot_classification_templates.txt`` or OpenAI's 80 |
| ``wds/<any>`` | zero-shot or retrieval | CLIP_benchmark's webdataset layout | its ``classnames.txt`` and templates |
| ``coco``, ``flickr30k``, ``flickr8k`` | retrieval | ``PATH/dataset_coco.json`` (...) and the images | |

Any zero-shot name also reads CLIP_benchmark's layout when ``PATH/<split>/`` holds shards.
Options after the path, comma-separated (``NAME=PATH,templates=imagenet1k-7``):
``classnames=FILE``, ``templates=FILE`` or a bundled set (``imagenet1k``, ``imagenet1k-7``,
``cifar10``, ``cifar100``), ``split=NAME`` (``test``; Karpathy's or CLIP_benchmark's),
``images=DIR`` (retrieval images when not beside the JSON), ``annotations=FILE``.

[open_benchmark][manifold_align.evaluate.benchmarks.open_benchmark] reads names, templates, folder lists and annotation files and raises
``ValueError`` (naming the option or file) for every problem it can see before a model runs:
a class folder without a name, repeated names, templates without a placeholder, a missing
folder or file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from manifold_align.evaluate.imagefolder import ImageFolder, load_image, match_class_folders
from manifold_align.evaluate.karpathy import KARPATHY_FILES, read_karpathy
from manifold_align.evaluate.prompts import (
    BUNDLED_CLASSNAMES,
    bundled_classnames,
    bundled_templates,
    check_classnames,
    imagenet_wnids,
    known_repeats,
    read_names_file,
    read_templates,
)
from manifold_align.evaluate.wds_benchmark import (
    CLASSNAMES_FILE,
    TEMPLATES_FILE,
    WdsSamples,
    is_wds_layout,
    read_wds_layout,
)

__all__ = [
    "RETRIEVAL_NAMES",
    "ZEROSHOT_NAMES",
    "BenchmarkSpec",
    "RetrievalBenchmark",
    "ZeroShotBenchmark",
    "open_benchmark",
    "parse_benchmark",
]

ZEROSHOT_NAMES: tuple[str, ...] = tuple(BUNDLED_CLASSNAMES)
RETRIEVAL_NAMES: tuple[str, ...] = tuple(KARPATHY_FILES)
PREFIXES: tuple[str, ...] = ("folder/", "wds/")
_DEFAULT_TEMPLATES = {"imagenet1k": "imagenet1k", "cifar10": "cifar10", "cifar100": "cifar100"}


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark to run: its name, where it is, and optional overrides (see module docs)."""

    name: str
    path: str
    classnames: str | None = None
    templates: str | None = None
    split: str | None = None
    images: str | None = None
    annotations: str | None = None

    def __post_init__(self) -> None:
        known = self.name in ZEROSHOT_NAMES or self.name in RETRIEVAL_NAMES
        prefixed = any(self.name.startswith(p) and len(self.name) > len(p) for p in PREFIXES)
        if not (known or prefixed):
            raise ValueError(
                f"benchmark: unknown name {self.name!r}; expected one of "
                f"{list(ZEROSHOT_NAMES + RETRIEVAL_NAMES)} or folder/<name>, wds/<name>"
            )
        if not self.path:
            raise ValueError(f"benchmark {self.name}: expected a path, got ''")

    @property
    def options(self) -> dict[str, str]:
        """The options that are set (not ``None``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)[2:] if getattr(self, f.name) is not None}


def parse_benchmark(text: str) -> BenchmarkSpec:
    """``"NAME=PATH[,key=value...]"`` -> [BenchmarkSpec][manifold_align.evaluate.benchmarks.BenchmarkSpec].

    Raises:
        ValueError: no ``=``, an unknown name or option (listing the known ones).
    """
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise ValueError(f"--benchmark: expected NAME=PATH[,key=value...], got {text!r}")
    path, *opts = rest.split(",")
    allowed = [f.name for f in fields(BenchmarkSpec)[2:]]
    options: dict[str, str] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq or key.strip() not in allowed:
            raise ValueError(f"--benchmark {name}: unknown option {opt!r}; expected key=value with key in {allowed}")
        options[key.strip()] = value.strip()
    return BenchmarkSpec(name.strip(), path.strip(), **options)


@dataclass(frozen=True)
class ZeroShotBenchmark:
    """A checked zero-shot benchmark.

    Attributes:
        spec: what was asked for.
        classnames: ``C`` names, label order.
        templates: ``T`` templates with ``{}``.
        layout: ``"folder"`` or ``"wds"``.
        root: the class-folder root or the CLIP_benchmark dataset folder.
        labels: (folder) sub-folder -> label.
        shards: (wds) the split's tar files.
        sources: where the names and templates came from (for the report).
    """

    spec: BenchmarkSpec
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    layout: str
    root: Path
    labels: dict[str, int] | None = None
    shards: tuple[Path, ...] = ()
    sources: dict[str, str] | None = None

    def prompts(self) -> list[list[str]]:
        """``prompts()[c][t]``: class ``c``'s name in template ``t``."""
        return [[t.replace("{}", name) for t in self.templates] for name in self.classnames]

    def dataset(self, transform: Callable, rank: int = 0, world: int = 1) -> torch.utils.data.Dataset:
        """Rank ``rank``'s share: ``(image tensor or SkippedSample, label)`` items."""
        if self.layout == "wds":
            return WdsSamples(list(self.shards[rank::world]), "classification", transform, len(self.classnames))
        from manifold_align.evaluate.ranks import shard_bounds

        full = ImageFolder(self.root, self.labels or {}, transform)
        start, stop = shard_bounds(len(full), rank, world)
        return torch.utils.data.Subset(full, range(start, stop))


@dataclass(frozen=True)
class RetrievalBenchmark:
    """A checked retrieval benchmark.

    Attributes:
        spec: what was asked for.
        layout: ``"karpathy"`` or ``"wds"``.
        images: (karpathy) image paths, ``N``.
        captions: (karpathy) the captions of each image, ``N`` tuples.
        shards: (wds) the split's tar files.
    """

    spec: BenchmarkSpec
    layout: str
    images: tuple[Path, ...] = ()
    captions: tuple[tuple[str, ...], ...] = ()
    shards: tuple[Path, ...] = ()

    def dataset(self, transform: Callable, rank: int = 0, world: int = 1) -> torch.utils.data.Dataset:
        """Rank ``rank``'s share: ``(image tensor or SkippedSample, captions)`` items."""
        if self.layout == "wds":
            return WdsSamples(list(self.shards[rank::world]), "retrieval", transform)
        from manifold_align.evaluate.ranks import shard_bounds

        start, stop = shard_bounds(len(self.images), rank, world)
        return _PathCaptions(self.images[start:stop], self.captions[start:stop], transform)


class _PathCaptions(torch.utils.data.Dataset):
    def __init__(self, images: tuple[Path, ...], captions: tuple[tuple[str, ...], ...], transform: Callable) -> None:
        self.images, self.captions, self.transform = images, captions, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple:
        return load_image(self.images[i], self.transform), list(self.captions[i])


def _names(spec: BenchmarkSpec, root: Path) -> tuple[list[str], dict[str, int] | None, str, set[str]]:
    """Class names, folder map, their source and the names allowed to repeat."""
    if spec.classnames:
        names, folders = read_names_file(spec.classnames)
        return names, folders, spec.classnames, set()
    if spec.name in BUNDLED_CLASSNAMES:
        names = bundled_classnames(spec.name)
        folders = None
        if spec.name == "imagenet1k":
            folders = {w: i for i, w in enumerate(imagenet_wnids())}
        return names, folders, f"bundled {spec.name}", known_repeats(spec.name)
    for candidate in (root / "classnames.tsv", root / CLASSNAMES_FILE):
        if candidate.is_file():
            names, folders = read_names_file(candidate)
            return names, folders, str(candidate), set()
    raise ValueError(
        f"benchmark {spec.name}: no class names; put classnames.txt (one a line) or "
        f"classnames.tsv (folder<TAB>name) in {root}, or pass classnames=FILE"
    )


def _templates(spec: BenchmarkSpec, root: Path | None) -> tuple[list[str], str]:
    if spec.templates:
        return read_templates(spec.templates), spec.templates
    if root is not None and (root / TEMPLATES_FILE).is_file():
        return read_templates(root / TEMPLATES_FILE), str(root / TEMPLATES_FILE)
    default = _DEFAULT_TEMPLATES.get(spec.name, "imagenet1k")
    return bundled_templates(default), f"bundled {default}"


def _folder_root(spec: BenchmarkSpec, path: Path) -> Path:
    """``PATH/<split>`` when asked for, or when a bundled benchmark's folder has it; else ``PATH``."""
    sub = path / (spec.split or ("val" if spec.name == "imagenet1k" else "test"))
    if spec.split or (sub.is_dir() and spec.name in BUNDLED_CLASSNAMES):
        if not sub.is_dir():
            raise ValueError(f"split folder {sub} does not exist")
        return sub
    return path


def open_benchmark(spec: BenchmarkSpec | str) -> ZeroShotBenchmark | RetrievalBenchmark:
    """Check a benchmark on disk and read everything but the images.

    Raises:
        ValueError: anything wrong that can be seen without decoding images (the message
            names the benchmark and the file or option).
    """
    if isinstance(spec, str):
        spec = parse_benchmark(spec)
    path = Path(spec.path)
    try:
        if not path.exists():
            raise ValueError(f"path {path} does not exist")
        split = spec.split or "test"
        if spec.name in RETRIEVAL_NAMES:
            annotations = Path(spec.annotations) if spec.annotations else (
                path if path.is_file() else path / KARPATHY_FILES[spec.name])
            data = read_karpathy(annotations, spec.images, split)
            grouped: list[list[str]] = [[] for _ in data.images]
            for text, owner in zip(data.captions, data.caption_to_image):
                grouped[owner].append(text)
            return RetrievalBenchmark(spec, "karpathy", data.images, tuple(tuple(g) for g in grouped))
        if spec.name.startswith("wds/") or (path.is_dir() and is_wds_layout(path, split)):
            layout = read_wds_layout(path, split)
            if layout.kind == "retrieval":
                return RetrievalBenchmark(spec, "wds", shards=layout.shards)
            if spec.classnames:
                names, names_source = read_names_file(spec.classnames)[0], spec.classnames
            elif layout.classnames:
                names, names_source = list(layout.classnames), str(path / CLASSNAMES_FILE)
            elif spec.name in BUNDLED_CLASSNAMES:
                names, names_source = bundled_classnames(spec.name), f"bundled {spec.name}"
            else:
                raise ValueError(f"no {CLASSNAMES_FILE} in {path}; pass classnames=FILE")
            check_classnames(names, names_source, allowed_repeats=known_repeats(spec.name))
            templates, templates_source = _templates(spec, path)
            return ZeroShotBenchmark(
                spec, tuple(names), tuple(templates), "wds", path, shards=layout.shards,
                sources={"classnames": names_source, "templates": templates_source},
            )
        root = _folder_root(spec, path)
        names, folder_map, names_source, repeats = _names(spec, path)
        check_classnames(names, names_source, allowed_repeats=repeats)
        labels = match_class_folders(ImageFolder.class_folders(root), names, folder_map, names_source)
        templates, templates_source = _templates(spec, path)
        return ZeroShotBenchmark(
            spec, tuple(names), tuple(templates), "folder", root, labels=labels,
            sources={"classnames": names_source, "templates": templates_source},
        )
    except ValueError as exc:
        raise ValueError(f"benchmark {spec.name}={spec.path}: {exc}") from None
