"""A CSV/TSV table of image paths and captions as a map-style dataset.

The table has a header row; two of its columns name the image file and the caption
(``filepath`` and ``caption`` by default, OpenCLIP's ``--csv-img-key`` / ``--csv-caption-key``
convention). The separator follows the suffix (``.tsv`` / ``.tab``: tab, otherwise comma)
unless given. A relative path is resolved against ``image_root`` if given, else against
the table's own folder.

Item ``i`` is ``(PIL RGB image, caption)``. A row that cannot be used (missing or empty
caption, missing file, undecodable image) returns a
:class:`~manifold_align.data.skipped.SkippedSample` marker instead, which
:class:`~manifold_align.data.collate.Collate` counts; nothing raises and nothing is dropped
silently.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image

from manifold_align.data.skipped import (
    EMPTY_CAPTION,
    MISSING_CAPTION,
    MISSING_FILE,
    SampleError,
    SkippedSample,
)
from manifold_align.data.transforms import decode_image

__all__ = ["CaptionTable", "read_captions"]


def _separator(path: Path, separator: str | None) -> str:
    if separator is None:
        return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    if len(separator) != 1:
        raise ValueError(
            f"separator: got {separator!r}, expected one character such as ',' or '\\t'"
        )
    return separator


def _rows(path: Path, separator: str, **columns: str) -> Iterator[dict[str, str | None]]:
    """The table's rows as dicts, after checking that every named column exists."""
    if not path.is_file():
        raise FileNotFoundError(f"path: {str(path)!r} is not a file")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=separator)
        header = reader.fieldnames
        if not header:
            raise ValueError(f"path: {str(path)!r} has no header row")
        for name, column in columns.items():
            if column not in header:
                raise ValueError(
                    f"{name}: column {column!r} is not in {str(path)!r}; "
                    f"its columns are {header} (separator {separator!r})"
                )
        yield from reader


def read_captions(
    path: str | os.PathLike, *, caption_column: str = "caption", separator: str | None = None
) -> Iterator[str]:
    """The non-empty captions of a table, stripped, without opening any image.

    Meant as a tokenizer corpus (:meth:`~manifold_align.data.tokenizer.Tokenizer.train`);
    rows without a caption are not samples here, so they are passed over.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the table has no header, lacks ``caption_column`` or ``separator``
            is not one character.
    """
    path = Path(path)
    for row in _rows(path, _separator(path, separator), caption_column=caption_column):
        caption = (row[caption_column] or "").strip()
        if caption:
            yield caption


class CaptionTable(torch.utils.data.Dataset):
    """Image-path + caption table (CSV or TSV) as a dataset of ``(image, caption)``.

    The table is read once into two lists of strings (path and caption per row); images
    are opened when an item is asked for.

    Args:
        path: the ``.csv`` / ``.tsv`` file.
        image_column: header of the image-path column.
        caption_column: header of the caption column.
        separator: field separator; ``None`` picks tab for ``.tsv``/``.tab``, else comma.
        image_root: folder that relative image paths are resolved against; defaults to the
            table's folder.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the table has no header or lacks one of the two columns (the message
            lists the columns it has), or ``separator`` is not one character.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        image_column: str = "filepath",
        caption_column: str = "caption",
        separator: str | None = None,
        image_root: str | os.PathLike | None = None,
    ) -> None:
        self.path = Path(path)
        self.separator = _separator(self.path, separator)
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        self.image_column = image_column
        self.caption_column = caption_column
        self.paths: list[str] = []
        self.captions: list[str | None] = []
        rows = _rows(
            self.path, self.separator, image_column=image_column, caption_column=caption_column
        )
        for row in rows:
            self.paths.append(row[image_column] or "")
            self.captions.append(row[caption_column])

    def __len__(self) -> int:
        return len(self.paths)

    def resolve(self, index: int) -> Path:
        """Absolute path of row ``index``'s image (relative paths joined to ``image_root``)."""
        path = Path(self.paths[index]).expanduser()
        return path if path.is_absolute() else self.image_root / path

    def load(self, index: int) -> tuple[Image.Image, str]:
        """Row ``index`` as ``(RGB image, caption)``.

        Raises:
            SampleError: ``missing_caption``, ``empty_caption``, ``missing_file`` or
                ``corrupt_image`` (checked in that order).
        """
        key = f"{self.path.name}#row{index}"
        caption = self.captions[index]
        if caption is None:
            raise SampleError(MISSING_CAPTION, key, f"row has no {self.caption_column!r} field")
        caption = caption.strip()
        if not caption:
            raise SampleError(EMPTY_CAPTION, key)
        file = self.resolve(index)
        try:
            data = file.read_bytes()
        except OSError as exn:
            raise SampleError(MISSING_FILE, key, f"{file}: {type(exn).__name__}") from exn
        return decode_image(data, f"{key} {file.name}"), caption

    def __getitem__(self, index: int) -> tuple[Image.Image, str] | SkippedSample:
        """``(image, caption)``, or a :class:`SkippedSample` if the row is unreadable."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index: got {index}, expected -{len(self)} <= index < {len(self)}")
        try:
            return self.load(index % len(self))
        except SampleError as exn:
            return exn.marker()

    def __repr__(self) -> str:
        return f"CaptionTable({str(self.path)!r}, rows={len(self)}, image_root={str(self.image_root)!r})"
