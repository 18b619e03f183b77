"""Standard benchmarks on disk: layouts, bundled names, streamed metrics, errors, the command."""

from __future__ import annotations

import json
import math

import pytest
import torch

from manifold_align import cli
from manifold_align.config import from_dict, load_config, to_dict
from manifold_align.data.tokenizer import default_tokenizer
from manifold_align.data.transforms import ImageTransform, decode_image
from manifold_align.evaluate.benchmarks import open_benchmark, parse_benchmark
from manifold_align.evaluate.demo_datasets import write_benchmark_datasets
from manifold_align.evaluate.encode import encode_captions, encode_images, evaluating
from manifold_align.evaluate.prompts import (
    BUNDLED_TEMPLATES,
    bundled_classnames,
    bundled_templates,
    imagenet_wnids,
)
from manifold_align.evaluate.report import update_eval_json
from manifold_align.evaluate.retrieval import retrieval_recall
from manifold_align.evaluate.standard import evaluate_benchmarks, retrieval_chance
from manifold_align.evaluate.zeroshot import ZeroShotCounts, build_classifier, classify
from manifold_align.train.checkpoint import save_checkpoint
from manifold_align.train.config import RunConfig
from manifold_align.train.metrics import read_metrics
from manifold_align.train.run import build_run_model, train

MICRO = {
    "image_size": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1,
    "vision_heads": 2, "text_width": 16, "text_layers": 1, "text_heads": 2, "tokens": 4,
    "token_dim": 8,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_benchmark_datasets(tmp_path_factory.mktemp("bench"), images_per_class=3,
                                    retrieval_images=12, image_size=24, damaged=True)


@pytest.fixture(scope="module")
def model_and_tokenizer():
    config = from_dict(RunConfig, {"model": {"name": "tiny-oblique", "overrides": MICRO}})
    tokenizer = default_tokenizer(32)
    torch.manual_seed(0)
    return build_run_model(config, tokenizer).eval(), tokenizer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    root = tmp_path_factory.mktemp("run")
    config = from_dict(RunConfig, {"model": {"name": "tiny-oblique", "overrides": MICRO},
                                   "eval": {"batch_size": 16}, "train": {"device": "cpu"}})
    tokenizer.save(root / "tokenizer.json")
    save_checkpoint(root / "checkpoints", 3, model, {}, {}, to_dict(config),
                    files={"tokenizer.json": root / "tokenizer.json"})
    return root


# ------------------------------------------------------------------------- bundled data

def test_bundled_names_and_templates_are_the_standard_sets():
    names = bundled_classnames("imagenet1k")
    wnids = imagenet_wnids()
    assert len(names) == len(wnids) == 1000 and wnids == sorted(wnids)
    assert names[:3] == ["tench", "goldfish", "great white shark"] and wnids[0] == "n01440764"
    repeats = {n for n in names if names.count(n) > 1}
    assert repeats == {"missile", "sunglasses"}  # as in OpenAI's list, kept on purpose
    assert len(bundled_templates("imagenet1k")) == 80
    seven = bundled_templates("imagenet1k-7")
    assert len(seven) == 7 and set(seven) <= set(bundled_templates("imagenet1k"))
    assert len(bundled_classnames("cifar10")) == 10 and len(bundled_classnames("cifar100")) == 100
    assert len(set(bundled_classnames("cifar100"))) == 100
    for name in BUNDLED_TEMPLATES:
        assert all(t.count("{}") == 1 for t in bundled_templates(name))


# ------------------------------------------------------------------------------ metrics

def test_zeroshot_counts_give_topk_and_mean_per_class_recall():
    # 4 images, 3 classes; ranks of the true class: 0, 1, 0, 2
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.2]])
    labels = torch.tensor([0, 1, 1, 2])
    counts = ZeroShotCounts(3, (1, 2))
    counts.add(sim[:2], labels[:2])
    counts.add(sim[2:], labels[2:])
    r = counts.result()
    assert r["top1"] == 0.5 and r["top2"] == 0.75
    assert r["per_class_top1"] == [1.0, 0.5, 0.0]
    assert r["mean_per_class_recall"] == pytest.approx(0.5)
    # a class without images is left out of the mean; ties go to the lower class index
    counts = ZeroShotCounts(3, (1,))
    counts.add(torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([1]))
    r = counts.result()
    assert r["top1"] == 0.0 and r["per_class_top1"] == [None, 0.0, None]
    assert r["mean_per_class_recall"] == 0.0


def test_retrieval_chance_matches_counting():
    # 2 images with 1 and 2 captions: one draw hits image 0's caption with p 1/3, image 1's 2/3
    chance = retrieval_chance([1, 2], (1, 2, 3))
    assert chance["chance_image_to_text@1"] == pytest.approx(0.5)
    assert chance["chance_image_to_text@2"] == pytest.approx((2 / 3 + 1) / 2)
    assert chance["chance_image_to_text@3"] == pytest.approx(1.0)
    assert chance["chance_text_to_image@1"] == 0.5 and chance["chance_text_to_image@3"] == 1.0


# ------------------------------------------------------------------------------- layouts

def test_folder_and_webdataset_layouts_give_what_the_dense_path_gives(data, model_and_tokenizer):
    model, tok = model_and_tokenizer
    got = evaluate_benchmarks(model, tok, [f"folder/colours={data['colours']}",
                                           f"wds/colours={data['wds_colours']}"], batch_size=5, chunk_size=4)
    folder, wds = got["folder/colours"], got["wds/colours"]
    # the same images (png vs lossless webp) in two layouts: the same numbers
    for key in ("top1", "top5", "mean_per_class_recall", "num_images", "per_class_top1"):
        assert folder[key] == wds[key]
    assert folder["num_images"] == 21 and folder["num_classes"] == 7 and folder["num_templates"] == 4
    # against the in-memory path: every image encoded at once, one classify call
    bench = open_benchmark(f"folder/colours={data['colours']}")
    transform = ImageTransform(model.vision.image_size)
    images, labels = [], []
    for folder_name, label in sorted(bench.labels.items()):
        for path in sorted((bench.root / folder_name).iterdir()):
            images.append(transform(decode_image(path.read_bytes())))
            labels.append(label)
    with evaluating(model):
        points = encode_images(model, torch.stack(images))
        classes = build_classifier(model.encode_text, tok, bench.classnames, bench.templates, model.manifold)
    dense = classify(points, classes, model.manifold, torch.tensor(labels))
    assert folder["top1"] == pytest.approx(dense["top1"]) and folder["top5"] == pytest.approx(dense["top5"])
    assert folder["mean_per_class_recall"] == pytest.approx(dense["mean_per_class_recall"])


def test_imagenet_folder_uses_wnids_and_counts_a_corrupt_image(data, model_and_tokenizer):
    model, tok = model_and_tokenizer
    bench = open_benchmark(f"imagenet1k={data['imagenet1k']},templates=imagenet1k-7")
    assert bench.root.name == "val" and len(bench.classnames) == 1000
    assert sorted(set(bench.labels.values())) == list(range(6))  # the first six wnids
    r = evaluate_benchmarks(model, tok, [bench.spec], batch_size=64)["imagenet1k"]
    assert r["num_classes"] == 1000 and r["num_templates"] == 7
    assert r["num_images"] == 17 and r["skipped"]["counts"] == {"corrupt_image": 1}
    assert r["chance_top1"] == 1 / 1000


def test_karpathy_retrieval_counts_any_caption_and_drops_missing_images(data, model_and_tokenizer):
    model, tok = model_and_tokenizer
    r = evaluate_benchmarks(model, tok, [f"coco={data['coco']}"], batch_size=7, chunk_size=5)["coco"]
    assert r["num_images"] == 11 and r["num_captions"] == 55  # image 1 is missing, with its 5
    assert r["skipped"]["counts"] == {"missing_file": 1}
    bench = open_benchmark(f"coco={data['coco']}")
    keep = [i for i in range(12) if i != 1]
    transform = ImageTransform(model.vision.image_size)
    with evaluating(model):
        x = encode_images(model, torch.stack([transform(decode_image(bench.images[i].read_bytes())) for i in keep]))
        texts = [t for i in keep for t in bench.captions[i]]
        y = encode_captions(model, tok, texts)
    owner = torch.arange(11).repeat_interleave(5)
    expected = retrieval_recall(x, y, model.manifold, caption_to_image=owner)
    for key, value in expected.items():
        assert r[key] == pytest.approx(value)
    assert r["chance_text_to_image@1"] == pytest.approx(1 / 11)


def test_webdataset_retrieval_layout(tmp_path, data, model_and_tokenizer):
    import io

    import webdataset as wds
    from PIL import Image

    model, tok = model_and_tokenizer
    bench = open_benchmark(f"flickr30k={data['flickr30k']}")
    (tmp_path / "test").mkdir()
    (tmp_path / "dataset_type.txt").write_text("retrieval\n")
    with wds.ShardWriter(str(tmp_path / "test" / "%d.tar"), maxcount=5, verbose=0) as sink:
        for i, (path, captions) in enumerate(zip(bench.images, bench.captions)):
            buffer = io.BytesIO()
            Image.open(path).save(buffer, format="PNG")
            texts = "\n".join(captions) if i != 3 else ""  # a record without captions
            sink.write({"__key__": f"s{i:07d}", "png": buffer.getvalue(), "txt": texts})
        shards = sink.shard
    (tmp_path / "test" / "nshards.txt").write_text(f"{shards}\n")
    r = evaluate_benchmarks(model, tok, [f"wds/flickr={tmp_path}"], batch_size=5)["wds/flickr"]
    assert r["task"] == "retrieval" and r["num_images"] == 11 and r["num_captions"] == 55
    assert sum(r["skipped"]["counts"].values()) == 1


def test_flickr_split_and_images_folder_are_found(data):
    bench = open_benchmark(f"flickr30k={data['flickr30k']}")
    assert len(bench.images) == 12 and all(len(c) == 5 for c in bench.captions)
    assert all(p.parent.name == "flickr30k-images" and p.is_file() for p in bench.images)
    val = open_benchmark(f"flickr30k={data['flickr30k']},split=restval")
    assert len(val.images) == 5


# -------------------------------------------------------------------------------- errors

@pytest.fixture
def folder(tmp_path, data):
    import shutil

    root = tmp_path / "pets"
    shutil.copytree(data["colours"], root)
    return root


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: (r / "zebra").mkdir(), "have no name in"),
        (lambda r: (r / "classnames.txt").write_text("circle\nsquare\ncircle\n"), "'circle' more than once"),
        (lambda r: (r / "zeroshot_classification_templates.txt").write_text("a photo\n"), "exactly one '{}'"),
        (lambda r: (r / "classnames.txt").unlink(), "no class names"),
    ],
    ids=["folder-without-name", "repeated-name", "template-without-placeholder", "no-names"],
)
def test_bad_benchmarks_fail_before_any_encoding(folder, edit, message):
    edit(folder)

    class NoEncoding(torch.nn.Module):
        def __getattr__(self, name):
            raise AssertionError("encoded before the benchmark was checked")

    with pytest.raises(ValueError, match=message):
        evaluate_benchmarks(NoEncoding(), None, [f"folder/pets={folder}"])


def test_bad_specs_name_the_problem(tmp_path, data):
    with pytest.raises(ValueError, match="unknown name 'imagenet'"):
        parse_benchmark(f"imagenet={tmp_path}")
    with pytest.raises(ValueError, match="unknown option 'template=x'"):
        parse_benchmark(f"cifar10={tmp_path},template=x")
    with pytest.raises(ValueError, match="does not exist"):
        open_benchmark(f"coco={tmp_path / 'nowhere'}")
    with pytest.raises(ValueError, match="no image in split 'val'"):
        open_benchmark(f"coco={data['coco']},split=val")
    with pytest.raises(ValueError, match="'openai' is neither a file nor a bundled set"):
        open_benchmark(f"imagenet1k={data['imagenet1k']},templates=openai")


def test_eval_json_keeps_history_and_refuses_to_overwrite_a_foreign_file(tmp_path):
    path = tmp_path / "eval.json"
    update_eval_json(path, {"step": 1}, {"results": {"a": 1}})
    update_eval_json(path, None, {"results": {"b": 2}})
    update_eval_json(path, {"step": 2}, None)
    content = json.loads(path.read_text())
    assert content["step"] == 2 and [e["results"] for e in content["benchmarks"]] == [{"a": 1}, {"b": 2}]
    path.write_text("not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        update_eval_json(path, {"step": 3})
    assert path.read_text() == "not json"


# ------------------------------------------------------------------------- the command

def test_eval_command_runs_benchmarks_prints_chance_and_appends(run_dir, data, capsys):
    argv = ["eval", "--checkpoint", str(run_dir),
            "--benchmark", f"imagenet1k={data['imagenet1k']},templates=imagenet1k-7",
            "--benchmark", f"coco={data['coco']}"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| imagenet1k | zero-shot top-1 |" in printed and "| 0.001 |" in printed
    assert "| coco | image->text R@1 |" in printed and "missing_file 1" in printed
    assert cli.main(["eval", "--checkpoint", str(run_dir), "--benchmark", f"wds/colours={data['wds_colours']}"]) == 0
    content = json.loads((run_dir / "eval.json").read_text())
    assert [sorted(e["results"]) for e in content["benchmarks"]] == [["coco", "imagenet1k"], ["wds/colours"]]
    assert content["benchmarks"][0]["step"] == 3


def test_eval_command_evaluates_the_runs_own_benchmarks(run_dir, data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    sets = ["--set", f"eval.benchmarks={{coco: {{path: {data['coco']}}}}}", "--set", "eval.zeroshot_samples=0",
            "--set", "eval.retrieval_samples=0", "--out", str(out)]
    assert cli.main(["eval", "--checkpoint", str(run_dir), *sets]) == 0
    assert "| coco | text->image R@10 |" in capsys.readouterr().out
    assert list(json.loads(out.read_text())["benchmarks"][0]["results"]) == ["coco"]
    sets[1] = "eval.benchmarks={imagenet: {path: /x}}"
    assert cli.main(["eval", "--checkpoint", str(run_dir), *sets]) == 2
    assert "eval.benchmarks: benchmark: unknown name 'imagenet'" in capsys.readouterr().err


def test_eval_command_rejects_a_bad_benchmark_before_loading(run_dir, tmp_path, capsys):
    before = (run_dir / "eval.json").read_text() if (run_dir / "eval.json").exists() else None
    assert cli.main(["eval", "--checkpoint", str(run_dir), "--benchmark", f"cifar10={tmp_path}/none"]) == 2
    assert "benchmark cifar10=" in capsys.readouterr().err
    after = (run_dir / "eval.json").read_text() if (run_dir / "eval.json").exists() else None
    assert before == after


# ----------------------------------------------------------------------------- training

MICRO_RUN = [
    "model.overrides={vision_width: 16, vision_layers: 1, vision_heads: 2, patch_size: 8,"
    " image_size: 16, text_width: 16, text_layers: 1, text_heads: 2, token_dim: 8,"
    " context_length: 16}",
    "data.synthetic.size=64", "data.batch_size=16", "train.log_every=1", "train.progress=false",
    "train.ckpt_every=0", "train.device=cpu", "eval.zeroshot_samples=0", "eval.retrieval_samples=0",
]


def test_training_evaluates_benchmarks_periodically(tmp_path, data):
    sets = [
        *MICRO_RUN, "train.steps=2", "train.eval_every=1",
        f"eval.benchmarks={{folder/colours: {{path: {data['colours']}}}, coco: {{path: {data['coco']}}}}}",
    ]
    result = train(load_config(RunConfig, None, sets), tmp_path / "run")
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [1, 2]
    for key in ("folder/colours/top1", "folder/colours/mean_per_class_recall", "coco/image_to_text@5",
                "coco/skipped"):
        assert all(math.isfinite(r[key]) for r in evals)
    assert evals[-1]["coco/skipped"] == 1.0
    assert (tmp_path / "run" / "plots" / "eval.png").is_file() and result.eval["folder/colours/top5"] >= 0


def test_training_refuses_a_missing_benchmark_before_the_first_step(tmp_path):
    from manifold_align.config import ConfigError

    config = load_config(RunConfig, None, [*MICRO_RUN, "train.steps=1", f"eval.benchmarks={{coco: {{path: {tmp_path}/no}}}}"])
    with pytest.raises(ConfigError, match=r"eval\.benchmarks: benchmark coco="):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_eval_pretrained_refuses_what_it_cannot_do_before_loading(tmp_path, capsys):
    weights = tmp_path / "open_clip_model.safetensors"
    weights.write_bytes(b"")
    cases = [
        (["--pretrained", str(weights), "--benchmark", "coco=/x"], "--out: with --pretrained"),
        (["--pretrained", str(weights), "--out", str(tmp_path / "e.json")],
         "give --benchmark NAME=PATH or --table FILE"),
        (["--pretrained", str(weights), "--out", str(tmp_path / "e.json"),
          "--benchmark", f"cifar10={tmp_path}/none"], "benchmark cifar10="),
        (["--pretrained", str(weights), "--out", str(tmp_path / "e.json"),
          "--benchmark", f"coco={tmp_path}"], "coco"),
        (["--checkpoint", str(tmp_path), "--model", "ViT-B-32"], "--model: only with --pretrained"),
    ]
    data = write_benchmark_datasets(tmp_path / "data", images_per_class=1, retrieval_images=3)
    cases.append((["--pretrained", str(weights), "--out", str(tmp_path / "e.json"),
                   "--benchmark", f"coco={data['coco']}"], f"--pretrained {weights}: "))
    for argv, message in cases:
        assert cli.main(["eval", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "e.json").exists()
