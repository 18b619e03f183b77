"""One Riemannian Adam step on a 262144 x 64 parameter: ours vs geoopt vs torch's fused Adam.

Three optimizers step the same parameter, in the same process, one after another:

* ``ours``: :class:`manifold_align.optim.RiemannianAdam`;
* ``geoopt``: :class:`geoopt.optim.RiemannianAdam` on the same manifold;
* ``fused``: :class:`torch.optim.Adam` with ``fused=True`` on a plain tensor of the same
  size, Euclidean, the floor any Riemannian step is measured against.

Two layouts of the same memory: ``Sphere(64)`` rows ``(262144, 64)`` and ``Oblique(8, 64)``
points ``(32768, 8, 64)``. Each optimizer gets a fixed gradient, a few warm-up steps, then
the median over timed steps, the three taken in turn
(round-robin) so that load from other processes falls on all of them alike. Prints a markdown table with ms/step, the ratio to fused Adam
and the optimizer state size; ``--json PATH`` writes the same numbers.

Usage::

    .venv/bin/python benchmarks/bench_radam.py              # full size (about a minute)
    .venv/bin/python benchmarks/bench_radam.py --quick      # small smoke run (seconds)
    .venv/bin/python benchmarks/bench_radam.py --profile    # plus torch.profiler of ours
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import geoopt
import torch

from manifold_align import Oblique, Sphere
from manifold_align.optim import RiemannianAdam


def _interleaved_median_ms(
    steps: dict[str, Callable[[], None]],
    counts: dict[str, int],
    warmup: int,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, float]]:
    """Median and best ms of each step function, timed round-robin so background load hits all alike.

    ``sync`` waits for queued device work (``torch.cuda.synchronize`` on a GPU) before the
    clock starts and before it stops.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {who: [] for who in steps}
    for i in range(max(counts.values())):
        for who, step in steps.items():
            if i < counts[who]:
                sync()
                t0 = time.perf_counter()
                step()
                sync()
                times[who].append(time.perf_counter() - t0)
    return {
        who: {"median": 1e3 * statistics.median(ts), "best": 1e3 * min(ts)}
        for who, ts in times.items()
    }


def _state_mib(opt: torch.optim.Optimizer) -> float:
    total = sum(
        v.numel() * v.element_size()
        for s in opt.state.values()
        for v in s.values()
        if torch.is_tensor(v) and v.dim() > 0
    )
    return total / 2**20


def _optimizers(
    manifold: geoopt.Manifold, x0: torch.Tensor, grad: torch.Tensor, lr: float
) -> dict[str, tuple[torch.optim.Optimizer, torch.Tensor]]:
    """The three contenders, each with its own copy of the parameter and the same gradient."""
    out: dict[str, tuple[torch.optim.Optimizer, torch.Tensor]] = {}
    p = geoopt.ManifoldParameter(x0.clone(), manifold=manifold)
    p.grad = grad
    out["ours"] = (RiemannianAdam([p], lr=lr), p)
    q = geoopt.ManifoldParameter(x0.clone(), manifold=manifold)
    q.grad = grad
    out["geoopt"] = (geoopt.optim.RiemannianAdam([q], lr=lr), q)
    f = torch.nn.Parameter(x0.clone())
    f.grad = grad
    out["fused"] = (torch.optim.Adam([f], lr=lr, fused=True), f)
    return out


def run(
    rows: int,
    dim: int,
    tokens: int,
    steps: int,
    warmup: int,
    geoopt_steps: int,
    profile: bool,
    device: torch.device | str = "cpu",
) -> list[dict[str, object]]:
    """Measure every (layout, optimizer) pair; returns one record each."""
    device = torch.device(device)
    results: list[dict[str, object]] = []
    layouts = [
        (f"Sphere({dim}) rows", Sphere(dim), (rows, dim)),
        (f"Oblique({tokens}, {dim}) points", Oblique(tokens, dim), (rows // tokens, tokens, dim)),
    ]
    for name, manifold, shape in layouts:
        gen = torch.Generator().manual_seed(0)
        x0 = manifold.projx(torch.randn(shape, generator=gen)).to(device)
        grad = torch.randn(shape, generator=gen).to(device)
        opts = _optimizers(manifold, x0, grad, lr=1e-3)
        ms = _interleaved_median_ms(
            {who: opt.step for who, (opt, _) in opts.items()},
            {who: geoopt_steps if who == "geoopt" else steps for who in opts},
            warmup=warmup,
            sync=torch.cuda.synchronize if device.type == "cuda" else (lambda: None),
        )
        for who, (opt, p) in opts.items():
            results.append(
                {
                    "layout": name,
                    "shape": list(shape),
                    "optimizer": who,
                    "ms_per_step": ms[who]["median"],
                    "best_ms": ms[who]["best"],
                    "ratio_to_fused": ms[who]["median"] / ms["fused"]["median"],
                    "state_mib": _state_mib(opt),
                    "max_row_norm_error": float((p.detach().norm(dim=-1) - 1).abs().max())
                    if who != "fused"
                    else None,
                }
            )
        if profile:
            opt = opts["ours"][0]
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                opt.step()
            print(f"\n### profile of ours, {name}\n")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return results


def markdown(results: list[dict[str, object]]) -> str:
    """The results as a markdown table, ratios against fused Adam in the same layout."""
    lines = [
        "| layout | shape | optimizer | ms/step (median) | best ms | / fused Adam | state MiB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        shape = " x ".join(map(str, r["shape"]))  # type: ignore[call-overload]
        lines.append(
            f"| {r['layout']} | {shape} | {r['optimizer']} | {r['ms_per_step']:.1f} | {r['best_ms']:.1f} | "
            f"{r['ratio_to_fused']:.2f}x | {r['state_mib']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="rows (262144; --quick 4096)")
    parser.add_argument("--dim", type=int, default=64, help="row length d")
    parser.add_argument("--tokens", type=int, default=8, help="k of the Oblique(k, d) layout")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (ours, fused)")
    parser.add_argument("--geoopt-steps", type=int, default=5, help="timed steps (geoopt)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="small smoke run (seconds)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler of ours")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available")
    if args.quick:
        args.steps, args.geoopt_steps, args.warmup = 3, 2, 1
    if args.rows is None:
        args.rows = 4096 if args.quick else 262144
    if args.rows % args.tokens:
        parser.error(f"--rows {args.rows} is not a multiple of --tokens {args.tokens}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    results = run(
        args.rows,
        args.dim,
        args.tokens,
        args.steps,
        args.warmup,
        args.geoopt_steps,
        args.profile,
        device,
    )
    print(
        f"RiemannianAdam step on {device}, torch {torch.__version__}, geoopt {geoopt.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"median of {args.steps} steps (geoopt {args.geoopt_steps}) after {args.warmup} warm-up, "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(markdown(results))
    if args.json is not None:
        meta = {
            "torch": torch.__version__,
            "geoopt": geoopt.__version__,
            "threads": torch.get_num_threads(),
            "device": str(device),
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
            "load_average_before_after": [load_before, os.getloadavg()[0]],
        }
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
