"""CLIP_benchmark evaluates our checkpoints and gets our numbers.

A ``tiny`` sphere model and a ``tiny-oblique`` model are fitted for a few steps; small datasets
in CLIP_benchmark's webdataset layout are written from the synthetic zero-shot and retrieval
images (``benchmarks/bench_eval.py`` holds these helpers and both evaluations, so the table on
the docs page comes from the code tested here). Both are evaluated by ``clip_benchmark`` (its
Python API, and its command line through our adapter) and by ``manifold_align.evaluate`` on
the same images and prompts; the numbers must agree to within one sample's worth.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from clip_benchmark.metrics import zeroshot_classification as cb_zs

from manifold_align.cli.clip_benchmark import (
    load_for_clip_benchmark,
    main,
    manifold_classifier,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_eval as be

N_CLASSIFY, N_RETRIEVAL, BATCH = 140, 48, 32


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return be.write_synthetic_wds(tmp_path_factory.mktemp("wds"), N_CLASSIFY, N_RETRIEVAL)


@pytest.fixture(scope="module")
def sphere_run(tmp_path_factory, data) -> Path:
    return be.fit_few_steps(tmp_path_factory.mktemp("runs"), "tiny", data)


@pytest.fixture(scope="module")
def oblique_run(tmp_path_factory, data) -> Path:
    return be.fit_few_steps(tmp_path_factory.mktemp("runs"), "tiny-oblique", data)


def _one_image(data) -> dict[str, float]:
    """What one image changes: ``1/N`` in accuracy, ``1/(C n_c)`` in mean per-class recall."""
    counts = torch.bincount(data["labels"])
    counts = counts[counts > 0]
    return {"acc1": 1 / N_CLASSIFY, "acc5": 1 / N_CLASSIFY,
            "mean_per_class_recall": 1 / (len(counts) * counts.min().item())}


def _one_query() -> dict[str, float]:
    """One query's worth: text -> image over ``2N`` captions, image -> text over ``N`` images."""
    return {f"{d}_retrieval_recall@{k}": 1 / (2 * N_RETRIEVAL if d == "image" else N_RETRIEVAL)
            for k in be.KS for d in ("image", "text")}


def _assert_close(ours: dict, theirs: dict, tol: dict) -> None:
    for key, t in tol.items():
        assert abs(ours[key] - theirs[key]) <= t + 1e-12, (key, ours[key], theirs[key])


# --- agreement, through clip_benchmark's Python API ---------------------------------------


def test_sphere_classification_agrees(sphere_run, data):
    ours = be.ours_classification(sphere_run, data, batch=BATCH)
    _assert_close(ours, be.cb_classification(sphere_run, data, batch=BATCH), _one_image(data))
    assert ours["acc1"] > 1.5 / len(data["classnames"])  # real rankings, not chance


def test_sphere_retrieval_agrees(sphere_run, data):
    ours = be.ours_retrieval(sphere_run, data, batch=BATCH)
    _assert_close(ours, be.cb_retrieval(sphere_run, data, batch=BATCH), _one_query())
    assert ours["text_retrieval_recall@10"] > 1.5 * 20 / (2 * N_RETRIEVAL)  # above chance


def test_oblique_retrieval_agrees(oblique_run, data):
    ours = be.ours_retrieval(oblique_run, data, batch=BATCH)
    _assert_close(ours, be.cb_retrieval(oblique_run, data, batch=BATCH), _one_query())


def test_flat_cosine_is_oblique_similarity_over_k(oblique_run, data):
    """Why oblique retrieval agrees: ``|vec X| = sqrt(k)``, so ``cos(vec X, vec Y) = s / k``."""
    flat, transform, tokenizer = load_for_clip_benchmark("auto", str(oblique_run))
    k = flat.manifold.tokens
    images = torch.stack([transform(im) for im in data["rt_images"][:8]])
    tokens = tokenizer(["a red star", "a photo of a blue circle", "a green shape"])
    with torch.no_grad():
        x, y = flat.encode_image(images), flat.encode_text(tokens)
        s = flat.manifold.similarity(flat.model.encode_image(images), flat.model.encode_text(tokens))
    torch.testing.assert_close(x.norm(dim=-1), torch.full((8,), k**0.5))
    torch.testing.assert_close(F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T, s / k,
                               atol=1e-6, rtol=1e-5)


def test_oblique_single_template_agrees(oblique_run, data):
    one = be.TEMPLATES[1:2]
    ours = be.ours_classification(oblique_run, data, one, batch=BATCH)
    _assert_close(ours, be.cb_classification(oblique_run, data, one, batch=BATCH),
                  _one_image(data))


def test_oblique_several_templates_flat_mean_is_not_the_manifold_mean(oblique_run, data):
    """clip_benchmark's class embedding, the flat prompt mean re-normalised, has per-token norms
    that differ (ours are all 1); so the top-1 classes can differ, and the accuracies by at most
    the share of images whose top-1 differs."""
    flat, _, tokenizer = load_for_clip_benchmark("auto", str(oblique_run))
    names, k = data["classnames"], flat.manifold.tokens
    with torch.no_grad():
        theirs = cb_zs.zero_shot_classifier(flat, tokenizer, names, be.TEMPLATES, "cpu", amp=False)
        ours = manifold_classifier(flat, tokenizer, names, be.TEMPLATES)
    torch.testing.assert_close(ours.T.reshape(len(names), k, -1).norm(dim=-1),
                               torch.ones(len(names), k))
    token_norms = theirs.T.reshape(len(names), k, -1).norm(dim=-1)
    assert (token_norms.max(1).values - token_norms.min(1).values).min() > 1e-4
    disagree = be.top1_disagreement(oblique_run, data)
    acc_ours = be.ours_classification(oblique_run, data, batch=BATCH)["acc1"]
    acc_theirs = be.cb_classification(oblique_run, data, batch=BATCH)["acc1"]
    assert abs(acc_ours - acc_theirs) <= disagree + 1e-12


def test_oblique_manifold_mean_classifier_gives_our_numbers_in_clip_benchmark(oblique_run, data):
    _assert_close(be.ours_classification(oblique_run, data, batch=BATCH),
                  be.cb_manifold_mean_classification(oblique_run, data), _one_image(data))


# --- the command line ---------------------------------------------------------------------


def _cli(tmp_path, run, dataset: str, root: Path, *extra: str) -> dict:
    out = tmp_path / f"{dataset.replace('/', '_')}.json"
    code = main(["eval", "--dataset", dataset, "--dataset_root", str(root), "--pretrained",
                 str(run), "--batch_size", str(BATCH), "--num_workers", "0", "--no_amp",
                 "--quiet", "--output", str(out), *extra])
    assert code == 0
    return json.loads(out.read_text())


def test_command_line_classification_and_retrieval(sphere_run, data, tmp_path):
    got = _cli(tmp_path, sphere_run, f"wds/{be.CLASSIFY_DIR}", data["root"] / be.CLASSIFY_DIR)
    assert got["task"] == "zeroshot_classification" and got["model"] == "auto"
    _assert_close(be.ours_classification(sphere_run, data, batch=BATCH), got["metrics"],
                  _one_image(data))
    got = _cli(tmp_path, sphere_run, f"wds/{be.RETRIEVAL_DIR}", data["root"] / be.RETRIEVAL_DIR,
               "--task", "zeroshot_retrieval", "--recall_k", "1", "5", "10")
    _assert_close(be.ours_retrieval(sphere_run, data, batch=BATCH), got["metrics"], _one_query())


def test_command_line_manifold_mean_gives_our_oblique_numbers(oblique_run, data, tmp_path):
    got = _cli(tmp_path, oblique_run, f"wds/{be.CLASSIFY_DIR}", data["root"] / be.CLASSIFY_DIR,
               "--manifold-mean")
    _assert_close(be.ours_classification(oblique_run, data, batch=BATCH), got["metrics"],
                  _one_image(data))


def test_command_line_rejects_a_checkpoint_of_another_model(sphere_run, data, capsys):
    code = main(["eval", "--dataset", f"wds/{be.CLASSIFY_DIR}", "--dataset_root",
                 str(data["root"] / be.CLASSIFY_DIR), "--pretrained", str(sphere_run),
                 "--model", "ViT-B-32", "--num_workers", "0", "--quiet", "--output", "/dev/null"])
    assert code == 2
    assert "is a 'tiny' model" in capsys.readouterr().err


def test_command_line_manifold_mean_needs_one_dataset_checkpoint_and_language(tmp_path, capsys):
    code = main(["eval", "--manifold-mean", "--dataset", "wds/a", "wds/b", "--pretrained",
                 str(tmp_path / "run")])
    assert code == 2
    assert "exactly one --pretrained, one --dataset" in capsys.readouterr().err
    code = main(["eval", "--manifold-mean", "--dataset", "wds/a", "--pretrained",
                 str(tmp_path / "run"), "--language", "en", "fr"])
    assert code == 2
    assert "at most one --language" in capsys.readouterr().err


def test_command_line_without_eval_prints_usage(capsys):
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_bench_eval_quick_runs(tmp_path):
    out = be.main(["--quick", "--threads", "1", "--images", "16", "--batch", "8",
                   "--json", str(tmp_path / "eval.json")])
    assert json.loads((tmp_path / "eval.json").read_text())["speed"][0]["model"] == "tiny"
    rows = out["agreement"]["rows"]
    assert {r["case"] for r in rows} >= {"tiny, Sphere(128), 4 templates",
                                         "tiny-oblique, 4 templates, --manifold-mean"}
    for r in out["speed"]:
        assert r["zeroshot_ratio"] > 0 and r["retrieval_ratio"] > 0


def test_command_line_missing_dataset_folder_is_a_one_line_error(sphere_run, tmp_path, capsys):
    code = main(["eval", "--dataset", "wds/nothing", "--dataset_root", str(tmp_path / "none"),
                 "--pretrained", str(sphere_run), "--num_workers", "0", "--quiet",
                 "--output", str(tmp_path / "out.json")])
    assert code == 2
    assert "nshards.txt" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_the_core_does_not_import_the_adapter_or_clip_benchmark():
    code = (
        "import sys\n"
        "import manifold_align, manifold_align.evaluate, manifold_align.cli.eval\n"
        "import manifold_align.train.run, manifold_align.cli\n"
        "assert 'clip_benchmark' not in sys.modules\n"
        "assert 'manifold_align.cli.clip_benchmark' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_command_line_karcher_needs_manifold_mean(capsys):
    assert main(["eval", "--karcher", "--dataset", "cifar10"]) == 2
    assert "--karcher needs --manifold-mean" in capsys.readouterr().err


def test_karcher_classifier_is_on_the_manifold_and_close_to_the_projected_mean(oblique_run, data):
    flat, _, tokenizer = load_for_clip_benchmark("auto", str(oblique_run))
    names, k = data["classnames"], flat.manifold.tokens
    projected = manifold_classifier(flat, tokenizer, names, be.TEMPLATES)
    karcher = manifold_classifier(flat, tokenizer, names, be.TEMPLATES, karcher=True)
    assert karcher.shape == (k * 16, len(names))
    torch.testing.assert_close(karcher.T.reshape(len(names), k, -1).norm(dim=-1),
                               torch.ones(len(names), k))
    # both are means of the same prompts: the same point up to the spread of the prompts
    assert (karcher * projected).sum(0).min() > 0.9 * k
