"""How each cost grows: InfoNCE with batch size and token count, Riemannian Adam with rows.

Two sweeps, each plotted log-log with its fitted exponent ``a`` in ``cost ~ n^a``
(least squares on ``log cost`` against ``log n``):

* **Loss.** Our dense :class:`~manifold_align.losses.InfoNCE`, forward + backward of a batch
  of ``B`` image and ``B`` text points, on ``Sphere(512)`` and on ``Oblique(k, 512 / k)`` for
  each token count ``k`` (default 1, 4, 8, 16, 32: the same 512 numbers per point, split
  into ``k`` unit tokens). The similarity is one ``(B, 512) @ (512, B)`` product whatever
  ``k`` is, so time should grow like ``B^2`` (the logits) and not with ``k``; peak memory
  like ``B^2`` (the saved logits and their gradient, ``2 B^2`` floats). Every ``k`` runs up
  to ``--grid-max`` (default 4096); above it only ``Sphere(512)`` and ``Oblique(8, 64)``, to
  keep the CPU run to a few minutes. The scale is ``1 / (0.07 k)`` (CLIP's initial
  ``1 / 0.07`` over ``k``), so the logits span the same range on every manifold, as the
  registry's oblique temperatures do; a scale of ``1 / 0.07`` at ``k = 32`` would put most
  ``exp`` results among the subnormal floats, a slow path of the CPU (about 10 times slower
  ``exp`` on this machine), which measures the float format, not the geometry.
* **SigLIP.** Our `SigmoidLoss` (strips of 512 rows, gradients formed in the forward sweep)
  on ``Sphere(512)`` next to OpenCLIP's ``SigLipLoss`` (where installed) on the same flat
  features, scale 10 and bias -10, forward + backward at each ``B``, in the same child
  process as the loss sweep: time should grow like ``B^2`` (three products of ``B^2 D``), our
  peak memory like ``B`` (two ``512 x B`` strips and ``O(B D)`` gradients), OpenCLIP's like
  ``B^2``.
* **Optimizer.** One :class:`manifold_align.optim.RiemannianAdam` step on a ``Sphere(64)``
  parameter of ``R`` rows, next to ``torch.optim.Adam(fused=True)`` on a plain tensor of the
  same size (the Euclidean floor) and, where installed, ``geoopt.optim.RiemannianAdam``:
  all three should grow like ``R``. The ratio ours / fused Adam is reported at each ``R``.
  A tensor copy of the parameter's size runs in the same round-robin; 5/3 copies (the five
  tensor passes ours must make; a copy makes three, as its destination is read into the
  cache before it is written) is plotted as ours' bandwidth floor.
  ``--loss-from`` takes the loss sweep from an earlier result (optimizer sweep only).

Timing: a warm-up call, then the median of the timed calls (wall clock, ``torch`` threads as
set by ``--threads``); the optimizers are stepped round-robin so background load falls on
all alike. Memory (Linux): the loss sweep runs in one child process started with
``MALLOC_MMAP_THRESHOLD_`` fixed at 64 KiB, so every large tensor is its own mapping,
returned to the system when freed; before each case the peak resident set (``VmHWM``) is
reset through ``/proc/self/clear_refs`` and the case's peak is ``VmHWM - VmRSS`` over its
first forward + backward, inputs excluded. Where the reset is unavailable, memory is
reported as missing, never guessed. With ``--device cuda`` the memory is the CUDA
allocator's peak over what was allocated before the call, and timing synchronizes.

Usage::

    .venv-peers/bin/python benchmarks/bench_scaling.py --json out.json --plots docs/img
    .venv/bin/python benchmarks/bench_scaling.py --quick        # seconds; smoke test
    python benchmarks/bench_scaling.py --device cuda --batches 1024 4096 16384 65536 --grid-max 65536
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

# The benchmark scripts run as files (and are loaded by path in the tests): their folder is
# where their shared helpers live.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from procmem import reset_peak, status_kib

DIM = 512
KIB = 1024
DEFAULT_BATCHES = (1024, 2048, 4096, 8192, 16384)
DEFAULT_TOKENS = (1, 4, 8, 16, 32)
DEFAULT_ROWS = (4096, 16384, 65536, 262144)
ROW_DIM = 64
COPY = "tensor copy"
FLOOR = "ours' bandwidth floor"
#: tensor passes ours cannot avoid: read x, g, m; write x, m (and 2/d for the row moments)
OURS_PASSES = 5 + 2 / ROW_DIM


# --- loss sweep (runs in the child) -----------------------------------------------------------


def manifold_label(tokens: int | None) -> str:
    """``Sphere(512)`` for ``None``, else ``Oblique(k, 512 / k)``."""
    return f"Sphere({DIM})" if tokens is None else f"Oblique({tokens}, {DIM // tokens})"


def measure(
    loss_fn, params: list, reps: int, device: str = "cpu"
) -> tuple[list[tuple[float, float]], float | None]:
    """``loss_fn().backward()`` once for memory, then ``reps`` timed calls.

    Returns the ``(wall, CPU)`` seconds of the timed calls (of the first call when
    ``reps = 0``) and the first call's peak memory in MiB: on CUDA the allocator's peak over
    what was allocated before it, on CPU the resident-set peak over the resident set before
    it (None where the peak cannot be reset).
    """
    import torch

    cuda = torch.device(device).type == "cuda"

    def call() -> tuple[float, float]:
        for p in params:
            p.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        loss_fn().backward()
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0, time.process_time() - c0

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        first = call()
        peak_mib = (torch.cuda.max_memory_allocated(device) - base) / KIB**2
    else:
        exact = reset_peak()
        rss0 = status_kib("VmRSS") or 0
        first = call()
        peak_mib = ((status_kib("VmHWM") or 0) - rss0) / KIB if exact else None
    return [call() for _ in range(reps)] or [first], peak_mib


def loss_case(
    batch: int, tokens: int | None, reps: int, device: str = "cpu", seed: int = 0
) -> dict:
    """Forward + backward of our dense InfoNCE at one ``(B, manifold)``; time and peak memory.

    The first call measures memory (on CUDA: ``max_memory_allocated`` over the allocated
    memory before it); ``time_s`` is the median of the ``reps`` calls after it (the first
    call's time when ``reps = 0``).
    """
    import torch

    from manifold_align import Oblique, Sphere
    from manifold_align.losses import InfoNCE, Temperature

    manifold = Sphere(DIM) if tokens is None else Oblique(tokens, DIM // tokens)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = manifold.projx(torch.randn(batch, *manifold.point_shape, generator=gen))
        y = manifold.projx(0.5 * x + torch.randn(batch, *manifold.point_shape, generator=gen))
    x, y = x.to(device), y.to(device)
    x.requires_grad_(True)
    y.requires_grad_(True)
    k = 1 if tokens is None else tokens
    # CLIP's initial scale 1 / 0.07, divided by k: every manifold's logits span the same
    # range (the registry's convention: the oblique cap is 100 / k)
    criterion = InfoNCE(manifold, Temperature.learnable(1 / (0.07 * k), 100.0 / k)).to(device)
    params = [x, y, criterion.temperature.logit_scale]
    times, peak_mib = measure(lambda: criterion(x, y).loss, params, reps, device)
    return {
        "batch": batch,
        "tokens": tokens,
        "manifold": manifold_label(tokens),
        "time_s": statistics.median(t for t, _ in times),
        "cpu_s": statistics.median(c for _, c in times),
        "times_s": [t for t, _ in times],
        "peak_extra_mib": peak_mib,
    }


def loss_sweep(
    batches: list[int], tokens: list[int], threads: int, reps: int, grid_max: int,
    device: str = "cpu",
) -> list[dict]:
    """The ``(B, manifold)`` cases, smallest ``B`` first.

    Up to ``B = grid_max`` every manifold runs, with ``reps`` timed calls after the memory
    call; above it only ``Sphere(512)`` and ``Oblique(8, 64)`` (if 8 is among ``tokens``), and
    the memory call is also the timed one (the sweep has warmed up by then).
    """
    import torch

    torch.set_num_threads(threads)
    for k in [None, *tokens]:  # first-use costs (thread pool, kernels) stay out of the cases
        loss_case(64, k, reps=1, device=device)
    out = []
    for b in sorted(batches):
        small = b <= grid_max
        for k in [None, *tokens] if small else [None, *(k for k in tokens if k == 8)]:
            r = loss_case(b, k, reps if small else 0, device)
            out.append(r)
            mem = "-" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.0f}"
            print(f"  loss {r['manifold']:18s} B={b:6d} {r['time_s']:8.4f} s "
                  f"{r['cpu_s']:8.4f} s CPU {mem:>7s} MiB",
                  file=sys.stderr, flush=True)
    return out


def siglip_case(batch: int, impl: str, reps: int, seed: int = 0) -> dict:
    """Forward + backward of ``impl`` (``"ours"`` or ``"openclip"``) SigLIP at one ``B``.

    Memory and time as in `measure` (CPU); ``time_s`` the median of the timed calls.
    """
    import torch

    from manifold_align import Sphere
    from manifold_align.losses import SigmoidLoss, Temperature

    manifold = Sphere(DIM)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = manifold.projx(torch.randn(batch, DIM, generator=gen))
        y = manifold.projx(0.5 * x + torch.randn(batch, DIM, generator=gen))
    x.requires_grad_(True)
    y.requires_grad_(True)
    ours = SigmoidLoss(manifold, Temperature.learnable(10.0, 100.0), bias_init=-10.0)
    if impl == "openclip":
        from open_clip.loss import SigLipLoss

        peer = SigLipLoss()

        def loss():
            return peer(x, y, ours.temperature.scale, ours.logit_bias)
    else:

        def loss():
            return ours(x, y).loss

    params = [x, y, ours.temperature.logit_scale, ours.logit_bias]
    times, peak_mib = measure(loss, params, reps)
    return {
        "batch": batch,
        "impl": impl,
        "series": "ours SigmoidLoss" if impl == "ours" else "OpenCLIP SigLipLoss",
        "time_s": statistics.median(t for t, _ in times),
        "cpu_s": statistics.median(c for _, c in times),
        "times_s": [t for t, _ in times],
        "peak_extra_mib": peak_mib,
    }


def siglip_sweep(batches: list[int], threads: int, reps: int, grid_max: int) -> list[dict]:
    """Ours and (where installed) OpenCLIP's SigLIP at each ``B``, smallest first; above
    ``grid_max`` one call each (it is also the memory call)."""
    import torch

    torch.set_num_threads(threads)
    impls = ["ours"] + (["openclip"] if importlib.util.find_spec("open_clip") else [])
    for impl in impls:  # first-use costs stay out of the cases
        siglip_case(64, impl, reps=1)
    out = []
    for b in sorted(batches):
        for impl in impls:
            r = siglip_case(b, impl, reps if b <= grid_max else 0)
            out.append(r)
            mem = "-" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.0f}"
            print(f"  siglip {r['series']:20s} B={b:6d} {r['time_s']:8.4f} s "
                  f"{r['cpu_s']:8.4f} s CPU {mem:>7s} MiB", file=sys.stderr, flush=True)
    return out


def run_loss_child(args: argparse.Namespace) -> dict[str, list[dict]]:
    """The loss and SigLIP sweeps in a child process with a fixed mmap threshold (see the
    module doc): ``{"loss": [...], "siglip": [...]}``."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * KIB))
    spec = {"batches": args.batches, "tokens": args.tokens, "threads": args.threads,
            "reps": args.reps, "grid_max": args.grid_max, "device": args.device,
            "sweeps": args.sweeps}
    proc = subprocess.run(
        [sys.executable, __file__, "--loss-child", json.dumps(spec)],
        stdout=subprocess.PIPE, text=True, env=env, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"loss sweep child failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- optimizer sweep (in process) -------------------------------------------------------------


def optimizer_sweep(
    rows_list: list[int], steps: int, threads: int, device: str = "cpu", warmup: int = 3
) -> list[dict]:
    """One step of each optimizer at each row count, median of ``steps`` round-robin steps."""
    import torch

    from manifold_align import Sphere
    from manifold_align.optim import RiemannianAdam

    torch.set_num_threads(threads)
    have_geoopt = importlib.util.find_spec("geoopt") is not None
    out = []
    for rows in sorted(rows_list):
        manifold = Sphere(ROW_DIM)
        gen = torch.Generator().manual_seed(0)
        x0 = manifold.projx(torch.randn(rows, ROW_DIM, generator=gen)).to(device)
        grad = torch.randn(rows, ROW_DIM, generator=gen).to(device)
        opts = {}
        p = torch.nn.Parameter(x0.clone())
        p.grad = grad
        opts["ours"] = RiemannianAdam([{"params": [p], "manifold": manifold}], lr=1e-3)
        f = torch.nn.Parameter(x0.clone())
        f.grad = grad
        opts["torch fused Adam"] = torch.optim.Adam([f], lr=1e-3, fused=True)
        if have_geoopt:
            import geoopt

            q = geoopt.ManifoldParameter(x0.clone(), manifold=geoopt.Sphere())
            q.grad = grad
            opts["geoopt"] = geoopt.optim.RiemannianAdam([q], lr=1e-3)
        # the bandwidth floor: a tensor copy makes three passes (read src, read dst into the
        # cache before writing it, write dst); ours must make 5 (read x, g, m; write x, m,
        # both read first), so its floor is 5/3 copies
        src, dst = grad.clone(), torch.empty_like(grad)
        opts[COPY] = types.SimpleNamespace(step=functools.partial(dst.copy_, src))
        for _ in range(warmup):  # state allocation, first-use costs
            for opt in opts.values():
                opt.step()
        times: dict[str, list[float]] = {who: [] for who in opts}
        cpu: dict[str, list[float]] = {who: [] for who in opts}
        for _ in range(steps):
            for who, opt in opts.items():
                t0, c0 = time.perf_counter(), time.process_time()
                opt.step()
                if x0.is_cuda:
                    torch.cuda.synchronize(x0.device)
                times[who].append(time.perf_counter() - t0)
                cpu[who].append(time.process_time() - c0)
        fused = statistics.median(times["torch fused Adam"])
        fused_cpu = statistics.median(cpu["torch fused Adam"])
        copy_t, copy_c = times.pop(COPY), cpu.pop(COPY)
        times[FLOOR] = [t * OURS_PASSES / 3 for t in copy_t]
        cpu[FLOOR] = [c * OURS_PASSES / 3 for c in copy_c]
        for who, ts in times.items():
            out.append({"rows": rows, "optimizer": who, "time_s": statistics.median(ts),
                        "cpu_s": statistics.median(cpu[who]),
                        "ratio_to_fused": statistics.median(ts) / fused,
                        "cpu_ratio_to_fused": statistics.median(cpu[who]) / fused_cpu})
            print(f"  step {who:18s} R={rows:7d} {1e3 * statistics.median(ts):8.2f} ms",
                  file=sys.stderr, flush=True)
    return out


# --- fits, tables, plots ----------------------------------------------------------------------


def exponent(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ``log y`` on ``log x``: ``a`` in ``y ~ x^a`` (None if < 2 points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if y and y > 0]
    if len(pts) < 2:
        return None
    mx = statistics.fmean(p[0] for p in pts)
    my = statistics.fmean(p[1] for p in pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None


def _series(results: list[dict], key: str, group: str, x: str) -> dict[str, tuple[list, list]]:
    out: dict[str, tuple[list, list]] = {}
    for r in results:
        if r.get(key) is None:
            continue
        xs, ys = out.setdefault(r[group], ([], []))
        xs.append(r[x])
        ys.append(r[key])
    return out


def fits(loss: list[dict], optim: list[dict]) -> list[dict]:
    """Fitted exponents: loss time and memory vs B per manifold, step time vs rows."""
    rows = []
    for key, what in (("time_s", "loss wall time"), ("cpu_s", "loss CPU time"),
                      ("peak_extra_mib", "loss peak memory")):
        for name, (xs, ys) in _series(loss, key, "manifold", "batch").items():
            rows.append({"cost": what, "series": name, "against": "B",
                         "exponent": exponent(xs, ys)})
    for key, what in (("time_s", "optimizer wall time"), ("cpu_s", "optimizer CPU time")):
        for name, (xs, ys) in _series(optim, key, "optimizer", "rows").items():
            rows.append({"cost": what, "series": name, "against": "rows",
                         "exponent": exponent(xs, ys)})
    return rows


def siglip_fits(siglip: list[dict]) -> list[dict]:
    """Fitted exponents of the SigLIP sweep: time and memory vs B, ours and OpenCLIP's."""
    rows = []
    for key, what in (("time_s", "SigLIP wall time"), ("cpu_s", "SigLIP CPU time"),
                      ("peak_extra_mib", "SigLIP peak memory")):
        for name, (xs, ys) in _series(siglip, key, "series", "batch").items():
            rows.append({"cost": what, "series": name, "against": "B",
                         "exponent": exponent(xs, ys)})
    return rows


def markdown(result: dict) -> str:
    """The loss grid (time, memory, and time relative to Sphere(512) at the same B), the
    optimizer table and the fitted exponents."""
    loss, optim = result["loss"], result["optimizer"]
    sphere = {r["batch"]: r for r in loss if r["tokens"] is None}
    lines = [
        *siglip_table(result.get("siglip", [])),
        "| B | manifold | wall (s) | CPU (s) | CPU / Sphere(512) | peak extra (MiB) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in loss:
        mem = "-" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.0f}"
        lines.append(f"| {r['batch']} | {r['manifold']} | {r['time_s']:.4f} | "
                     f"{r['cpu_s']:.4f} | {r['cpu_s'] / sphere[r['batch']]['cpu_s']:.2f} | "
                     f"{mem} |")
    lines += ["", "| rows x 64 | optimizer | wall ms/step | CPU ms/step | wall / fused Adam "
              "| CPU / fused Adam |", "|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {r['rows']} | {r['optimizer']} | {1e3 * r['time_s']:.2f} | "
              f"{1e3 * r['cpu_s']:.2f} | {r['ratio_to_fused']:.2f} | "
              f"{r['cpu_ratio_to_fused']:.2f} |" for r in optim]
    lines += ["", "| cost | series | against | exponent a (cost ~ n^a) |", "|---|---|---|---:|"]
    for f in result["fits"]:
        a = "-" if f["exponent"] is None else f"{f['exponent']:.2f}"
        lines.append(f"| {f['cost']} | {f['series']} | {f['against']} | {a} |")
    return "\n".join(lines)


def siglip_table(siglip: list[dict]) -> list[str]:
    """Markdown rows of the SigLIP sweep, with ours / OpenCLIP at each B (empty if not run)."""
    if not siglip:
        return []
    peer = {r["batch"]: r for r in siglip if r["impl"] == "openclip"}
    lines = ["| B | SigLIP | wall (s) | CPU (s) | peak extra (MiB) | CPU / OpenCLIP "
             "| memory / OpenCLIP |", "|---:|---|---:|---:|---:|---:|---:|"]
    for r in siglip:
        p = peer.get(r["batch"])
        cpu = f"{r['cpu_s'] / p['cpu_s']:.2f}" if p and p["cpu_s"] else "-"
        mem = (f"{r['peak_extra_mib'] / p['peak_extra_mib']:.2f}"
               if p and r["peak_extra_mib"] and p["peak_extra_mib"] else "-")
        peak = "-" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.0f}"
        lines.append(f"| {r['batch']} | {r['series']} | {r['time_s']:.4f} | {r['cpu_s']:.4f} "
                     f"| {peak} | {cpu} | {mem} |")
    return [*lines, ""]


def _log_log_panel(ax, series: dict, title: str, factor: float = 1.0) -> None:
    """One log-log panel: each series (times ``factor``) with its fitted exponent in the label."""
    for name, (xs, ys) in series.items():
        a = exponent(xs, ys)
        ax.plot(xs, [factor * y for y in ys], marker="o",
                label=f"{name} (a={a:.2f})" if a else name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)


def _power_line(ax, xs: list, ys: list, power: int) -> None:
    """The reference ``ys[0] * (x / xs[0]) ** power``, dotted: what a cost growing as B^power does."""
    ax.plot(xs, [ys[0] * (x / xs[0]) ** power for x in xs], "k:", label=f"~ B^{power}")


def plot_siglip(siglip: list[dict], out_dir: Path) -> Path:
    """``bench_scaling_siglip.png``: SigLIP CPU time and peak memory against B, log-log."""
    from manifold_align import plot_style

    with plot_style.style():
        fig, axes = plot_style.panels(1, 2, size=(7.6, 3.0), sharex=True)
        for (ax,), key, title, power in (
            (axes[0], "cpu_s", "SigLIP fwd + bwd, CPU time (s)", 2),
            (axes[1], "peak_extra_mib", "peak extra memory (MiB)", 1),
        ):
            series = _series(siglip, key, "series", "batch")
            _log_log_panel(ax, series, title)
            if "ours SigmoidLoss" in series:
                _power_line(ax, *series["ours SigmoidLoss"], power)
            ax.legend(loc="upper left")
        axes[-1][0].set_xlabel("batch size B")
        return plot_style.save(fig, out_dir / "bench_scaling_siglip.png")


def plot(result: dict, out_dir: Path) -> list[Path]:
    """``bench_scaling_loss.png`` (time and memory vs B) and ``bench_scaling_optim.png``,
    panels stacked at the width of a docs page (manifold_align.plot_style); an empty list if
    matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        return []
    from manifold_align import plot_style

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [plot_siglip(result["siglip"], out_dir)] if result.get("siglip") else []
    with plot_style.style():
        if result["loss"]:
            paths.append(_plot_loss(result["loss"], out_dir))
        if result["optimizer"]:
            paths.append(_plot_optimizer(result["optimizer"], out_dir))
    return paths


def _plot_loss(loss: list[dict], out_dir: Path) -> Path:
    from manifold_align import plot_style

    fig, axes = plot_style.panels(1, 3, size=(7.6, 2.9), sharex=True)
    for (ax,), key, title in ((axes[0], "time_s", "InfoNCE fwd + bwd, wall time (s)"),
                              (axes[1], "cpu_s", "InfoNCE fwd + bwd, CPU time (s)"),
                              (axes[2], "peak_extra_mib", "peak extra memory (MiB)")):
        series = _series(loss, key, "manifold", "batch")
        _log_log_panel(ax, series, title)
        if series:
            _power_line(ax, *next(iter(series.values())), 2)
        ax.legend(loc="upper left")
    axes[-1][0].set_xlabel("batch size B")
    return plot_style.save(fig, out_dir / "bench_scaling_loss.png")


def _plot_optimizer(optimizer: list[dict], out_dir: Path) -> Path:
    from manifold_align import plot_style

    fig, axes = plot_style.panels(1, 2, size=(7.6, 3.0), sharex=True)
    for (ax,), key, what in ((axes[0], "time_s", "wall"), (axes[1], "cpu_s", "CPU")):
        series = _series(optimizer, key, "optimizer", "rows")
        _log_log_panel(ax, series, f"one optimizer step, {what} time", factor=1e3)
        ax.set_ylabel("ms per step")
        ax.legend(loc="upper left")
    axes[-1][0].set_xlabel(f"parameter rows R (each a point of Sphere({ROW_DIM}))")
    return plot_style.save(fig, out_dir / "bench_scaling_optim.png")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=list(DEFAULT_BATCHES))
    parser.add_argument("--tokens", type=int, nargs="+", default=list(DEFAULT_TOKENS),
                        help="token counts k of Oblique(k, 512 / k)")
    parser.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS),
                        help=f"parameter rows of the optimizer sweep (Sphere({ROW_DIM}))")
    parser.add_argument("--grid-max", type=int, default=4096,
                        help="largest B at which every k runs (above: Sphere and k = 8 only)")
    parser.add_argument("--reps", type=int, default=3, help="timed calls for B <= grid max")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed optimizer steps first")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu", help="cpu or cuda (memory: CUDA allocator)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--plots", type=Path, help="write the PNG plots into this folder")
    parser.add_argument("--loss-from", type=Path,
                        help="take the loss sweeps from this earlier --json result instead of "
                             "measuring them (re-measure the optimizer sweep only)")
    parser.add_argument("--sweeps", default="loss,siglip,optimizer",
                        help="comma-separated subset of loss, siglip, optimizer")
    parser.add_argument("--loss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loss_child:
        spec = json.loads(args.loss_child)
        out = {"loss": [], "siglip": []}
        if "loss" in spec["sweeps"]:
            out["loss"] = loss_sweep(spec["batches"], spec["tokens"], spec["threads"],
                                     spec["reps"], spec["grid_max"], spec["device"])
        if "siglip" in spec["sweeps"] and spec["device"] == "cpu":
            out["siglip"] = siglip_sweep(spec["batches"], spec["threads"], spec["reps"],
                                         spec["grid_max"])
        print(json.dumps(out))
        return {}
    bad = [k for k in args.tokens if k <= 0 or DIM % k]
    if bad:
        parser.error(f"--tokens: each k must divide {DIM}, got {bad}")
    if min(args.batches) <= 0 or min(args.rows) <= 0:
        parser.error("--batches and --rows must be positive")
    if args.quick:
        args.batches, args.tokens, args.rows = [64, 256], [8], [256, 1024]
        args.reps, args.steps, args.warmup = 1, 2, 1
    import torch

    start = time.perf_counter()
    if args.loss_from:
        earlier = json.loads(args.loss_from.read_text())
        loss, siglip = earlier["loss"], earlier.get("siglip", [])
    else:
        child = run_loss_child(args)
        loss, siglip = child["loss"], child["siglip"]
    optim = (optimizer_sweep(args.rows, args.steps, args.threads, args.device, args.warmup)
             if "optimizer" in args.sweeps else [])
    result = {
        "meta": {
            "torch": torch.__version__,
            "threads": args.threads,
            "device": args.device,
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "memory_method": "CUDA max_memory_allocated" if args.device.startswith("cuda")
            else "VmHWM reset, MALLOC_MMAP_THRESHOLD_=65536"
            if any(r["peak_extra_mib"] is not None for r in loss + siglip) else "unavailable",
            "wall_s": time.perf_counter() - start,
        },
        "loss": loss,
        "siglip": siglip,
        "optimizer": optim,
        "fits": fits(loss, optim) + siglip_fits(siglip),
    }
    print(markdown(result))
    if args.plots is not None:
        result["plots"] = [str(p) for p in plot(result, args.plots)]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
