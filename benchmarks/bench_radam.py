"""One Riemannian Adam step on a 262144 x 64 parameter: ours vs geoopt vs torch's fused Adam.

Three optimizers step the same parameter, in the same process, one after another, at each
thread count of ``--threads`` (default: one thread and all cores) in the same run:

* ``ours``: :class:`manifold_align.optim.RiemannianAdam`;
* ``geoopt``: :class:`geoopt.optim.RiemannianAdam` on the same manifold;
* ``fused``: :class:`torch.optim.Adam` with ``fused=True`` on a plain tensor of the same
  size, Euclidean, the floor any Riemannian step is measured against.

Two layouts of the same memory: ``Sphere(64)`` rows ``(262144, 64)`` and ``Oblique(8, 64)``
points ``(32768, 8, 64)``. Each optimizer gets a fixed gradient, a few warm-up steps, then
the median over timed steps, the three taken in turn
(round-robin) so that load from other processes falls on all of them alike. Prints a markdown table with ms/step, the ratio to fused Adam
and the optimizer state size; ``--json PATH`` writes the same numbers.

The memory-bandwidth floor is measured in the same round-robin: ``copy`` is one
``dst.copy_(src)`` of a tensor of the parameter's size, three passes over memory (read
``src``; ``dst`` is read into the cache before it is written, as every store to a line not
yet cached is; write ``dst``). A step that must read ``k`` and write ``w`` such tensors
(each written tensor was read first, so no extra pass) cannot take less than
``(k + w) / 3`` copies: ours reads $x, g, m$ and writes $x, m$ (5 passes, plus $2/d$ for the
one-per-row second moment), fused Adam reads $p, g, m, v$ and writes $p, m, v$ (7 passes).
``/ floor`` is each optimizer's time over its own floor.

Usage::

    .venv/bin/python benchmarks/bench_radam.py              # full size (about a minute)
    .venv/bin/python benchmarks/bench_radam.py --quick      # small smoke run (seconds)
    .venv/bin/python benchmarks/bench_radam.py --profile    # plus torch.profiler of ours
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
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
from manifold_align.optim import RiemannianAdam, fused_cpu


def _interleaved_median_ms(
    steps: dict[str, Callable[[], None]],
    counts: dict[str, int],
    warmup: int,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, float]]:
    """Median and best wall ms and median process-CPU ms of each step function, timed
    round-robin so background load hits all alike.

    ``sync`` waits for queued device work (``torch.cuda.synchronize`` on a GPU) before the
    clock starts and before it stops. CPU time (all threads of this process) leaves out the
    time spent waiting for a core, the steadier number on a shared machine.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {who: [] for who in steps}
    cpu: dict[str, list[float]] = {who: [] for who in steps}
    for i in range(max(counts.values())):
        for who, step in steps.items():
            if i < counts[who]:
                sync()
                t0, c0 = time.perf_counter(), time.process_time()
                step()
                sync()
                times[who].append(time.perf_counter() - t0)
                cpu[who].append(time.process_time() - c0)
    return {
        who: {"median": 1e3 * statistics.median(ts), "best": 1e3 * min(ts),
              "cpu": 1e3 * statistics.median(cpu[who])}
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


#: memory passes of one tensor copy: read src, read dst into the cache (write-allocate), write dst
COPY_PASSES = 3


def _passes(who: str, dim: int) -> float | None:
    """Tensor passes a step cannot avoid: reads plus writes of parameter-sized tensors."""
    return {"ours": 5 + 2 / dim, "fused": 7.0}.get(who)


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
        src, dst = grad.clone(), torch.empty_like(grad)
        ms = _interleaved_median_ms(
            {**{who: opt.step for who, (opt, _) in opts.items()}, "copy": functools.partial(dst.copy_, src)},
            {**{who: geoopt_steps if who == "geoopt" else steps for who in opts}, "copy": steps},
            warmup=warmup,
            sync=torch.cuda.synchronize if device.type == "cuda" else (lambda: None),
        )
        copy_ms, copy_cpu = ms["copy"]["median"], ms["copy"]["cpu"]
        for who, (opt, p) in opts.items():
            passes = _passes(who, dim)
            floor = None if passes is None else copy_ms * passes / COPY_PASSES
            cpu_floor = None if passes is None else copy_cpu * passes / COPY_PASSES
            results.append(
                {
                    "layout": name,
                    "shape": list(shape),
                    "threads": torch.get_num_threads(),
                    "optimizer": who,
                    "ms_per_step": ms[who]["median"],
                    "best_ms": ms[who]["best"],
                    "ratio_to_fused": ms[who]["median"] / ms["fused"]["median"],
                    "ratio_to_geoopt": ms[who]["median"] / ms["geoopt"]["median"],
                    "cpu_ms_per_step": ms[who]["cpu"],
                    "cpu_ratio_to_fused": ms[who]["cpu"] / ms["fused"]["cpu"],
                    "cpu_ratio_to_geoopt": ms[who]["cpu"] / ms["geoopt"]["cpu"],
                    "copy_ms": copy_ms,
                    "copy_cpu_ms": copy_cpu,
                    "bandwidth_gb_s": COPY_PASSES * grad.numel() * grad.element_size() / copy_ms / 1e6,
                    "cpu_bandwidth_gb_s": COPY_PASSES * grad.numel() * grad.element_size() / copy_cpu / 1e6,
                    "passes": passes,
                    "floor_ms": floor,
                    "ratio_to_floor": None if floor is None else ms[who]["median"] / floor,
                    "cpu_floor_ms": cpu_floor,
                    "cpu_ratio_to_floor": None if cpu_floor is None else ms[who]["cpu"] / cpu_floor,
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


def _kernel_name(device: torch.device) -> str:
    """Which row kernel ours ran: the one-pass kernel of the device, or the torch fallback."""
    if device.type == "cpu":
        return "one-pass (numba)" if fused_cpu.available() else "cache-blocked torch (numba missing)"
    return "one-pass (Triton)" if importlib.util.find_spec("triton") else "cache-blocked torch"


def markdown(results: list[dict[str, object]]) -> str:
    """The results as a markdown table, ratios against fused Adam in the same layout."""
    lines = [
        "| layout | shape | threads | optimizer | wall ms/step | CPU ms/step | / fused Adam "
        "(wall, CPU) | / geoopt (wall, CPU) | / floor (wall, CPU) | state MiB |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]

    def pair(a: object, b: object, digits: int = 2) -> str:
        return "-" if a is None or b is None else f"{a:.{digits}f}, {b:.{digits}f}"

    for r in results:
        shape = " x ".join(map(str, r["shape"]))  # type: ignore[call-overload]
        lines.append(
            f"| {r['layout']} | {shape} | {r['threads']} | {r['optimizer']} | {r['ms_per_step']:.1f} | "
            f"{r['cpu_ms_per_step']:.1f} | {pair(r['ratio_to_fused'], r['cpu_ratio_to_fused'])} | "
            f"{pair(r['ratio_to_geoopt'], r['cpu_ratio_to_geoopt'], 3)} | "
            f"{pair(r['ratio_to_floor'], r['cpu_ratio_to_floor'])} | {r['state_mib']:.1f} |"
        )
    copies = {(r["layout"], r["threads"]): r for r in results}
    lines += ["", "| layout | threads | copy wall ms | copy CPU ms | GB/s (wall) | GB/s (CPU) |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {lay} | {t} | {r['copy_ms']:.1f} | {r['copy_cpu_ms']:.1f} | "
              f"{r['bandwidth_gb_s']:.1f} | {r['cpu_bandwidth_gb_s']:.1f} |"
              for (lay, t), r in copies.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="rows (262144; --quick 4096)")
    parser.add_argument("--dim", type=int, default=64, help="row length d")
    parser.add_argument("--tokens", type=int, default=8, help="k of the Oblique(k, d) layout")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (ours, fused)")
    parser.add_argument("--geoopt-steps", type=int, default=5, help="timed steps (geoopt)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="torch.set_num_threads for each round (default: 1 and all cores)")
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
    thread_counts = list(dict.fromkeys(args.threads or [1, os.cpu_count() or 1]))
    if min(thread_counts) < 1:
        parser.error(f"--threads: expected counts >= 1, got {thread_counts}")
    load_before = os.getloadavg()[0]
    outside = torch.get_num_threads()
    results = []
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            results += run(
                args.rows,
                args.dim,
                args.tokens,
                args.steps,
                args.warmup,
                args.geoopt_steps,
                args.profile,
                device,
            )
    finally:
        torch.set_num_threads(outside)
    print(
        f"RiemannianAdam step on {device}, torch {torch.__version__}, geoopt {geoopt.__version__}, "
        f"threads {thread_counts}, {platform.processor() or platform.machine()}, "
        f"median of {args.steps} steps (geoopt {args.geoopt_steps}) after {args.warmup} warm-up, "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(markdown(results))
    if args.json is not None:
        meta = {
            "torch": torch.__version__,
            "geoopt": geoopt.__version__,
            "threads": thread_counts,
            "kernel": _kernel_name(device),
            "device": str(device),
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
            "load_average_before_after": [load_before, os.getloadavg()[0]],
        }
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
