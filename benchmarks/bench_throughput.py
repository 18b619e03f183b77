"""Training throughput of our two-tower models against OpenCLIP's model of the same shape.

One training step is forward + backward + optimizer step on one batch of random images and
captions. For each named configuration (``tiny``, ``ViT-B-32``) three contenders are built in
the same process, with the same threads, batch, inputs and precision:

* ``ours``: :func:`manifold_align.models.build_model` of the name (``Sphere(d)``, ``k = 1``),
  its loss (:class:`~manifold_align.losses.InfoNCE`), the trainer's optimizers
  (:func:`manifold_align.train.optimizers.build_optimizers`: AdamW, decay on matrices only)
  and the temperature projection after the step;
* ``ours-oblique``: the ``-oblique`` form of the same name (``k`` class tokens and output
  tokens, ``Oblique(k, d)``), the same step;
* ``openclip``: ``open_clip.CLIP`` built in code from the same widths, depths, heads, patch
  and image size, context length, vocabulary and embedding size (no pretrained weights, no
  downloads, GELU as in our towers), OpenCLIP's ``ClipLoss``, ``torch.optim.AdamW`` with
  OpenCLIP's own decay exclusions and the same betas/eps/decay, and its ``logit_scale``
  clamp at ``log(100)`` after the step.

The sphere model and OpenCLIP's have exactly the same parameter count (reported, to show they
are the same shape). Steps are timed round-robin (one step of each contender in turn, the
order rotated every round) after warm-up steps, so that background load falls on all of
them alike; the reported step time is the median, in wall clock and in process CPU time
(user + system over all threads; on CPU the steadier of the two on a shared machine).

    samples/s = B / median step time,   ratio = median step time (ours) / median (OpenCLIP)

A ratio below 1 means ours is faster. Without ``open_clip`` installed the peer is skipped,
the report says so and no ratio is given.

Usage::

    .venv-peers/bin/python benchmarks/bench_throughput.py --json out.json   # ~3 min on 2 cores
    .venv/bin/python benchmarks/bench_throughput.py --quick                 # seconds
    python benchmarks/bench_throughput.py --device cuda --precision bf16 --batch ViT-B-32=256
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from manifold_align.models import build_model, model_config
from manifold_align.models.registry import ModelConfig
from manifold_align.train.optimizers import build_optimizers

# The trainer's defaults (train/optimizers.py), used for both sides.
LR, BETAS, EPS, WEIGHT_DECAY = 5e-4, (0.9, 0.98), 1e-6, 0.2
DEFAULT_BATCH = {"tiny": 64, "ViT-B-32": 8}
QUICK_BATCH = {"tiny": 8}
# Timed rounds per configuration when --steps is not given: a ViT-B-32 step at batch 8 takes
# ~5 s of CPU on one thread, so 5 rounds of 3 contenders keep the run to a few minutes.
DEFAULT_STEPS = {"tiny": 10, "ViT-B-32": 5}


@dataclass
class Contender:
    """One model + its training step; ``step()`` runs forward, backward and the update."""

    name: str
    params: int
    step: Callable[[], float]
    tokens: int  # k: class tokens of the ViT, output tokens of the text tower
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    loss: float = math.nan


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batch(config: ModelConfig, batch: int, device: torch.device, seed: int = 0):
    """Random images ``(B, 3, S, S)`` and captions ``(B, C)`` ending in EOT = ``vocab - 1``.

    EOT is the largest id, so CLIP's argmax pooling (OpenCLIP's and ours with
    ``eot_id=None``) finds it in both models; ids after it are 0 (padding).
    """
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, config.image_size, config.image_size, generator=gen)
    length = config.context_length
    tokens = torch.randint(1, config.vocab_size - 1, (batch, length), generator=gen)
    eot = torch.randint(length // 4, length, (batch,), generator=gen)
    positions = torch.arange(length)
    tokens[positions > eot[:, None]] = 0
    tokens[positions == eot[:, None]] = config.vocab_size - 1
    return images.to(device), tokens.to(device)


def ours(name: str, images, tokens, device: torch.device, precision: str) -> Contender:
    """Our model of a registered name with the trainer's optimizers."""
    model = build_model(name, device=device)
    model.train()
    optimizers = build_optimizers(model, LR, BETAS, EPS, WEIGHT_DECAY)

    def step() -> float:
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            loss = model(images, tokens).loss
        loss.backward()
        for opt in optimizers.values():
            opt.step()
        model.temperature.clamp_()
        return float(loss.detach())

    return Contender(name, sum(p.numel() for p in model.parameters()), step,
                     model.config.tokens)


def openclip_model(config: ModelConfig):
    """``open_clip.CLIP`` with the widths, depths, heads and sizes of ``config``."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(
        layers=config.vision_layers,
        width=config.vision_width,
        head_width=config.vision_width // config.vision_heads,
        patch_size=config.patch_size,
        image_size=config.image_size,
    )
    text = CLIPTextCfg(
        context_length=config.context_length,
        vocab_size=config.vocab_size,
        width=config.text_width,
        heads=config.text_heads,
        layers=config.text_layers,
    )
    return open_clip.CLIP(config.embed_dim, vision, text, quick_gelu=False)


def openclip(name: str, images, tokens, device: torch.device, precision: str) -> Contender:
    """OpenCLIP's model of the same shape, its loss, AdamW with its decay exclusions."""
    from open_clip.loss import ClipLoss

    model = openclip_model(model_config(name)).to(device)
    model.train()

    def exclude(n: str, p: torch.nn.Parameter) -> bool:  # OpenCLIP's training script's rule
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
            {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": WEIGHT_DECAY},
        ],
        lr=LR,
        betas=BETAS,
        eps=EPS,
    )
    criterion = ClipLoss()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            image_features, text_features, scale = model(images, tokens)
            loss = criterion(image_features, text_features, scale)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        return float(loss.detach())

    return Contender("OpenCLIP", sum(p.numel() for p in model.parameters()), step, 1)


def measure(contenders: list[Contender], steps: int, warmup: int, device: torch.device) -> None:
    """Warm up each contender, then time ``steps`` rounds, one step of each in turn."""
    for c in contenders:
        for _ in range(warmup):
            c.loss = c.step()
    for r in range(steps):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for c in order:
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            c.loss = c.step()
            _sync(device)
            c.wall.append(time.perf_counter() - t0)
            c.cpu.append(time.process_time() - c0)


def run_config(
    name: str, batch: int, steps: int, warmup: int, device: torch.device, precision: str,
    peer: bool,
) -> list[dict]:
    """All contenders of one configuration, measured together; one record each."""
    config = model_config(name)
    images, tokens = make_batch(config, batch, device)
    contenders = [ours(name, images, tokens, device, precision)]
    contenders.append(ours(f"{name}-oblique", images, tokens, device, precision))
    if peer:
        contenders.append(openclip(name, images, tokens, device, precision))
    measure(contenders, steps, warmup, device)
    peer_c = contenders[-1] if peer else None
    records = []
    for c in contenders:
        wall, cpu = statistics.median(c.wall), statistics.median(c.cpu)
        rec = {
            "config": name,
            "model": c.name,
            "batch": batch,
            "params": c.params,
            "k": c.tokens,
            # sequence lengths: k class tokens + patches; the text tower's C + k - 1 positions
            "image_seq": c.tokens + (config.image_size // config.patch_size) ** 2,
            "text_seq": config.context_length + c.tokens - 1,
            "step_s": wall,
            "step_cpu_s": cpu,
            "samples_per_s": batch / wall,
            "steps_s": c.wall,
            "final_loss": c.loss,
        }
        if peer_c is not None:
            rec["ratio_time"] = wall / statistics.median(peer_c.wall)
            rec["ratio_cpu"] = cpu / statistics.median(peer_c.cpu)
            rec["ratio_params"] = c.params / peer_c.params
        records.append(rec)
    del contenders
    return records


def markdown(results: list[dict]) -> str:
    """The results as a markdown table; ratios are ours / OpenCLIP (below 1: ours faster)."""
    lines = [
        "| config | model | batch | params | step (s) | CPU (s) | samples/s "
        "| time / OpenCLIP | CPU / OpenCLIP |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r['ratio_time']:.3f}" if "ratio_time" in r else "-"
        cratio = f"{r['ratio_cpu']:.3f}" if "ratio_cpu" in r else "-"
        lines.append(
            f"| {r['config']} | {r['model']} | {r['batch']} | {r['params']:,} | "
            f"{r['step_s']:.3f} | {r['step_cpu_s']:.3f} | {r['samples_per_s']:.1f} | "
            f"{ratio} | {cratio} |"
        )
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> bool:
    """Bar chart of samples/s per configuration and model (manifold_align.plot_style); False
    if matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    from manifold_align import plot_style

    configs = list(dict.fromkeys(r["config"] for r in results))
    with plot_style.style():
        fig, axes = plot_style.panels(len(configs), size=(4.2, 3.6))
        for ax, config in zip(axes[0], configs, strict=True):
            recs = [r for r in results if r["config"] == config]
            colors = ["tab:gray" if r["model"] == "OpenCLIP" else "tab:blue" for r in recs]
            ax.bar(range(len(recs)), [r["samples_per_s"] for r in recs], color=colors)
            ax.set_xticks(range(len(recs)), [r["model"] for r in recs], rotation=15)
            for i, r in enumerate(recs):
                if "ratio_time" in r:
                    ax.annotate(f"time x{r['ratio_time']:.2f}", (i, r["samples_per_s"]),
                                ha="center", va="bottom")
            ax.set_ylabel("samples/s (higher is better)")
            ax.set_title(f"{config}, batch {recs[0]['batch']}")
            ax.margins(y=0.15)
            ax.grid(axis="x", visible=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_style.save(fig, path)
    return True


def _parse_batches(items: list[str] | None, default: dict[str, int]) -> dict[str, int]:
    if not items:
        return dict(default)
    out = {}
    for item in items:
        name, _, size = item.partition("=")
        model_config(name)  # raises ValueError for an unknown name
        if not size.isdigit() or int(size) <= 0:
            raise ValueError(f"--batch: expected NAME=POSITIVE_INT, got {item!r}")
        out[name] = int(size)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--batch", nargs="+", metavar="NAME=B",
        help=f"configurations and batch sizes (default {DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--steps", type=int, help=f"timed rounds (default {DEFAULT_STEPS}, others 5)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="fp32, or bf16 autocast (weights and optimizer stay fp32)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_BATCH}, 1 step")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="also draw samples/s as a PNG here")
    args = parser.parse_args(argv)
    if (args.steps is not None and args.steps < 1) or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    batches = _parse_batches(args.batch, QUICK_BATCH if args.quick else DEFAULT_BATCH)
    if args.quick:
        args.steps, args.warmup = 1, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    peer = importlib.util.find_spec("open_clip") is not None
    if peer:
        import open_clip

        peer_note = f"OpenCLIP {open_clip.__version__} (open_clip.CLIP), same process and run"
    else:
        peer_note = (
            "open_clip is not installed in this environment: peer SKIPPED, no ratios "
            "(source scripts/peers_env.sh, then run with .venv-peers/bin/python)"
        )
    print(peer_note, flush=True)
    results = []
    steps = {}
    for name, batch in batches.items():
        steps[name] = args.steps or DEFAULT_STEPS.get(name, 5)
        recs = run_config(name, batch, steps[name], args.warmup, device, args.precision, peer)
        results += recs
        for r in recs:
            print(f"{r['model']:20s} B={batch:4d} {r['step_s']:8.3f} s/step "
                  f"{r['samples_per_s']:8.1f} samples/s", flush=True)
    meta = {
        "torch": torch.__version__,
        "open_clip": open_clip.__version__ if peer else None,
        "peer": peer_note,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "precision": args.precision,
        "steps": steps,
        "warmup": args.warmup,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    print(f"\ntraining step, {args.precision} on {device}, torch {torch.__version__}, "
          f"{meta['threads']} threads, median of {steps} round-robin steps\n")
    print(markdown(results))
    out = {"meta": meta, "results": results}
    if args.plot is not None and plot(results, args.plot):
        print(f"wrote {args.plot}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
