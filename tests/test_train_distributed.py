"""Distributed training: 2 gloo ranks on 127.0.0.1 train exactly like one process.

One module fixture forks 2 processes that join a gloo group and run the real ``train()``
twice (a plain run with a checkpoint half way, and a run with gradient accumulation); the
test process then runs the 1-process references with the same global batch and compares
weights, per-step losses, the evaluation and a 2-rank -> 1-rank resume.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from gloo_ranks import join_gloo, run_ranks
from safetensors.torch import load_file

from manifold_align.config import from_dict
from manifold_align.data.tokenizer import default_tokenizer
from manifold_align.evaluate.ranks import RankSplitEncoder
from manifold_align.losses.distributed import to_distributed
from manifold_align.train.batches import EpochBatchSampler
from manifold_align.train.checkpoint import CheckpointError
from manifold_align.train.config import RunConfig
from manifold_align.train.distributed import DistEnv, init_distributed
from manifold_align.train.metrics import read_metrics
from manifold_align.train.optimizers import build_optimizers
from manifold_align.train.run import build_run_model, train
from manifold_align.train.trainer import fit

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")

WORLD = 2
LOCAL_BATCH = 4
STEPS = 4
TOL = 1e-5


def config(batch: int, steps: int = STEPS, grad_accum: int = 1, evaluate: bool = False) -> RunConfig:
    return from_dict(RunConfig, {
        "model": {"name": "tiny-oblique", "overrides": {
            "vision_width": 32, "vision_layers": 1, "vision_heads": 2, "patch_size": 8,
            "image_size": 16, "text_width": 32, "text_layers": 1, "text_heads": 2,
            "tokens": 2, "token_dim": 8, "context_length": 16,
        }},
        "data": {"source": "synthetic", "synthetic": {"size": 64}, "batch_size": batch},
        "optim": {"lr": 1e-3, "weight_decay": 0.1},
        "schedule": {"warmup_steps": 1},
        "train": {"steps": steps, "grad_accum": grad_accum, "seed": 3, "device": "cpu",
                  "log_every": 1, "ckpt_every": 2, "keep_checkpoints": 0, "progress": False},
        "eval": {"zeroshot_samples": 24 if evaluate else 0, "retrieval_samples": 0,
                 "batch_size": 12},
    })


class _Probe(torch.nn.Module):
    """Records the rows it encodes; a point is ``10 x`` the row."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []
        self.label = "probe"

    def encode_image(self, rows: torch.Tensor) -> torch.Tensor:
        self.seen += rows[:, 0].tolist()
        return 10 * rows


class _Batches:
    """Fixed batches of 4 pairs; rank 1's second batch lost a sample (3 pairs)."""

    def __init__(self, rank: int, cfg: RunConfig, vocab: int) -> None:
        self.rank, self.cfg, self.vocab = rank, cfg, vocab

    def iterate(self, start: int):
        gen = torch.Generator().manual_seed(self.rank)
        size, length = self.cfg.model.overrides["image_size"], self.cfg.model.overrides["context_length"]
        index = start
        while True:
            rows = 3 if (self.rank, index) == (1, 1) else LOCAL_BATCH
            tokens = torch.randint(3, self.vocab, (rows, length), generator=gen)
            yield torch.randn(rows, 3, size, size, generator=gen), tokens
            index += 1


def short_batches(rank: int, out: Path) -> None:
    cfg = config(LOCAL_BATCH, steps=2)
    tokenizer = default_tokenizer(16)
    model = build_run_model(cfg, tokenizer)
    model.loss = to_distributed(model.loss)
    optimizers = build_optimizers(model, 1e-3)
    last = fit(model, optimizers, _Batches(rank, cfg, tokenizer.vocab_size), cfg, out / "short")
    torch.save({"step": last["step"], "batches": last["train"]["batches"]}, out / f"short{rank}.pt")


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    join_gloo(rank, world, init_file)
    train(config(LOCAL_BATCH, evaluate=True), Path(out) / "ddp")
    train(config(LOCAL_BATCH, steps=2, grad_accum=2), Path(out) / "ddp_accum")
    short_batches(rank, Path(out))
    probe = _Probe()
    points = RankSplitEncoder(probe).encode_image(torch.arange(5.0).unsqueeze(1))
    torch.save({"points": points, "seen": probe.seen}, Path(out) / f"split{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ddp")
    run_ranks(_worker, WORLD, tmp)
    torch.manual_seed(0)
    train(config(WORLD * LOCAL_BATCH, evaluate=True), tmp / "one")
    train(config(WORLD * LOCAL_BATCH, steps=2, grad_accum=2), tmp / "one_accum")
    return tmp


def weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{step:08d}" / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=TOL, msg=name)


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"}


def test_two_ranks_end_with_the_weights_of_one_process(runs):
    one, ddp = weights(runs / "one", STEPS), weights(runs / "ddp", STEPS)
    moved = max((one[k] - weights(runs / "one", 2)[k]).abs().max().item() for k in one)
    assert moved > 100 * TOL  # the comparison is not of weights that did not train
    assert_same_weights(ddp, one)


def test_two_ranks_log_the_global_loss_of_every_step(runs):
    one, ddp = losses(runs / "one"), losses(runs / "ddp")
    assert sorted(ddp) == list(range(1, STEPS + 1))
    for step in one:
        assert ddp[step] == pytest.approx(one[step], abs=TOL)


def test_rank_zero_alone_writes_and_evaluates(runs):
    records = read_metrics(runs / "ddp" / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, STEPS + 1))
    ddp_eval = [r for r in records if r["kind"] == "eval"]
    one_eval = [r for r in read_metrics(runs / "one" / "metrics.jsonl") if r["kind"] == "eval"]
    assert len(ddp_eval) == len(one_eval) == 1
    for key, value in one_eval[0].items():
        assert ddp_eval[0][key] == pytest.approx(value, abs=1e-4), key
    assert sorted(p.name for p in (runs / "ddp" / "checkpoints").iterdir()) == [
        "latest", "step_00000002", "step_00000004"]
    # rank 0 alone took the folder's lock (a second rank taking it would have been refused)
    # and released it at the end
    assert not (runs / "ddp" / ".lock").exists()
    assert (runs / "ddp" / ".manifold-align.json").is_file()


def test_checkpoint_of_two_ranks_resumes_on_one_identically(runs, tmp_path):
    half = runs / "ddp" / "checkpoints" / "step_00000002"
    train(config(WORLD * LOCAL_BATCH), tmp_path / "resumed", resume=half)
    assert_same_weights(weights(tmp_path / "resumed", STEPS), weights(runs / "one", STEPS))
    resumed, one = losses(tmp_path / "resumed"), losses(runs / "one")
    assert sorted(resumed) == [3, 4]
    for step in resumed:
        assert resumed[step] == pytest.approx(one[step], abs=TOL)


def test_resume_with_another_global_batch_is_refused(runs, tmp_path):
    half = runs / "ddp" / "checkpoints" / "step_00000002"
    with pytest.raises(CheckpointError, match="global batch of 8"):
        train(config(LOCAL_BATCH), tmp_path / "resumed", resume=half)


def test_accumulation_under_no_sync_equals_one_process(runs):
    one, ddp = weights(runs / "one_accum", 2), weights(runs / "ddp_accum", 2)
    assert_same_weights(ddp, one)
    plain = weights(runs / "one", 2)  # accumulation changed the update (2 micro-batches a step)
    assert max((one[k] - plain[k]).abs().max().item() for k in one) > 100 * TOL
    for step, value in losses(runs / "one_accum").items():
        assert losses(runs / "ddp_accum")[step] == pytest.approx(value, abs=TOL)


def test_evaluation_encoding_is_split_over_the_ranks_and_gathered_in_order(runs):
    split = [torch.load(runs / f"split{r}.pt") for r in range(WORLD)]
    assert split[0]["seen"] == [0.0, 1.0, 2.0] and split[1]["seen"] == [3.0, 4.0, 4.0]
    for part in split:
        torch.testing.assert_close(part["points"], 10 * torch.arange(5.0).unsqueeze(1))
    assert RankSplitEncoder(_Probe()).label == "probe"  # other attributes are the model's


def test_rank_slices_of_a_global_batch_concatenate_to_the_one_process_batch():
    one = iter(EpochBatchSampler(20, 8, seed=5, start=3))
    ranks = [iter(EpochBatchSampler(20, 8, seed=5, start=3, rank=r, world_size=2)) for r in (0, 1)]
    for _ in range(5):  # crosses an epoch boundary (2 batches an epoch)
        assert next(ranks[0]) + next(ranks[1]) == next(one)
    with pytest.raises(ValueError, match="world_size"):
        EpochBatchSampler(20, 8, seed=5, world_size=3)
    with pytest.raises(ValueError, match="rank"):
        EpochBatchSampler(20, 8, seed=5, rank=2, world_size=2)


def test_init_distributed_reads_torchrun_environment():
    cpu = torch.device("cpu")
    assert init_distributed(cpu, env={}) == DistEnv(0, 1, 0, False)
    assert init_distributed(cpu, env={"WORLD_SIZE": "1", "RANK": "0"}).world_size == 1
    with pytest.raises(ValueError, match="RANK"):
        init_distributed(cpu, env={"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        init_distributed(cpu, env={"WORLD_SIZE": "two"})


def test_compiled_model_trains_like_the_eager_one(tmp_path, monkeypatch):
    # inductor (torch.compile's default) crashed on this project's CPUs; aot_eager still
    # traces the model through dynamo and AOTAutograd.
    compile_ = torch.compile
    calls = []

    def aot_eager(model, **kwargs):
        calls.append(type(model).__name__)
        return compile_(model, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", aot_eager)
    compiled = config(WORLD * LOCAL_BATCH, steps=2)
    compiled.train.compile = True
    train(compiled, tmp_path / "compiled")
    monkeypatch.setattr(torch, "compile", compile_)
    train(config(WORLD * LOCAL_BATCH, steps=2), tmp_path / "eager")
    assert calls == ["TwoTower"]
    assert_same_weights(weights(tmp_path / "compiled", 2), weights(tmp_path / "eager", 2))


def test_a_batch_short_on_one_rank_is_trimmed_to_it_on_every_rank(runs):
    for rank in range(WORLD):
        # rank 1's 2nd batch had 3 pairs: both ranks train on 3 pairs of batch 2 (rank 0 keeps
        # its first 3), so 2 steps take 2 batches; dropping it (as before) starved noisy data
        assert torch.load(runs / f"short{rank}.pt") == {"step": 2, "batches": 2}


def test_debug_mode_makes_the_loss_reject_non_finite_features(tmp_path):
    debug = config(WORLD * LOCAL_BATCH, steps=1)
    debug.train.debug = True
    assert train(debug, tmp_path / "debug").model.loss.check_finite is True
    assert train(config(WORLD * LOCAL_BATCH, steps=1), tmp_path / "plain").model.loss.check_finite is False
