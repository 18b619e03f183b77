"""A CSV/TSV table of image paths and captions as a map-style dataset.

The table has a header row; two of its columns name the image file and the caption
(``filepath`` and ``caption`` by default, OpenCLIP's ``--csv-img-key`` / ``--csv-caption-key``
convention). The separator follows the suffix (``.tsv`` / ``.tab``: tab, otherwise comma)
unless given. A relative path is resolved against ``image_root`` if given, else against
the table's own folder.

Item ``i`` is ``(PIL RGB image, caption)``. A row that cannot be used (a row the CSV
parser cannot read, missing, empty or non-UTF-8 caption, missing file, undecodable or
oversized image) returns a [SkippedSample][manifold_align.data.skipped.SkippedSample] marker
instead, which [Collate][manifold_align.data.collate.Collate] counts; one bad row never makes
the whole table unusable, nothing raises and nothing is dropped silently. The file is read
as UTF-8 (a leading byte-order mark is ignored); bytes that are not UTF-8 are kept through
``surrogateescape``, so they spoil only their own row (and a non-UTF-8 file name still
names its file).
"""

from __future__ import annotations

import csv
import os
from array import array
from collections.abc import Iterator, Sequence
from itertools import accumulate
from pathlib import Path

import torch
from PIL import Image

from manifold_align.data.skipped import (
    BAD_CAPTION,
    BAD_ROW,
    EMPTY_CAPTION,
    MISSING_CAPTION,
    MISSING_FILE,
    SampleError,
    SkippedSample,
)
from manifold_align.data.transforms import MAX_IMAGE_PIXELS, decode_image

__all__ = ["CaptionTable", "StringColumn", "read_captions"]


def _separator(path: Path, separator: str | None) -> str:
    if separator is None:
        return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    if len(separator) != 1:
        raise ValueError(
            f"separator: got {separator!r}, expected one character such as ',' or '\\t'"
        )
    return separator


def _rows(
    path: Path, separator: str, **columns: str
) -> Iterator[tuple[int, dict[str, str | None] | str]]:
    """``(line, row)`` for each data row, after checking that every named column exists.

    ``row`` maps each named column to its field (``None`` when the row is too short), or is
    the parser's error message for a row it cannot read (e.g. a field longer than
    ``csv.field_size_limit()``); parsing goes on with the next line. ``line`` is the row's
    first line in the file (the header is line 1). Blank lines are passed over.
    """
    if not path.is_file():
        raise FileNotFoundError(f"path: {str(path)!r} is not a file")
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle, delimiter=separator)
        try:
            header = next(reader, None)
        except csv.Error as exn:
            raise ValueError(f"path: {str(path)!r} has an unreadable header row: {exn}") from None
        if not header:
            raise ValueError(f"path: {str(path)!r} has no header row")
        index = {}
        for name, column in columns.items():
            if column not in header:
                raise ValueError(
                    f"{name}: column {column!r} is not in {str(path)!r}; "
                    f"its columns are {header} (separator {separator!r})"
                )
            index[column] = header.index(column)
        while True:
            line = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exn:
                yield line, f"line {line}: {exn}"
                if reader.line_num < line:  # nothing consumed: the parser cannot go on
                    return
                continue
            if fields:
                yield line, {c: fields[i] if i < len(fields) else None for c, i in index.items()}


_CHUNK = 1 << 16  # rows parsed before they are packed


class StringColumn(Sequence):
    """A column of strings (or ``None``) packed into one byte buffer, for millions of rows.

    Row ``i`` is ``buffer[end[i-1]:end[i]]``, its text encoded as UTF-8 with
    ``surrogateescape`` (so bytes that are not UTF-8 come back unchanged) and decoded when
    asked for: about one byte per character plus nine per row, and no Python object per row,
    so a forked ``DataLoader`` worker that reads every row copies nothing (a list's strings
    are copied page by page as their reference counts are written).
    """

    def __init__(self) -> None:
        self._bytes = bytearray()
        self._ends = array("q")
        self._none = bytearray()  # 1 where the row is None

    def extend(self, texts: Sequence[str | None]) -> None:
        """Add rows (a chunk at a time is faster than one by one)."""
        rows = [t or "" for t in texts]
        blob = "".join(rows).encode("utf-8", "surrogateescape")
        sizes = map(len, rows)  # characters: bytes too when the text is ASCII
        if len(blob) != sum(map(len, rows)):
            sizes = (len(t.encode("utf-8", "surrogateescape")) for t in rows)
        ends = accumulate(sizes, initial=len(self._bytes))
        next(ends)  # the initial value: where the previous rows end
        self._ends.extend(ends)
        self._bytes += blob
        self._none += bytes(t is None for t in texts)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"index: got {index}, expected -{len(self)} <= index < {len(self)}")
        index %= len(self)
        if self._none[index]:
            return None
        start = self._ends[index - 1] if index else 0
        return self._bytes[start:self._ends[index]].decode("utf-8", "surrogateescape")

    def __repr__(self) -> str:
        return f"StringColumn(rows={len(self)}, bytes={len(self._bytes)})"


def _not_utf8(text: str) -> str | None:
    """Where ``text`` (decoded with ``surrogateescape``) held bytes that are not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exn:
        byte = ord(text[exn.start]) - 0xDC00
        return f"byte 0x{byte:02x} at character {exn.start} is not UTF-8"
    return None


def read_captions(
    path: str | os.PathLike, *, caption_column: str = "caption", separator: str | None = None
) -> Iterator[str]:
    """The non-empty captions of a table, stripped, without opening any image.

    Meant as a tokenizer corpus ([train][manifold_align.data.tokenizer.Tokenizer.train]);
    rows without a usable caption (none, empty, not UTF-8, or a row the parser cannot
    read) are not samples here, so they are passed over.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the table has no header, lacks ``caption_column`` or ``separator``
            is not one character.
    """
    path = Path(path)
    for _, row in _rows(path, _separator(path, separator), caption_column=caption_column):
        if isinstance(row, str):
            continue  # an unreadable row: CaptionTable counts it when training reads it
        caption = (row[caption_column] or "").strip()
        if caption and _not_utf8(caption) is None:
            yield caption


class CaptionTable(torch.utils.data.Dataset):
    """Image-path + caption table (CSV or TSV) as a dataset of ``(image, caption)``.

    The table is read once into two packed string columns (`StringColumn`: path and
    caption per row, about the file's size in memory and nothing a forked worker copies),
    with the file line of each row and the parser's error for rows it cannot read; images are
    opened when an item is asked for.

    Args:
        path: the ``.csv`` / ``.tsv`` file.
        image_column: header of the image-path column.
        caption_column: header of the caption column.
        separator: field separator; ``None`` picks tab for ``.tsv``/``.tab``, else comma.
        image_root: folder that relative image paths are resolved against; defaults to the
            table's folder.
        max_image_pixels: images whose header declares more pixels are skipped undecoded
            (reason ``too_many_pixels``); ``None``: no limit of ours.

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
        max_image_pixels: int | None = MAX_IMAGE_PIXELS,
    ) -> None:
        self.path = Path(path)
        self.max_image_pixels = max_image_pixels
        self.separator = _separator(self.path, separator)
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        self.image_column = image_column
        self.caption_column = caption_column
        self.paths = StringColumn()
        self.captions = StringColumn()
        self.lines = array("q")
        self.errors: dict[int, str] = {}
        rows = _rows(
            self.path, self.separator, image_column=image_column, caption_column=caption_column
        )
        paths: list[str] = []
        captions: list[str | None] = []
        for line, row in rows:
            if isinstance(row, str):
                self.errors[len(self.lines)] = row
                row = {image_column: None, caption_column: None}
            self.lines.append(line)
            paths.append(row[image_column] or "")
            captions.append(row[caption_column])
            if len(paths) == _CHUNK:
                self.paths.extend(paths)
                self.captions.extend(captions)
                paths, captions = [], []
        self.paths.extend(paths)
        self.captions.extend(captions)

    def __len__(self) -> int:
        return len(self.paths)

    def resolve(self, index: int) -> Path:
        """Absolute path of row ``index``'s image (relative paths joined to ``image_root``)."""
        path = Path(self.paths[index]).expanduser()
        return path if path.is_absolute() else self.image_root / path

    def key(self, index: int) -> str:
        """How skip counts name row ``index``: ``pairs.csv#row3``."""
        return f"{self.path.name}#row{index}"

    def caption(self, index: int) -> str:
        """Row ``index``'s caption, stripped, without opening its image.

        Raises:
            SampleError: ``bad_row``, ``missing_caption``, ``empty_caption`` or
                ``bad_caption`` (checked in that order); the detail gives the file line.
        """
        key, line = self.key(index), f"line {self.lines[index]}"
        if index in self.errors:
            raise SampleError(BAD_ROW, key, self.errors[index])
        caption = self.captions[index]
        if caption is None:
            raise SampleError(
                MISSING_CAPTION, key, f"{line}: row has no {self.caption_column!r} field"
            )
        caption = caption.strip()
        if not caption:
            raise SampleError(EMPTY_CAPTION, key, line)
        not_utf8 = _not_utf8(caption)
        if not_utf8 is not None:
            raise SampleError(BAD_CAPTION, key, f"{line}: caption {not_utf8}")
        return caption

    def load(self, index: int) -> tuple[Image.Image, str]:
        """Row ``index`` as ``(RGB image, caption)``.

        Raises:
            SampleError: the caption's errors (`caption`), then ``missing_file``,
                ``too_many_pixels`` or ``corrupt_image``; the detail gives the row's line in
                the file.
        """
        key, line = self.key(index), f"line {self.lines[index]}"
        caption = self.caption(index)
        file = self.resolve(index)
        try:
            data = file.read_bytes()
        except OSError as exn:
            raise SampleError(MISSING_FILE, key, f"{line}: {file}: {type(exn).__name__}") from exn
        return decode_image(data, f"{key} {file.name}", self.max_image_pixels), caption

    def __getitem__(self, index: int) -> tuple[Image.Image, str] | SkippedSample:
        """``(image, caption)``, or a [SkippedSample][manifold_align.data.skipped.SkippedSample] if the row is unreadable."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index: got {index}, expected -{len(self)} <= index < {len(self)}")
        try:
            return self.load(index % len(self))
        except SampleError as exn:
            return exn.marker()

    def __repr__(self) -> str:
        return f"CaptionTable({str(self.path)!r}, rows={len(self)}, image_root={str(self.image_root)!r})"
