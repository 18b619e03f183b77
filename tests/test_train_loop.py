"""The training loop and its parts: schedule, batch order, parameter groups, guard, metrics."""

from __future__ import annotations

import itertools
import json
import math

import geoopt
import pytest
import torch
from PIL import Image

from manifold_align import Oblique
from manifold_align.config import load_config
from manifold_align.data.skipped import SkippedSamples
from manifold_align.train.batches import EpochBatchSampler
from manifold_align.train.checkpoint import find_checkpoint, read_state
from manifold_align.train.config import RunConfig
from manifold_align.train.guard import NonFiniteError
from manifold_align.train.metrics import MetricsWriter, plot_metrics, read_metrics
from manifold_align.train.optimizers import build_optimizers, split_parameters
from manifold_align.train.run import build_batches, build_run_model, load_trained, train
from manifold_align.train.schedule import cosine_lr, lr_factor
from manifold_align.train.trainer import fit

MICRO = [
    "model.overrides={vision_width: 32, vision_layers: 1, vision_heads: 2, patch_size: 8,"
    " image_size: 16, text_width: 32, text_layers: 1, text_heads: 2, token_dim: 16,"
    " context_length: 16}",
    "data.synthetic.size=128",
    "data.batch_size=16",
    "optim.lr=2e-3",
    "train.log_every=1",
    "train.progress=false",
    "train.ckpt_every=0",
    "eval.zeroshot_samples=0",
    "eval.retrieval_samples=0",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Width-32 models run faster on one thread, and do not suffer from a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def micro(*sets: str) -> RunConfig:
    return load_config(RunConfig, None, [*MICRO, *sets])


def _model_and_data(config: RunConfig):
    from manifold_align.data.tokenizer import default_tokenizer

    torch.manual_seed(config.train.seed)
    tok = default_tokenizer(16)
    model = build_run_model(config, tok)
    return model, build_batches(config, tok, model.config.image_size)


def _optimizers(model, config):
    o = config.optim
    return build_optimizers(model, o.lr, o.betas, o.eps, o.weight_decay)


# ------------------------------------------------------------------------------- schedule


def test_schedule_warmup_then_cosine_to_floor():
    lrs = [cosine_lr(s, 1.0, 10, 110, 0.1) for s in range(130)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(lrs[:10]))  # rising during warmup
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))  # never rising after warmup
    assert lrs[110] == pytest.approx(0.1) and lrs[129] == pytest.approx(0.1)
    assert lr_factor(60, 10, 110, 0.1) == pytest.approx(lrs[60])
    assert cosine_lr(0, 2.0, 0, 10) == pytest.approx(2.0)  # no warmup: start at the peak


@pytest.mark.parametrize(
    ("args", "message"),
    [((-1, 1.0, 0, 10), "step"), ((0, -1.0, 0, 10), "base_lr"), ((0, 1.0, -1, 10), "warmup_steps"),
     ((0, 1.0, 0, 0), "total_steps"), ((0, 1.0, 0, 10, 2.0), "min_lr")],
)
def test_schedule_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        cosine_lr(*args)


# ------------------------------------------------------------------------------- batch order


def test_epoch_batches_are_permutations_and_resume_anywhere():
    sampler = EpochBatchSampler(50, 8, seed=4)
    stream = iter(sampler)
    first = [next(stream) for _ in range(3 * sampler.batches_per_epoch)]
    for e in range(3):
        epoch = [i for batch in first[e * 6 : (e + 1) * 6] for i in batch]
        assert len(epoch) == len(set(epoch)) == 48  # 6 full batches, the last 2 dropped
    assert first[:6] != first[6:12]  # a new order each epoch
    for start in (0, 5, 6, 13):
        tail = iter(EpochBatchSampler(50, 8, seed=4, start=start))
        assert [next(tail) for _ in range(3)] == first[start : start + 3]
    assert sampler.position(13) == (2, 1)
    with pytest.raises(ValueError, match="batch_size"):
        EpochBatchSampler(5, 8, seed=0)


# ------------------------------------------------------------------------------- parameter groups


def test_parameter_groups_exempt_norms_biases_embeddings_and_temperature():
    model, _ = _model_and_data(micro("model.name=tiny-oblique", "model.overrides.tokens=2"))
    extra = Oblique(2, 4)
    model.anchor = geoopt.ManifoldParameter(extra.random(3, 2, 4), manifold=extra)
    split = split_parameters(model)
    decay = {n for n, _ in split.decay}
    no_decay = {n for n, _ in split.no_decay}
    assert [n for n, _ in split.manifold] == ["anchor"]
    assert len(decay) + len(no_decay) + 1 == len(list(model.parameters()))
    assert not decay & no_decay
    assert "loss.temperature.logit_scale" in no_decay
    for name, p in model.named_parameters():
        if name.endswith("bias") or "ln" in name or "embedding" in name:
            assert name in no_decay, name
        elif p.ndim == 2 and name.endswith("weight"):
            assert name in decay, name
    opts = build_optimizers(model, lr=1e-3, weight_decay=0.3)
    wd = [g["weight_decay"] for g in opts["adamw"].param_groups]
    assert wd == [0.3, 0.0]
    group = opts["riemannian"].param_groups[0]
    assert group["manifold"] is extra and group["params"][0] is model.anchor


# ------------------------------------------------------------------------------- the loop


def test_training_learns_and_writes_a_run(tmp_path):
    config = micro("train.steps=40", "train.eval_every=20", "eval.zeroshot_samples=40",
                   "eval.retrieval_samples=30", "optim.lr=5e-3", "train.ckpt_every=20")
    result = train(config, tmp_path / "run")
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 40
    assert sum(losses[-5:]) < sum(losses[:5])  # it learns
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [20, 40]
    assert {"zeroshot/shape/top1", "zeroshot/shape/chance_top1", "zeroshot/mean_top1",
            "retrieval/image_to_text@10"} <= set(evals[-1])
    run = tmp_path / "run"
    for name in ("config.yaml", "model.yaml", "tokenizer.json", "summary.md", "plots/loss.png",
                 "plots/scale.png", "plots/eval.png"):
        assert (run / name).is_file(), name
    assert "zeroshot/mean_top1" in (run / "summary.md").read_text()
    assert find_checkpoint("latest", run / "checkpoints").name == "step_00000040"

    # the checkpoint alone rebuilds the trained model
    model, _, cfg = load_trained(run)
    assert cfg == config
    for (name, p), q in zip(model.state_dict().items(), result.model.state_dict().values()):
        assert torch.equal(p, q), name


def test_temperature_is_projected_under_its_cap_after_every_step(tmp_path):
    config = micro("train.steps=3", "model.overrides.temperature_max=20.0")
    model, batches = _model_and_data(config)
    with torch.no_grad():
        model.temperature.logit_scale.fill_(math.log(50.0))  # start above the cap
    fit(model, _optimizers(model, config), batches, config, tmp_path)
    scales = [r["scale"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert scales[0] == pytest.approx(50.0, rel=1e-4)  # the loss of step 1 saw the start value
    assert float(model.temperature.scale.detach()) <= 20.0 * (1 + 1e-6)
    assert all(s <= 20.0 * (1 + 1e-6) for s in scales[1:])


def test_learnable_curvature_is_clamped_after_every_step(tmp_path):
    config = micro("train.steps=2", "model.name=tiny-lorentz")
    model, batches = _model_and_data(config)
    with torch.no_grad():
        model.manifold.log_curvature.fill_(math.log(50.0))  # above the bound 10
    fit(model, _optimizers(model, config), batches, config, tmp_path)
    assert float(model.manifold.curvature.detach()) <= 10.0 * (1 + 1e-6)


def test_gradient_accumulation_averages_micro_batches(tmp_path):
    config = micro("train.steps=2", "train.grad_accum=3", "optim.lr=0.0", "train.clip_grad_norm=0")
    model, batches = _model_and_data(config)
    fit(model, _optimizers(model, config), batches, config, tmp_path)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["batches"] for r in records] == [3, 6]  # three micro-batches per step
    stream = batches.iterate(0)
    with torch.no_grad():
        micro_losses = [float(model(*next(stream)[:2]).loss) for _ in range(6)]
    assert records[0]["loss"] == pytest.approx(sum(micro_losses[:3]) / 3, rel=1e-5)
    assert records[1]["loss"] == pytest.approx(sum(micro_losses[3:]) / 3, rel=1e-5)


def test_gradient_clipping_bounds_the_update(tmp_path):
    config = micro("train.steps=1", "train.clip_grad_norm=1e-3")
    model, batches = _model_and_data(config)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    sgd.param_groups[0]["initial_lr"] = 1.0
    fit(model, {"sgd": sgd}, batches, config, tmp_path)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert read_metrics(tmp_path / "metrics.jsonl")[0]["grad_norm"] > 1e-2  # clipping was needed
    assert (after - before).norm() == pytest.approx(1e-3, rel=1e-3)


def test_bf16_autocast_trains_float32_weights(tmp_path):
    config = micro("train.steps=3", "train.precision=bf16")
    model, batches = _model_and_data(config)
    fit(model, _optimizers(model, config), batches, config, tmp_path)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(math.isfinite(r["loss"]) for r in read_metrics(tmp_path / "metrics.jsonl"))


class _NaNLossAfter(torch.nn.Module):
    """The real model, whose loss turns NaN after ``at`` forward passes."""

    def __init__(self, inner, at):
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    @property
    def temperature(self):
        return self.inner.temperature

    def forward(self, images, tokens):
        out = self.inner(images, tokens)
        self.calls += 1
        return out._replace(loss=out.loss * float("nan")) if self.calls > self.at else out


def test_guard_names_the_step_and_the_loss(tmp_path):
    config = micro("train.steps=10")
    model, batches = _model_and_data(config)
    with pytest.raises(NonFiniteError, match="non-finite loss at step 3") as info:
        fit(_NaNLossAfter(model, 3), _optimizers(model, config), batches, config, tmp_path)
    assert info.value.step == 3 and info.value.quantity == "loss"
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3]


class _PoisonedBatches:
    """Batches of a real source, with a NaN image from batch ``at`` on."""

    def __init__(self, inner, at):
        self.inner, self.at = inner, at

    def iterate(self, start):
        for i, batch in enumerate(self.inner.iterate(start)):
            images = batch[0].clone()
            if i >= self.at:
                images[0] = float("nan")
            yield images, batch[1]


def test_guard_catches_nan_inputs_at_the_loss(tmp_path):
    # A NaN image propagates through the head's projection (never replaced by a valid
    # point), so the guard stops at the loss of the poisoned step.
    config = micro("train.steps=10")
    model, batches = _model_and_data(config)
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step 2"):
        fit(model, _optimizers(model, config), _PoisonedBatches(batches, 2), config, tmp_path)


def test_guard_names_the_parameter_with_a_bad_gradient(tmp_path):
    config = micro("train.steps=5")
    model, batches = _model_and_data(config)
    target = model.text.token_embedding.weight
    calls = []

    def poison(grad):
        calls.append(1)
        return grad * float("inf") if len(calls) == 2 else grad

    target.register_hook(poison)
    with pytest.raises(NonFiniteError, match=r"gradient of text\.token_embedding\.weight at step 1"):
        fit(model, _optimizers(model, config), batches, config, tmp_path)


def test_debug_mode_checks_parameters_after_the_step(tmp_path):
    config = micro("train.steps=3", "train.debug=true")
    model, batches = _model_and_data(config)
    opts = _optimizers(model, config)
    adamw = opts["adamw"]
    original = adamw.step

    def corrupting_step(*args, **kwargs):
        out = original(*args, **kwargs)
        with torch.no_grad():
            model.vision.class_embedding[0, 0] = float("nan")
        return out

    adamw.step = corrupting_step
    with pytest.raises(NonFiniteError, match=r"parameter of vision\.class_embedding at step 0"):
        fit(model, opts, batches, config, tmp_path)


def test_unreadable_samples_are_counted_in_metrics_and_checkpoints(tmp_path):
    rows = ["filepath,caption"]
    for i in range(24):
        path = tmp_path / f"img{i}.png"
        if i % 6 == 5:
            path.write_bytes(b"not an image at all")
        else:
            Image.new("RGB", (20, 20), (10 * i, 0, 0)).save(path)
        rows.append(f"{path.name},a red square number {i}")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    config = micro("data.source=csv", f"data.csv.path={tmp_path / 'pairs.csv'}", "data.batch_size=8",
                   "train.steps=6", "train.ckpt_every=6")
    train(config, tmp_path / "run")
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert records[-1]["data/skipped"] == records[-1]["data/skipped/corrupt_image"] > 0
    # 6 steps of 8 rows = 2 epochs of the 24 rows, each epoch holding 4 corrupt images
    assert records[-1]["data/skipped"] == 8
    state = read_state(find_checkpoint("latest", tmp_path / "run" / "checkpoints"))
    assert SkippedSamples.from_dict(state["extra"]["skipped"]).total == 8


# ------------------------------------------------------------------------------- metrics


def test_metrics_resume_drops_records_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsWriter(path) as w:
        for step in range(1, 6):
            w.write("train", step, {"loss": 1.0 / step, "scale": float("nan")})
    with path.open("a") as fh:
        fh.write('{"kind": "train", "step": 6, "lo')  # cut short by a kill
    with pytest.warns(RuntimeWarning, match="line 6 .*cut short"):
        records = read_metrics(path)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["scale"] is None  # non-finite floats are written as null
    with pytest.warns(RuntimeWarning, match="line 6"), MetricsWriter(path, resume_step=3) as w:
        w.write("eval", 3, {"acc": 0.5})
    lines = path.read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 3]


def test_plots_are_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsWriter(path) as w:
        for step in range(1, 4):
            w.write("train", step, {"loss": 2.0 - step / 4, "scale": 10.0 + step, "pos_sim": 0.1,
                                    "neg_sim": 0.0})
        w.write("eval", 3, {"zeroshot/mean_top1": 0.4})
    written = plot_metrics(path, tmp_path / "plots")
    assert [p.name for p in written] == ["loss.png", "scale.png", "eval.png"]
    assert all(p.stat().st_size > 1000 for p in written)
