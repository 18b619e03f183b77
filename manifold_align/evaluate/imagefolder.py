"""Labelled images in class folders: ``root/<class>/*.jpg`` (ImageNet's ``val/<wnid>/`` too).

A sub-folder of ``root`` is one class; its label comes from a folder -> label map
([match_class_folders][manifold_align.evaluate.imagefolder.match_class_folders]): an explicit map (a ``folder<TAB>name`` names file, ImageNet's
WordNet ids), or else the folder name itself must be a class name (``_`` may stand for a
space: ``aquarium_fish`` is ``aquarium fish``). A folder that maps to no class is an error,
raised before anything is read. Files are taken in sorted order per folder; names that do not
end in an image extension are ignored. An image that cannot be read or decoded becomes a
[SkippedSample][manifold_align.data.skipped.SkippedSample] marker (``missing_file`` /
``corrupt_image``), counted by the evaluation, never raised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from manifold_align.data.skipped import MISSING_FILE, SampleError, SkippedSample
from manifold_align.data.transforms import decode_image

__all__ = ["IMAGE_SUFFIXES", "ImageFolder", "load_image", "match_class_folders"]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
"""File suffixes (any case) read as images."""


def load_image(path: Path, transform: Callable) -> torch.Tensor | SkippedSample:
    """``transform(decoded image)``, or a marker if the file is missing or not an image."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return SkippedSample(MISSING_FILE, str(path), f"{type(exc).__name__}: {exc}"[:200])
    try:
        return transform(decode_image(data, str(path)))
    except SampleError as exc:
        return exc.marker()


def match_class_folders(
    folders: Sequence[str],
    classnames: Sequence[str],
    folder_map: Mapping[str, int] | None,
    source: str,
) -> dict[str, int]:
    """Folder name -> label for every folder.

    With ``folder_map`` a folder must be one of its keys; without, ``folder`` (or ``folder``
    with ``_`` read as a space) must be a class name.

    Raises:
        ValueError: for the first folder without a class, naming it and ``source``.
    """
    index: dict[str, int] = {}
    for i, name in enumerate(classnames):
        index.setdefault(name, i)
    out: dict[str, int] = {}
    missing = []
    for folder in folders:
        if folder_map is not None:
            label = folder_map.get(folder)
        else:
            label = index.get(folder, index.get(folder.replace("_", " ")))
        if label is None:
            missing.append(folder)
        else:
            out[folder] = label
    if missing:
        raise ValueError(
            f"classnames: {len(missing)} class folder(s) have no name in {source} "
            f"(first: {missing[:3]}); add them to the names file or remove the folders"
        )
    return out


class ImageFolder(torch.utils.data.Dataset):
    """``(transformed image (3, s, s) or SkippedSample, label)`` for every image file.

    Args:
        root: the folder whose sub-folders are the classes.
        labels: folder name -> label (from [match_class_folders][manifold_align.evaluate.imagefolder.match_class_folders]).
        transform: PIL image -> tensor.

    Raises:
        ValueError: if ``root`` is not a folder or holds no image file.
    """

    def __init__(self, root: str | Path, labels: Mapping[str, int], transform: Callable) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"path: {self.root} is not a folder")
        self.transform = transform
        self.files: list[Path] = []
        self.targets: list[int] = []
        for folder in sorted(labels):
            for path in sorted((self.root / folder).iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    self.files.append(path)
                    self.targets.append(labels[folder])
        if not self.files:
            raise ValueError(f"path: {self.root} has class folders but no image file ({', '.join(IMAGE_SUFFIXES)})")

    @staticmethod
    def class_folders(root: str | Path) -> list[str]:
        """The sub-folder names of ``root`` (hidden ones left out), sorted.

        Raises:
            ValueError: if ``root`` is not a folder or has no sub-folder.
        """
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"path: {root} is not a folder")
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise ValueError(f"path: {root} has no class sub-folders (expected root/<class>/<image>)")
        return folders

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | SkippedSample, int]:
        return load_image(self.files[index], self.transform), self.targets[index]
