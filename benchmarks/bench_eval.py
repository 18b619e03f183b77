"""Evaluation against CLIP_benchmark: the same numbers, and the time to get them.

Two parts, both on the bundled synthetic images, in one process, with the same threads:

* **Agreement.** A ``tiny`` (``Sphere(128)``) and a ``tiny-oblique`` (``Oblique(8, 16)``) model
  fitted for a few steps (:func:`fit_few_steps`); zero-shot colour classification (7 classes,
  4 templates) and two-caption retrieval written in CLIP_benchmark's webdataset layout
  (:func:`write_synthetic_wds`); each evaluated by ``clip_benchmark`` 1.6.2 (its Python API,
  through our loader ``manifold_align.cli.clip_benchmark``, fp32: ``amp=False``) and by
  ``manifold_align.evaluate`` on the same images and prompts. For the oblique model also
  with one template, and with our manifold-mean classifier handed to clip_benchmark
  (``--load_clfs``, what ``eval --manifold-mean`` does). The test
  ``tests/peers/test_clip_benchmark.py`` checks the same functions.
* **Speed.** The same random-init model encodes the same images and prompts with ours
  (``encode_images``, ``build_classifier_from_prompts``, ``classify``; ``encode_captions``,
  ``retrieval_recall``) and with clip_benchmark's functions (``zero_shot_classifier``,
  ``run_classification``, ``accuracy``; ``zeroshot_retrieval.evaluate``), same batch size,
  both fed ready-made batches (no data loading on either side). The two are timed
  round-robin, order swapped each round; the median over rounds, in wall and process CPU
  time. ``ratio = ours / clip_benchmark``: below 1, ours is faster.

Usage (in .venv-peers)::

    python benchmarks/bench_eval.py --threads 1 --json benchmarks/results/eval.json
    python benchmarks/bench_eval.py --quick          # seconds
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from clip_benchmark.datasets.builder import build_dataset
from clip_benchmark.metrics import zeroshot_classification as cb_zs
from clip_benchmark.metrics import zeroshot_retrieval as cb_rt
from clip_benchmark.models import load_clip

from manifold_align.cli.clip_benchmark import (
    MODEL_TYPE,
    FlatPoints,
    class_prompts,
    load_for_clip_benchmark,
    manifold_classifier,
    register,
)
from manifold_align.config import load_config, to_dict
from manifold_align.data.synthetic import COLOURS, SHAPES, ZERO_SHOT_TASKS, SyntheticCaptions
from manifold_align.data.tokenizer import default_tokenizer
from manifold_align.data.transforms import ImageTransform
from manifold_align.evaluate import (
    build_classifier_from_prompts,
    classify,
    encode_captions,
    encode_images,
    retrieval_recall,
)
from manifold_align.models import build_model, model_config
from manifold_align.train.checkpoint import save_checkpoint
from manifold_align.train.config import RunConfig
from manifold_align.train.run import build_run_model

ATTRIBUTE = "colour"
"""The zero-shot task of the agreement part: 7 colours, learnt within a few steps."""
TEMPLATES = [t.replace("{}", "{c}") for t in ZERO_SHOT_TASKS[ATTRIBUTE].templates]
"""Its templates in CLIP_benchmark's ``{c}`` form (``"a {c} shape"``, ...)."""
CLASSIFY_DIR, RETRIEVAL_DIR = "synthetic_colours", "synthetic_captions"
KS = (1, 5, 10)


# --- data in CLIP_benchmark's webdataset layout -------------------------------------------


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _write_shard(folder: Path, samples: list[dict[str, bytes]]) -> None:
    """``folder/test/0.tar`` (sample ``i`` as ``s{i}.{ext}``) and ``folder/test/nshards.txt``."""
    (folder / "test").mkdir(parents=True)
    with tarfile.open(folder / "test" / "0.tar", "w") as tar:
        for i, sample in enumerate(samples):
            for ext, payload in sample.items():
                info = tarfile.TarInfo(f"s{i:06d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    (folder / "test" / "nshards.txt").write_text("1\n")


def write_synthetic_wds(root: Path, n_classify: int, n_retrieval: int) -> dict[str, Any]:
    """Write both datasets under ``root``; return the same data in memory.

    ``root/synthetic_colours``: ``classnames.txt``, ``zeroshot_classification_templates.txt``
    and ``test/0.tar`` with ``png`` + ``cls`` (the colour label) per zero-shot image.
    ``root/synthetic_captions``: ``dataset_type.txt`` = ``retrieval`` and ``test/0.tar`` with
    ``png`` + ``txt`` (two captions, one a line: the clean caption and ``"a picture of ..."``).

    Returns:
        ``root``, ``images`` (PIL), ``labels`` ``(N,)``, ``classnames``, ``rt_images`` (PIL),
        ``captions`` (two per image).
    """
    zs = SyntheticCaptions("zeroshot", n_classify, 0, 64, 0.0)
    images, labels = [], []
    for i in range(n_classify):
        scene = zs.scene(i)
        images.append(zs.render(scene))
        labels.append(scene.labels()[ATTRIBUTE])
    classnames = list(ZERO_SHOT_TASKS[ATTRIBUTE].classnames)
    folder = root / CLASSIFY_DIR
    _write_shard(folder, [{"png": _png(im), "cls": str(y).encode()}
                          for im, y in zip(images, labels, strict=True)])
    (folder / "classnames.txt").write_text("\n".join(classnames) + "\n")
    (folder / "zeroshot_classification_templates.txt").write_text("\n".join(TEMPLATES) + "\n")

    rt = SyntheticCaptions("retrieval", n_retrieval, 0, 64, 0.0)
    rt_images = [rt.render(rt.scene(i)) for i in range(n_retrieval)]
    captions = [[rt.clean_caption(i), f"a picture of {rt.clean_caption(i)}"]
                for i in range(n_retrieval)]
    folder = root / RETRIEVAL_DIR
    _write_shard(folder, [{"png": _png(im), "txt": "\n".join(c).encode()}
                          for im, c in zip(rt_images, captions, strict=True)])
    (folder / "dataset_type.txt").write_text("retrieval\n")
    return {"root": root, "images": images, "labels": torch.tensor(labels),
            "classnames": classnames, "rt_images": rt_images, "captions": captions}


def fit_few_steps(root: Path, name: str, data: dict[str, Any], steps: int = 20,
                  batch: int = 32, lr: float = 5e-4) -> Path:
    """A ``name`` model after ``steps`` AdamW steps, saved as a run folder (one checkpoint).

    Fitted to the zero-shot images themselves, each with one of its class's prompts: the
    comparison needs rankings away from chance, not a model that generalises.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = load_config(RunConfig, None, [f"model.name={name}", "train.device=cpu"])
        tokenizer = default_tokenizer(model_config(name).context_length)
        torch.manual_seed(0)
        model = build_run_model(config, tokenizer)
        transform = ImageTransform(model.vision.image_size)
        prompts = [TEMPLATES[i % len(TEMPLATES)].format(c=data["classnames"][y])
                   for i, y in enumerate(data["labels"].tolist())]
        images = torch.stack([transform(im) for im in data["images"]])
        tokens = tokenizer(prompts)
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(steps):
            idx = torch.randperm(len(prompts), generator=gen)[:batch]
            loss = model(images[idx], tokens[idx]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.temperature.clamp_()
    finally:
        torch.set_num_threads(threads)
    run = root / name
    tokenizer.save(root / f"{name}-tokenizer.json")
    save_checkpoint(run / "checkpoints", steps, model, {}, {}, to_dict(config),
                    files={"tokenizer.json": root / f"{name}-tokenizer.json"})
    return run


# --- the two evaluations ------------------------------------------------------------------


def _cb_loader(dataset, batch: int):
    return torch.utils.data.DataLoader(dataset.batched(batch), batch_size=None, num_workers=0)


def cb_classification(run: Path, data: dict[str, Any], templates: list[str] | None = None,
                      batch: int = 32) -> dict[str, float]:
    """clip_benchmark's zero-shot evaluation, as its command line runs it, in fp32."""
    register()
    model, transform, tokenizer = load_clip(MODEL_TYPE, "auto", str(run), None, "cpu")
    ds = build_dataset(f"wds/{CLASSIFY_DIR}", root=str(data["root"] / CLASSIFY_DIR),
                       transform=transform, split="test")
    return cb_zs.evaluate(model, _cb_loader(ds, batch), tokenizer, ds.classes,
                          templates or ds.templates, device="cpu", amp=False)


def cb_retrieval(run: Path, data: dict[str, Any], batch: int = 32) -> dict[str, float]:
    """clip_benchmark's retrieval evaluation (R@1, 5, 10), in fp32."""
    register()
    model, transform, tokenizer = load_clip(MODEL_TYPE, "auto", str(run), None, "cpu")
    ds = build_dataset(f"wds/{RETRIEVAL_DIR}", root=str(data["root"] / RETRIEVAL_DIR),
                       transform=transform, split="test", task="zeroshot_retrieval")
    return cb_rt.evaluate(model, _cb_loader(ds, batch), tokenizer, device="cpu", amp=False,
                          recall_k_list=list(KS))


def cb_manifold_mean_classification(run: Path, data: dict[str, Any]) -> dict[str, float]:
    """clip_benchmark's metrics with our manifold-mean classifier (``--load_clfs``)."""
    flat, transform, tokenizer = load_for_clip_benchmark("auto", str(run))
    weights = manifold_classifier(flat, tokenizer, data["classnames"], TEMPLATES)
    images = torch.stack([transform(im) for im in data["images"]])
    logits, target = cb_zs.run_classification(flat, weights, [(images, data["labels"])],
                                              "cpu", amp=False)
    acc1, acc5 = cb_zs.accuracy(logits, target, topk=(1, 5))
    from sklearn.metrics import balanced_accuracy_score

    return {"acc1": acc1, "acc5": acc5,
            "mean_per_class_recall": balanced_accuracy_score(target, logits.argmax(1))}


def ours_classification(run: Path, data: dict[str, Any], templates: list[str] = TEMPLATES,
                        batch: int = 32) -> dict[str, float]:
    """``manifold_align.evaluate``: class point = manifold mean of its prompts; classify."""
    flat, transform, tokenizer = load_for_clip_benchmark("auto", str(run))
    model = flat.model
    images = torch.stack([transform(im) for im in data["images"]])
    points = encode_images(model, images, batch_size=batch)
    classes = build_classifier_from_prompts(
        model.encode_text, tokenizer, class_prompts(data["classnames"], templates), model.manifold
    )
    r = classify(points, classes, model.manifold, data["labels"], ks=(1, 5))
    recalls = [v for v in r["per_class_top1"] if v is not None]
    return {"acc1": r["top1"], "acc5": r["top5"],
            "mean_per_class_recall": sum(recalls) / len(recalls)}


def ours_retrieval(run: Path, data: dict[str, Any], batch: int = 32) -> dict[str, float]:
    """``retrieval_recall`` under clip_benchmark's names: its ``image_retrieval`` is our
    text -> image, its ``text_retrieval`` our image -> text."""
    flat, transform, tokenizer = load_for_clip_benchmark("auto", str(run))
    model = flat.model
    images = torch.stack([transform(im) for im in data["rt_images"]])
    texts = [c for group in data["captions"] for c in group]
    owner = torch.tensor([i for i, group in enumerate(data["captions"]) for _ in group])
    x = encode_images(model, images, batch_size=batch)
    y = encode_captions(model, tokenizer, texts, batch_size=batch)
    r = retrieval_recall(x, y, model.manifold, ks=KS, caption_to_image=owner)
    out = {}
    for k in KS:
        out[f"image_retrieval_recall@{k}"] = r[f"text_to_image@{k}"]
        out[f"text_retrieval_recall@{k}"] = r[f"image_to_text@{k}"]
    return out


def top1_disagreement(run: Path, data: dict[str, Any]) -> float:
    """Share of images whose top-1 class differs: clip_benchmark's flat-mean classifier vs
    our manifold-mean one (several templates)."""
    flat, transform, tokenizer = load_for_clip_benchmark("auto", str(run))
    with torch.no_grad():
        theirs = cb_zs.zero_shot_classifier(flat, tokenizer, data["classnames"], TEMPLATES,
                                            "cpu", amp=False)
        ours = manifold_classifier(flat, tokenizer, data["classnames"], TEMPLATES)
        images = torch.stack([transform(im) for im in data["images"]])
        x = F.normalize(flat.encode_image(images), dim=-1)
    return ((x @ theirs).argmax(1) != (x @ ours).argmax(1)).double().mean().item()


def agreement(root: Path, n_classify: int, n_retrieval: int, steps: int) -> dict[str, Any]:
    """Every row of the agreement table: ``{case, metric, ours, clip_benchmark, tolerance}``."""
    data = write_synthetic_wds(root, n_classify, n_retrieval)
    counts = torch.bincount(data["labels"])
    counts = counts[counts > 0]
    tol_cls = {"acc1": 1 / n_classify, "acc5": 1 / n_classify,
               "mean_per_class_recall": 1 / (len(counts) * counts.min().item())}
    tol_rt = {f"{d}_retrieval_recall@{k}": 1 / (2 * n_retrieval if d == "image" else n_retrieval)
              for k in KS for d in ("image", "text")}
    rows = []

    def add(case: str, ours: dict, theirs: dict, tol: dict) -> None:
        for key, t in tol.items():
            rows.append({"case": case, "metric": key, "ours": ours[key],
                         "clip_benchmark": theirs[key], "tolerance": t})

    sphere = fit_few_steps(root, "tiny", data, steps=steps)
    oblique = fit_few_steps(root, "tiny-oblique", data, steps=steps)
    add("tiny, Sphere(128), 4 templates", ours_classification(sphere, data),
        cb_classification(sphere, data), tol_cls)
    add("tiny, Sphere(128)", ours_retrieval(sphere, data), cb_retrieval(sphere, data), tol_rt)
    add("tiny-oblique, Oblique(8, 16)", ours_retrieval(oblique, data),
        cb_retrieval(oblique, data), tol_rt)
    one = TEMPLATES[1:2]
    add("tiny-oblique, 1 template", ours_classification(oblique, data, one),
        cb_classification(oblique, data, one), tol_cls)
    ours4 = ours_classification(oblique, data)
    add("tiny-oblique, 4 templates, clip_benchmark's flat mean", ours4,
        cb_classification(oblique, data), tol_cls)
    add("tiny-oblique, 4 templates, --manifold-mean", ours4,
        cb_manifold_mean_classification(oblique, data), tol_cls)
    return {"rows": rows, "oblique_top1_disagreement": top1_disagreement(oblique, data),
            "n_classify": n_classify, "n_retrieval": n_retrieval,
            "captions_per_image": 2, "classes": len(data["classnames"]),
            "templates": len(TEMPLATES), "fit_steps": steps}


# --- speed --------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def speed(name: str, n_images: int, batch: int, rounds: int) -> dict[str, Any]:
    """Median wall/CPU seconds of both evaluations of one random-init ``name`` model.

    Zero-shot: ``len(SHAPES) x len(COLOURS)`` classes ("red star", ...), 4 templates,
    ``n_images`` images; retrieval: ``n_images`` images, one caption each.
    """
    tokenizer = default_tokenizer(model_config(name).context_length)
    torch.manual_seed(0)
    model = build_model(name, vocab_size=tokenizer.vocab_size, eot_id=tokenizer.eot_id).eval()
    flat = FlatPoints(model).eval()
    ds = SyntheticCaptions("retrieval", n_images, 1, model.vision.image_size, 0.0)
    transform = ImageTransform(model.vision.image_size)
    images = torch.stack([transform(ds.render(ds.scene(i))) for i in range(n_images)])
    captions = [ds.clean_caption(i) for i in range(n_images)]
    classnames = [f"{c} {s}" for s in SHAPES for c in COLOURS]
    templates = ["a {c}", "a photo of a {c}", "a drawing of a {c}", "an image of a {c}"]
    labels = torch.arange(n_images) % len(classnames)
    batches = [(images[i:i + batch], labels[i:i + batch]) for i in range(0, n_images, batch)]
    rt_batches = [(images[i:i + batch], [[c] for c in captions[i:i + batch]])
                  for i in range(0, n_images, batch)]

    def ours_zs():
        classes = build_classifier_from_prompts(
            model.encode_text, tokenizer, class_prompts(classnames, templates), model.manifold,
            batch_size=batch)
        points = encode_images(model, images, batch_size=batch)
        return classify(points, classes, model.manifold, labels, ks=(1, 5))

    def theirs_zs():
        clf = cb_zs.zero_shot_classifier(flat, tokenizer, classnames, templates, "cpu",
                                         amp=False)
        logits, target = cb_zs.run_classification(flat, clf, batches, "cpu", amp=False)
        return cb_zs.accuracy(logits, target, topk=(1, 5))

    def ours_rt():
        x = encode_images(model, images, batch_size=batch)
        y = encode_captions(model, tokenizer, captions, batch_size=batch)
        return retrieval_recall(x, y, model.manifold, ks=KS)

    def theirs_rt():
        return cb_rt.evaluate(flat, rt_batches, tokenizer, "cpu", amp=False,
                              recall_k_list=list(KS))

    out = {"model": name, "manifold": repr(model.manifold), "images": n_images,
           "classes": len(classnames), "templates": len(templates), "batch": batch}
    for task, pair in (("zeroshot", (ours_zs, theirs_zs)), ("retrieval", (ours_rt, theirs_rt))):
        times: dict[str, list[tuple[float, float]]] = {"ours": [], "clip_benchmark": []}
        with torch.no_grad():
            for fn in pair:  # warm-up
                fn()
            for r in range(rounds):
                order = [("ours", pair[0]), ("clip_benchmark", pair[1])]
                for who, fn in order[:: 1 if r % 2 == 0 else -1]:
                    times[who].append(_timed(fn))
        for who, ts in times.items():
            out[f"{task}_{who}_s"] = statistics.median(t[0] for t in ts)
            out[f"{task}_{who}_cpu_s"] = statistics.median(t[1] for t in ts)
        out[f"{task}_ratio"] = out[f"{task}_ours_s"] / out[f"{task}_clip_benchmark_s"]
        out[f"{task}_ratio_cpu"] = out[f"{task}_ours_cpu_s"] / out[f"{task}_clip_benchmark_cpu_s"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1)")
    parser.add_argument("--images", type=int, default=None, help="speed: images (512; quick 64)")
    parser.add_argument("--batch", type=int, default=64, help="batch size of both sides")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (5; quick 1)")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_images = args.images or (64 if args.quick else 512)
    rounds = args.rounds or (1 if args.quick else 5)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        agree = agreement(Path(tmp), 56 if args.quick else 140, 24 if args.quick else 60,
                          steps=4 if args.quick else 20)
    results = [speed(name, n_images, args.batch, rounds) for name in ("tiny", "tiny-oblique")]
    out = {
        "meta": {"threads": torch.get_num_threads(), "torch": torch.__version__,
                 "clip_benchmark": _version("clip-benchmark"), "cores": os.cpu_count(),
                 "load_average_at_start": load, "rounds": rounds, "quick": args.quick},
        "agreement": agree,
        "speed": results,
    }
    print("| case | metric | ours | clip_benchmark |")
    for r in agree["rows"]:
        print(f"| {r['case']} | {r['metric']} | {r['ours']:.4f} | {r['clip_benchmark']:.4f} |")
    print(f"oblique top-1 disagreement, flat vs manifold mean: "
          f"{agree['oblique_top1_disagreement']:.4f}")
    for r in results:
        print(f"{r['model']}: zero-shot ours {r['zeroshot_ours_s']:.3f} s, clip_benchmark "
              f"{r['zeroshot_clip_benchmark_s']:.3f} s (ratio {r['zeroshot_ratio']:.2f}); "
              f"retrieval ours {r['retrieval_ours_s']:.3f} s, clip_benchmark "
              f"{r['retrieval_clip_benchmark_s']:.3f} s (ratio {r['retrieval_ratio']:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


def _version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
