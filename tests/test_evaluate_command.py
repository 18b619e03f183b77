"""The model-level glue: encode helpers, the held-out suite and ``manifold-align eval``."""

import json

import pytest
import torch

from manifold_align import cli
from manifold_align.cli.eval import format_table
from manifold_align.config import from_dict, to_dict
from manifold_align.data.tokenizer import default_tokenizer
from manifold_align.evaluate.encode import encode_batches, encode_captions, encode_images
from manifold_align.evaluate.suite import evaluate_model, summary_metrics, synthetic_heldout
from manifold_align.train.checkpoint import save_checkpoint
from manifold_align.train.config import RunConfig
from manifold_align.train.run import build_run_model, load_trained

MICRO = {
    "image_size": 16,
    "patch_size": 8,
    "vision_width": 16,
    "vision_layers": 1,
    "vision_heads": 2,
    "text_width": 16,
    "text_layers": 1,
    "text_heads": 2,
    "tokens": 4,
    "token_dim": 8,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with one checkpoint of a micro oblique model (untrained weights)."""
    root = tmp_path_factory.mktemp("run")
    config = from_dict(
        RunConfig,
        {
            "model": {"name": "tiny-oblique", "overrides": MICRO},
            "eval": {"zeroshot_samples": 12, "retrieval_samples": 12, "batch_size": 5},
            "train": {"device": "cpu"},
        },
    )
    tokenizer = default_tokenizer(32)
    torch.manual_seed(0)
    model = build_run_model(config, tokenizer)
    tokenizer.save(root / "tokenizer.json")
    save_checkpoint(
        root / "checkpoints",
        7,
        model,
        {},
        {},
        to_dict(config),
        files={"tokenizer.json": root / "tokenizer.json"},
    )
    return root


@pytest.fixture(scope="module")
def heldout():
    return synthetic_heldout(zeroshot_samples=12, retrieval_samples=12, image_size=16)


def test_eval_command_writes_eval_json_and_prints_a_table(run_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = cli.main(
        [
            "eval",
            "--checkpoint",
            str(run_dir),
            "--set",
            "eval.zeroshot_samples=10",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| zero-shot shape top-1 (6 classes) |" in printed and "image to text R@1" in printed
    result = json.loads(out.read_text())
    assert result["step"] == 7 and result["model"] == "tiny-oblique"
    assert result["config"]["eval"]["zeroshot_samples"] == 10
    assert set(result["zeroshot"]) == {"shape", "colour", "size", "position"}
    assert result["zeroshot"]["shape"]["num_images"] == 10
    assert result["zeroshot"]["size"]["chance_top1"] == pytest.approx(1 / 3)
    assert result["retrieval"]["num_images"] == 12
    assert result["geometry"]["similarity"]["similarity_range"] == [-4.0, 4.0]
    assert len(result["geometry"]["tokens"]["pos_mean"]) == 4

    # the same numbers as evaluating the loaded model directly
    model, tokenizer, _ = load_trained(run_dir)
    direct = evaluate_model(
        model,
        tokenizer,
        synthetic_heldout(zeroshot_samples=10, retrieval_samples=12, image_size=16),
        batch_size=5,
    )
    assert summary_metrics(direct) == pytest.approx(summary_metrics(result))


def test_eval_command_defaults_to_the_run_folder(run_dir):
    assert cli.main(["eval", "--checkpoint", str(run_dir / "checkpoints")]) == 0
    assert json.loads((run_dir / "eval.json").read_text())["step"] == 7


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "optim.lr=1"], "optim.lr: cannot be changed at evaluation"),
        (["--set", "eval.nope=1"], "unknown key eval.nope"),
        (["--chunk-size", "0"], "--chunk-size: expected a positive integer"),
        (
            ["--set", "eval.zeroshot_samples=0", "--set", "eval.retrieval_samples=0"],
            "nothing to evaluate",
        ),
    ],
)
def test_eval_command_rejects_bad_settings(run_dir, capsys, argv, message):
    assert cli.main(["eval", "--checkpoint", str(run_dir), *argv]) == 2
    assert message in capsys.readouterr().err


def test_eval_command_reports_a_missing_checkpoint(tmp_path, capsys):
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err


def test_heldout_retrieval_captions_are_distinct_and_labels_match_the_scenes(heldout):
    from manifold_align.data.synthetic import SyntheticCaptions

    assert len(set(heldout.retrieval_captions)) == 12
    assert heldout.retrieval_images.shape == (12, 3, 16, 16)
    assert heldout.retrieval_scanned >= 12
    ds = SyntheticCaptions("zeroshot", 12, 0, 16)
    for attribute, labels in heldout.zeroshot_labels.items():
        assert labels.tolist() == [ds.labels(i)[attribute] for i in range(12)]


def test_heldout_rejects_bad_sizes():
    with pytest.raises(ValueError, match="both are 0"):
        synthetic_heldout(zeroshot_samples=0, retrieval_samples=0)
    with pytest.raises(ValueError, match="zeroshot_samples: expected an integer >= 0"):
        synthetic_heldout(zeroshot_samples=-1)
    with pytest.raises(ValueError, match="attributes: unknown"):
        synthetic_heldout(zeroshot_samples=2, retrieval_samples=0, attributes=("smell",))


def test_evaluate_model_restores_training_mode_and_summarises(run_dir, heldout):
    model, tokenizer, _ = load_trained(run_dir)
    model.train()
    result = evaluate_model(model, tokenizer, heldout, batch_size=4, chunk_size=3)
    assert model.training
    flat = summary_metrics(result)
    assert set(flat) >= {
        "zeroshot/shape/top1",
        "zeroshot/mean_top1",
        "retrieval/image_to_text@1",
        "retrieval/text_to_image@10",
        "geometry/gap",
        "geometry/gap_logits",
    }
    mean = sum(result["zeroshot"][a]["top1"] for a in result["zeroshot"]) / 4
    assert flat["zeroshot/mean_top1"] == pytest.approx(mean)
    table = format_table(result)
    assert table.count("\n") > 15 and "uniformity (texts)" in table


def test_encoding_does_not_depend_on_the_batching(run_dir, heldout):
    model, tokenizer, _ = load_trained(run_dir)
    a = encode_images(model, heldout.retrieval_images, batch_size=5)
    loader = [(heldout.retrieval_images[i : i + 7], None) for i in range(0, 12, 7)]
    b = encode_images(model, loader)
    assert torch.allclose(a, b, atol=1e-5)
    c1 = encode_captions(model, tokenizer, heldout.retrieval_captions, batch_size=1)
    c2 = encode_captions(model, tokenizer, heldout.retrieval_captions, batch_size=12)
    assert torch.allclose(c1, c2, atol=1e-5)
    assert c1.shape == (12, 4, 8)


def test_encode_batches_checks_the_output(run_dir):
    model, _, _ = load_trained(run_dir)
    with pytest.raises(ValueError, match=r"encode: batch 0 gave shape \(2, 3\)"):
        encode_batches(lambda x: torch.zeros(2, 3), [torch.zeros(2, 5)], model.manifold)
    with pytest.raises(ValueError, match="batch 1 gave NaN"):
        encode_batches(
            lambda x: x,
            [torch.full((1, 4, 8), 8**-0.5), torch.full((1, 4, 8), float("nan"))],
            model.manifold,
        )
    with pytest.raises(ValueError, match="no batches"):
        encode_batches(lambda x: x, [], model.manifold)


def write_table(folder):
    """Three images (one of them with two captions), a missing file, an empty caption."""
    from manifold_align.data.synthetic import SyntheticCaptions

    ds = SyntheticCaptions("retrieval", 3, 0, 16)
    for i in range(3):
        ds[i][0].save(folder / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    rows = [
        ("img0.png", ds.clean_caption(0)),
        ("img1.png", ds.clean_caption(1)),
        ("missing.png", "a caption of nothing"),
        ("img0.png", "a second caption of image zero"),
        ("img2.png", ""),
        ("img2.png", ds.clean_caption(2)),
        ("broken.png", "one"),
        ("broken.png", "two"),
    ]
    text = "filepath,caption\n" + "".join(f"{p},{c}\n" for p, c in rows)
    (folder / "pairs.csv").write_text(text)
    return folder / "pairs.csv"


def test_table_retrieval_groups_captions_by_image_and_counts_skipped_rows(run_dir, tmp_path):
    from manifold_align.data.tabular import CaptionTable
    from manifold_align.data.transforms import ImageTransform
    from manifold_align.evaluate.retrieval import retrieval_recall
    from manifold_align.evaluate.suite import table_retrieval

    model, tokenizer, _ = load_trained(run_dir)
    table = CaptionTable(write_table(tmp_path))
    got = table_retrieval(model, tokenizer, table, batch_size=2, chunk_size=2)
    assert (got["rows"], got["images"], got["captions"]) == (8, 3, 4)
    assert got["skipped"]["counts"] == {"missing_file": 1, "empty_caption": 1, "corrupt_image": 2}
    # the same recall as encoding the three images and four captions by hand
    from PIL import Image

    t = ImageTransform(16)
    imgs = torch.stack([t(Image.open(tmp_path / f"img{i}.png")) for i in range(3)])
    caps = [table.captions[i] for i in (0, 1, 3, 5)]
    want = retrieval_recall(
        encode_images(model, imgs),
        encode_captions(model, tokenizer, caps),
        model.manifold,
        caption_to_image=torch.tensor([0, 1, 0, 2]),
    )
    assert got["retrieval"] == pytest.approx(want)


def test_table_retrieval_reads_every_caption_as_the_table_does(run_dir, tmp_path):
    """A caption that is not UTF-8 spoils its row only, first row of its image or not."""
    from manifold_align.data.skipped import SampleError
    from manifold_align.data.synthetic import SyntheticCaptions
    from manifold_align.data.tabular import CaptionTable
    from manifold_align.evaluate.suite import table_retrieval

    ds = SyntheticCaptions("retrieval", 2, 0, 16)
    for i in range(2):
        ds[i][0].save(tmp_path / f"img{i}.png")
    rows = [
        b"img0.png,caf\xe9 au lait",  # Latin-1: not UTF-8, the image's first row
        b"img0.png,a red circle",
        b"img1.png,a blue square",
        b"img1.png,bl\xfc",  # not UTF-8, a later row of its image
    ]
    (tmp_path / "pairs.csv").write_bytes(b"filepath,caption\n" + b"\n".join(rows) + b"\n")
    table = CaptionTable(tmp_path / "pairs.csv")
    with pytest.raises(SampleError, match="not UTF-8"):
        table.caption(3)
    model, tokenizer, _ = load_trained(run_dir)
    got = table_retrieval(model, tokenizer, table, batch_size=2, chunk_size=2)
    assert (got["images"], got["captions"]) == (2, 2)
    assert got["skipped"]["counts"] == {"bad_caption": 2}


def test_eval_command_with_a_table(run_dir, tmp_path, capsys):
    csv = write_table(tmp_path)
    out = tmp_path / "e.json"
    argv = ["eval", "--checkpoint", str(run_dir), "--table", str(csv), "--out", str(out)]
    argv += ["--set", "eval.zeroshot_samples=0", "--set", "eval.retrieval_samples=0"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "table (3 images, 4 captions): image to text R@1" in printed
    assert "rows skipped (corrupt_image 2, empty_caption 1, missing_file 1) | 4 |" in printed
    result = json.loads(out.read_text())
    assert result["table"]["images"] == 3 and "zeroshot" not in result and "retrieval" not in result
    assert cli.main(["eval", "--checkpoint", str(run_dir), "--table", str(tmp_path / "x.csv")]) == 2
