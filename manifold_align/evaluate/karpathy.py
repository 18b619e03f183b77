"""COCO and Flickr30k retrieval in Karpathy's split files (``dataset_coco.json``, ...).

Karpathy and Fei-Fei's split files are one JSON object::

    {"dataset": "coco", "images": [
        {"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg",
         "split": "test", "sentences": [{"raw": "A man with a red helmet ..."}, ...]},
        ...]}

(``filepath`` only in COCO's). The ``test`` split holds 5,000 images for COCO (about 25,000
captions: a few images have 6 or 7) and 1,000 for Flickr30k (exactly 5 each). Each image is
looked for, in order, at ``<images>/<filepath>/<filename>``, ``<images>/<filename>`` and
the same under ``images/``, ``flickr30k-images/`` or ``val2014/`` of the JSON's folder,
where ``<images>`` is the folder given (default: the JSON's folder). A file found nowhere
is still listed: reading it later gives a ``missing_file`` marker, counted, not raised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KARPATHY_FILES", "KarpathySplit", "read_karpathy"]

KARPATHY_FILES: dict[str, str] = {
    "coco": "dataset_coco.json",
    "flickr30k": "dataset_flickr30k.json",
    "flickr8k": "dataset_flickr8k.json",
}
"""Benchmark name -> the split file looked for in its folder."""

_SUBFOLDERS = ("", "images", "flickr30k-images", "flickr30k_images", "val2014")


@dataclass(frozen=True)
class KarpathySplit:
    """One split of a Karpathy file.

    Attributes:
        images: image paths, ``N``.
        captions: every caption of every image, image-major, ``M``.
        caption_to_image: ``M`` image indices (caption ``c`` describes ``images[g[c]]``).
    """

    images: tuple[Path, ...]
    captions: tuple[str, ...]
    caption_to_image: tuple[int, ...]


def _locate(entry: dict, roots: list[Path]) -> Path:
    filename = entry["filename"]
    rel = [Path(entry["filepath"]) / filename] if entry.get("filepath") else []
    rel.append(Path(filename))
    for root in roots:
        for sub in _SUBFOLDERS:
            for r in rel:
                candidate = root / sub / r
                if candidate.is_file():
                    return candidate
    return roots[0] / rel[0]


def read_karpathy(annotations: str | Path, images: str | Path | None = None, split: str = "test") -> KarpathySplit:
    """The images and captions of ``split`` in a Karpathy split file.

    Args:
        annotations: the JSON file.
        images: the folder the images are under (default: the JSON's folder).
        split: ``"test"``, ``"val"``, ``"train"`` or ``"restval"``.

    Raises:
        ValueError: a missing or malformed file (naming the entry), no image in ``split``, or
            an image of the split without a caption.
    """
    path = Path(annotations)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"path: {path} does not exist (a Karpathy split file such as dataset_coco.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"path: cannot read {path} as JSON ({exc})") from None
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"path: {path} has no 'images' list (not a Karpathy split file)")
    roots = [Path(images)] if images is not None else []
    roots.append(path.parent)
    files: list[Path] = []
    captions: list[str] = []
    owner: list[int] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "filename" not in entry or "sentences" not in entry:
            raise ValueError(f"path: {path} images[{i}]: expected 'filename' and 'sentences'")
        if entry.get("split") != split:
            continue
        texts = [s.get("raw", "").strip() for s in entry["sentences"] if isinstance(s, dict)]
        texts = [t for t in texts if t]
        if not texts:
            raise ValueError(f"path: {path} images[{i}] ({entry['filename']}): no caption")
        captions.extend(texts)
        owner.extend([len(files)] * len(texts))
        files.append(_locate(entry, roots))
    if not files:
        raise ValueError(f"path: {path} has no image in split {split!r}")
    return KarpathySplit(tuple(files), tuple(captions), tuple(owner))
