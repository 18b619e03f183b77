"""Benchmark evaluation split over 2 gloo ranks gives the numbers of one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from gloo_ranks import join_gloo, run_ranks

from manifold_align.config import from_dict
from manifold_align.data.tokenizer import default_tokenizer
from manifold_align.evaluate.benchmarks import parse_benchmark
from manifold_align.evaluate.demo_datasets import write_benchmark_datasets
from manifold_align.evaluate.ranks import RankSplitEncoder
from manifold_align.train.config import RunConfig
from manifold_align.train.evaluation import BenchmarkEvaluator
from manifold_align.train.run import build_run_model

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")

MICRO = {
    "image_size": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1,
    "vision_heads": 2, "text_width": 16, "text_layers": 1, "text_heads": 2, "tokens": 4,
    "token_dim": 8,
}


def _evaluator(data: dict[str, Path]):
    tokenizer = default_tokenizer(32)
    torch.manual_seed(0)
    model = build_run_model(from_dict(RunConfig, {"model": {"name": "tiny-oblique", "overrides": MICRO}}), tokenizer)
    specs = [parse_benchmark(f"folder/colours={data['colours']}"), parse_benchmark(f"wds/colours={data['wds_colours']}"),
             parse_benchmark(f"coco={data['coco']}")]
    # batch 4: each rank's images and the classes' prompts span several batches
    return model.eval(), BenchmarkEvaluator(specs, tokenizer, batch_size=4)


def _worker(rank: int, world: int, init_file: str, root: str) -> None:
    join_gloo(rank, world, init_file)
    data = {name: Path(root) / name for name in ("colours", "wds_colours", "coco")}
    model, evaluate = _evaluator(data)
    with torch.no_grad():
        torch.save(evaluate(RankSplitEncoder(model), 0), Path(root) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def test_two_ranks_give_the_numbers_of_one_process(tmp_path):
    # 2 wds shards and 7 + 13 images (one missing) over 2 ranks, prompts over both too
    data = write_benchmark_datasets(tmp_path, images_per_class=1, retrieval_images=13, image_size=16, damaged=True)
    run_ranks(_worker, 2, tmp_path)
    model, evaluate = _evaluator(data)
    with torch.no_grad():
        one = evaluate(model, 0)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0] == ranks[1]  # every rank ends with the gathered numbers
    assert ranks[0].keys() == one.keys() and one["coco/skipped"] == 1.0
    for key, value in one.items():
        assert ranks[0][key] == pytest.approx(value, abs=1e-9), key
