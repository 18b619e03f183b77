"""Small benchmark datasets in the standard on-disk layouts, drawn from the synthetic data.

[write_benchmark_datasets][manifold_align.evaluate.demo_datasets.write_benchmark_datasets] writes, under one folder, a copy of each layout that
``manifold-align eval --benchmark`` reads, with the bundled synthetic shapes as images (no
download), so the real reading paths can be tried and tested anywhere:

* ``imagenet1k/val/<wnid>/*.JPEG``: ImageNet's folder layout; the first six WordNet ids hold
  the six shapes (the classifier still has all 1,000 ImageNet classes, so a shape model
  scores near chance: the layout is the point, not the number);
* ``colours/<colour>/*.png`` with ``classnames.txt`` and
  ``zeroshot_classification_templates.txt``: a labelled image folder of your own (one-object
  scenes labelled by the object's colour, the synthetic data's colour task and templates);
* ``wds_colours/``: the same in CLIP_benchmark's webdataset layout (``test/0.tar``,
  ``nshards.txt``, ``.webp`` + ``.cls`` records), written with ``webdataset.ShardWriter``
  as ``clip_benchmark_export_wds`` does;
* ``coco/dataset_coco.json`` + ``coco/val2014/*.jpg`` and
  ``flickr30k/dataset_flickr30k.json`` + ``flickr30k/flickr30k-images/*.jpg``: Karpathy
  split files, five captions per image, with ``restval``/``train`` entries to skip.

With ``damaged=True`` one image of ``imagenet1k`` is truncated and one ``coco`` image is
missing, to show that they are counted and left out.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import webdataset as wds
from PIL import Image

from manifold_align.data.synthetic import ZERO_SHOT_TASKS, SyntheticCaptions, SyntheticZeroShot
from manifold_align.evaluate.prompts import imagenet_wnids

__all__ = ["write_benchmark_datasets"]


def _bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {"quality": 95} if fmt == "JPEG" else {}
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _labelled_images(attribute: str, per_class: int, seed: int, image_size: int) -> list[tuple[Image.Image, int]]:
    """``per_class`` one-object scenes of each class of ``attribute``, in class order."""
    classes = len(ZERO_SHOT_TASKS[attribute].classnames)
    data = SyntheticZeroShot(attribute, per_class * classes * 20, seed, image_size)
    found: dict[int, list[Image.Image]] = {c: [] for c in range(classes)}
    for i, label in enumerate(data.targets().tolist()):
        if len(found[label]) < per_class:
            found[label].append(data[i][0])
        if all(len(v) == per_class for v in found.values()):
            break
    return [(image, c) for c in found for image in found[c]]


def _captions(scene) -> list[str]:
    clean = scene.describe(clean=True)
    return [clean, f"a photo of {clean}", f"a drawing of {clean}", f"an image of {clean}",
            scene.describe(clean=False)]


def write_benchmark_datasets(
    out: str | Path,
    *,
    images_per_class: int = 4,
    retrieval_images: int = 30,
    image_size: int = 64,
    seed: int = 0,
    damaged: bool = False,
) -> dict[str, Path]:
    """Write the layouts (see the module docstring) under ``out``.

    Returns:
        ``{"imagenet1k", "colours", "wds_colours", "coco", "flickr30k"}`` -> folder.

    Raises:
        FileExistsError: if ``out`` already holds one of these folders.
    """
    out = Path(out)
    paths = {name: out / name for name in ("imagenet1k", "colours", "wds_colours", "coco", "flickr30k")}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing:
        raise FileExistsError(f"out: {existing} already exist; choose an empty folder")
    wnids = imagenet_wnids()
    for n, (image, c) in enumerate(_labelled_images("shape", images_per_class, seed, image_size)):
        folder = paths["imagenet1k"] / "val" / wnids[c]
        folder.mkdir(parents=True, exist_ok=True)
        data = _bytes(image, "JPEG")
        if damaged and n == 0:
            data = data[: len(data) // 3]
        (folder / f"ILSVRC2012_val_{n + 1:08d}.JPEG").write_bytes(data)

    task = ZERO_SHOT_TASKS["colour"]
    labelled = _labelled_images("colour", images_per_class, seed, image_size)
    for n, (image, c) in enumerate(labelled):
        folder = paths["colours"] / task.classnames[c]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{n:04d}.png").write_bytes(_bytes(image, "PNG"))
    templates = [t.replace("{}", "{c}") for t in task.templates]
    for root in (paths["colours"], paths["wds_colours"]):
        root.mkdir(parents=True, exist_ok=True)
        (root / "classnames.txt").write_text("\n".join(task.classnames) + "\n")
        (root / "zeroshot_classification_templates.txt").write_text("\n".join(templates) + "\n")
    (paths["wds_colours"] / "test").mkdir()
    with wds.ShardWriter(str(paths["wds_colours"] / "test" / "%d.tar"), maxcount=max(1, len(labelled) // 2),
                         verbose=0) as sink:
        for n, (image, c) in enumerate(labelled):
            sink.write({"__key__": f"s{n:07d}", "webp": _bytes(image, "WEBP"), "cls": c})
        shards = sink.shard
    (paths["wds_colours"] / "test" / "nshards.txt").write_text(f"{shards}\n")

    data = SyntheticCaptions("retrieval", retrieval_images + 10, seed + 1, image_size)
    for name, folder, prefix in (("coco", "val2014", "COCO_val2014_"), ("flickr30k", "flickr30k-images", "")):
        entries = []
        (paths[name] / folder).mkdir(parents=True)
        for i in range(len(data)):
            scene = data.scene(i)
            filename = f"{prefix}{i:012d}.jpg"
            split = "test" if i < retrieval_images else ("restval" if i % 2 else "train")
            if not (damaged and name == "coco" and i == 1):
                (paths[name] / folder / filename).write_bytes(_bytes(data.render(scene), "JPEG"))
            entry = {"filename": filename, "split": split, "imgid": i,
                     "sentences": [{"raw": text, "imgid": i} for text in _captions(scene)]}
            if name == "coco":
                entry["filepath"] = folder
            entries.append(entry)
        (paths[name] / f"dataset_{name}.json").write_text(json.dumps({"images": entries, "dataset": name}))
    return paths
