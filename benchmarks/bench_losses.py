"""Time and peak memory of our InfoNCE and sigmoid losses against OpenCLIP's.

Ours: InfoNCE (dense and tiled) against OpenCLIP's ``ClipLoss``, and the SigLIP sigmoid loss
(`SigmoidLoss`, strips of 512 rows with its gradients formed in the forward sweep) against
OpenCLIP's ``SigLipLoss``. Next to them, the floor of any SigLIP on this machine: the three
bare products of ``B^2 D`` a forward + backward needs (the logits ``x @ y.T``, then ``G @ y``
and ``G.T @ x``), into buffers allocated beforehand (case ``gemm3``). The full run ends with
the sigmoid loss alone at ``B = 65536`` (``--sigmoid-big``): its peak memory.

Every case (implementation x manifold x batch size) runs forward + backward in its own
subprocess, so that peak memory is that case's alone. Memory method (Linux): the process's
peak resident set (``VmHWM`` in ``/proc/self/status``) is reset by writing ``5`` to
``/proc/self/clear_refs`` after the inputs are built, and the reported number is
``VmHWM - VmRSS`` at that moment: the extra memory of one forward + backward, including the
input gradients. Where the reset is unavailable, ``ru_maxrss`` minus the RSS before the first
call is used (the method is printed). Time: the fastest of the repetitions after the first
(the first call, which also measures memory, warms up; a case with one repetition reports
that call), both wall clock and process CPU time (user + system over all threads; CPU time is
the steadier number on a shared machine, and the ratios are given for both), ``torch``
threads as set by ``--threads``.

Peers: OpenCLIP's ``ClipLoss`` and ``SigLipLoss`` (``open_clip.loss``) on the same flat
``(B, 512)`` unit features, with the same learnable log-scale (InfoNCE: init ``1/0.07``;
SigLIP: init 10, and the same learnable bias, init -10), in the same run and the same
interpreter. It is installed
in ``.venv-peers`` (``source scripts/peers_env.sh``); under ``.venv`` it is skipped and the
report says so.

Usage::

    .venv-peers/bin/python benchmarks/bench_losses.py            # B = 1024, 4096, 16384
    .venv-peers/bin/python benchmarks/bench_losses.py --big      # + tiled B = 65536
    .venv/bin/python benchmarks/bench_losses.py --quick          # B <= 4096, under a minute

Cost: the default run (InfoNCE and SigLIP cases) takes a few minutes with one thread, plus
the sigmoid loss at ``B = 65536`` (3 products of 65536^2 x 512, about 3 CPU-minutes;
``--sigmoid-big 0`` skips it); ``--big`` adds the tiled InfoNCE at B = 65536, about 5
CPU-minutes (4 products).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

# The benchmark scripts run as files (and are loaded by path in the tests): their folder is
# where their shared helpers live.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from procmem import reset_peak, status_kib

MANIFOLDS = {"sphere": "Sphere(512)", "oblique": "Oblique(8, 64)"}
DIM = 512
MIB = 2**20
SIGLIP_BIAS = -10.0
SIGMOID_IMPLS = ("sigmoid", "openclip_siglip", "gemm3")


# --- child: one case ------------------------------------------------------------------------


def _make_manifold(name: str):
    from manifold_align import Oblique, Sphere

    return Sphere(DIM) if name == "sphere" else Oblique(8, DIM // 8)


def run_case(case: dict) -> dict:
    """Build inputs, run ``reps`` forward + backward passes, return timings and peak memory.

    The first pass is the memory pass; ``time_s`` and ``cpu_s`` are the fastest of the others
    (the first if there is only one).
    """
    import torch

    from manifold_align.losses import InfoNCE, SigmoidLoss, Temperature

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    b = case["batch"]
    m = _make_manifold(case["manifold"])
    with torch.no_grad():
        x = m.projx(torch.randn(b, *m.point_shape))
        y = m.projx(0.5 * x + torch.randn(b, *m.point_shape))
    x.requires_grad_(True)
    y.requires_grad_(True)
    sigmoid = case["impl"] in SIGMOID_IMPLS
    temperature = Temperature.learnable(init=10.0 if sigmoid else 1 / 0.07, max=100.0)
    bias = torch.nn.Parameter(torch.tensor(SIGLIP_BIAS))
    xf, yf = x.reshape(b, DIM), y.reshape(b, DIM)

    if case["impl"] == "gemm3":
        xd, yd = xf.detach(), yf.detach()
        logits = xd.new_empty(b, b)
        out = xd.new_empty(b, DIM)
        logits.fill_(0.5)  # touch the pages now, not inside the timed products
        out.fill_(0.0)

        def step() -> torch.Tensor:
            torch.mm(xd, yd.T, out=logits)
            torch.mm(logits, yd, out=out)
            torch.mm(logits.T, xd, out=out)
            return (out[0, 0] * 0 + temperature.scale * 0 + bias * 0).sum()

    elif case["impl"] == "openclip":
        from open_clip.loss import ClipLoss

        peer = ClipLoss()

        def step() -> torch.Tensor:
            return peer(xf, yf, temperature.scale)

    elif case["impl"] == "openclip_siglip":
        from open_clip.loss import SigLipLoss

        siglip = SigLipLoss()

        def step() -> torch.Tensor:
            return siglip(xf, yf, temperature.scale, bias)

    elif case["impl"] == "sigmoid":
        ours = SigmoidLoss(m, temperature, bias_init=SIGLIP_BIAS, tile_size=case.get("tile"))
        bias = ours.logit_bias

        def step() -> torch.Tensor:
            return ours(x, y).loss

    else:
        criterion = InfoNCE(m, temperature, tile_size=case.get("tile"))

        def step() -> torch.Tensor:
            return criterion(x, y).loss

    params = [x, y, temperature.logit_scale, bias]
    exact = reset_peak()
    rss0 = status_kib("VmRSS") or 0
    ru0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu, peak_kib, loss_value = [], [], 0, float("nan")
    for r in range(case["reps"]):
        for p in params:
            p.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step()
        loss.backward()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if r == 0:
            loss_value = float(loss.detach())
            if exact:
                peak_kib = (status_kib("VmHWM") or 0) - rss0
            else:
                peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - max(ru0, rss0)
        del loss
    return {
        **case,
        "time_s": min(times[1:] or times),
        "cpu_s": min(cpu[1:] or cpu),
        "times_s": times,
        "peak_extra_mib": peak_kib / 1024,
        "peak_total_mib": (rss0 + peak_kib) / 1024,
        "memory_method": "VmHWM reset" if exact else "ru_maxrss delta",
        "loss": loss_value,
        "scale_grad": float(temperature.logit_scale.grad),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


# --- parent: the plan, the subprocesses, the report ---------------------------------------------


def plan(args: argparse.Namespace, peer: bool) -> list[dict]:
    batches = args.batches or ((256, 1024) if args.quick else (1024, 4096, 16384))
    cases = []
    infonce, siglip = args.only in (None, "infonce"), args.only in (None, "siglip")
    for b in batches:
        if peer and infonce:
            cases.append({"impl": "openclip", "manifold": "sphere", "batch": b})
        for man in MANIFOLDS if infonce else ():
            cases.append({"impl": "dense", "manifold": man, "batch": b})
            cases.append({"impl": "tiled", "manifold": man, "batch": b, "tile": args.tile})
        if not siglip:
            continue
        if peer:
            cases.append({"impl": "openclip_siglip", "manifold": "sphere", "batch": b})
        cases.append({"impl": "gemm3", "manifold": "sphere", "batch": b})
        for man in MANIFOLDS:
            cases.append({"impl": "sigmoid", "manifold": man, "batch": b})
    for c in cases:  # at B = 16384 the SigLIP cases take the best of two
        c.setdefault("reps", 4 if c["batch"] < 16384 else 2 if c["impl"] in SIGMOID_IMPLS else 1)
    if (args.big or args.quick) and infonce:
        big = 4096 if args.quick else 65536
        cases.append(
            {"impl": "tiled", "manifold": "sphere", "batch": big, "tile": args.tile, "reps": 1}
        )
    sigmoid_big = 4096 if args.quick else args.sigmoid_big
    if sigmoid_big and siglip:
        cases.append({"impl": "sigmoid", "manifold": "sphere", "batch": sigmoid_big, "reps": 1})
    for c in cases:
        c["threads"] = args.threads
    return cases


def _label(r: dict) -> str:
    if r["impl"] == "openclip":
        return "OpenCLIP ClipLoss (flat 512)"
    if r["impl"] == "openclip_siglip":
        return "OpenCLIP SigLipLoss (flat 512)"
    if r["impl"] == "sigmoid":
        return f"ours SigLIP, {MANIFOLDS[r['manifold']]}"
    if r["impl"] == "gemm3":
        return "3 bare products (SigLIP floor)"
    impl = "dense" if r["impl"] == "dense" else f"tiled T={r['tile']}"
    return f"ours {impl}, {MANIFOLDS[r['manifold']]}"


def _find(results: list[dict], **kw) -> dict | None:
    for r in results:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def ratios(results: list[dict]) -> list[tuple[str, float, float, str]]:
    """(description, wall-time or memory ratio, CPU-time ratio or NaN, aim) from the cases."""
    rows = []

    def add(desc: str, num: dict, den: dict, aim: str) -> None:
        rows.append(
            (desc + " time", num["time_s"] / den["time_s"], num["cpu_s"] / den["cpu_s"], aim)
        )

    for b in sorted({r["batch"] for r in results}):
        peer = _find(results, impl="openclip", batch=b)
        for impl in ("dense", "tiled"):
            ours = _find(results, impl=impl, manifold="sphere", batch=b)
            if peer and ours:
                add(f"B={b}: {impl} / OpenCLIP", ours, peer, "<= 0.8" if impl == "dense" else "-")
                mem = ours["peak_extra_mib"] / peer["peak_extra_mib"]
                rows.append((f"B={b}: {impl} / OpenCLIP peak extra memory", mem, float("nan"), "-"))
            obl = _find(results, impl=impl, manifold="oblique", batch=b)
            if ours and obl:
                add(f"B={b}: {impl} Oblique(8,64) / Sphere(512)", obl, ours, "<= 1.05")
        peer = _find(results, impl="openclip_siglip", batch=b)
        ours = _find(results, impl="sigmoid", manifold="sphere", batch=b)
        floor = _find(results, impl="gemm3", batch=b)
        if peer and floor:
            add(f"B={b}: 3 bare products / OpenCLIP SigLipLoss", floor, peer, "-")
        if peer and ours:
            add(f"B={b}: SigLIP / OpenCLIP SigLipLoss", ours, peer, "<= 0.6")
            mem = ours["peak_extra_mib"] / peer["peak_extra_mib"]
            rows.append(
                (f"B={b}: SigLIP / OpenCLIP SigLipLoss peak extra memory", mem, float("nan"), "-")
            )
        obl = _find(results, impl="sigmoid", manifold="oblique", batch=b)
        if ours and obl:
            add(f"B={b}: SigLIP Oblique(8,64) / Sphere(512)", obl, ours, "<= 1.05")
    return rows


def report(results: list[dict], peer_note: str, wall: float, args: argparse.Namespace) -> str:
    lines = [
        "# Loss benchmark: InfoNCE and SigLIP",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, "
        f"torch {_torch_version()}, D = {DIM}, forward + backward, float32 on CPU.",
        f"Peer: {peer_note}",
        f"Memory: {results[0]['memory_method'] if results else '-'} per case subprocess "
        "(extra = peak during the first forward + backward minus RSS with inputs built).",
        "",
        "| case | B | wall (s) | CPU (s) | peak extra (MiB) | peak process (MiB) | loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {_label(r)} | {r['batch']} | {r['time_s']:.3f} | {r['cpu_s']:.3f} | "
            f"{r['peak_extra_mib']:.0f} | {r['peak_total_mib']:.0f} | {r['loss']:.6f} |"
        )
    lines += ["", "| ratio | wall / memory | CPU | aim |", "|---|---:|---:|---|"]
    lines += [
        f"| {d} | {v:.3f} | {'-' if c != c else f'{c:.3f}'} | {a} |"
        for d, v, c, a in ratios(results)
    ]
    loads = [r["load_average"] for r in results if r.get("load_average") is not None]
    if loads:
        lines += ["", f"Load average (1 min) at the end of each case: {min(loads):.1f} to "
                  f"{max(loads):.1f} on {os.cpu_count()} CPUs: wall times include waiting for "
                  "a core, CPU times do not."]
    lines += ["", f"Total wall time: {wall:.0f} s."]
    return "\n".join(lines) + "\n"


def _torch_version() -> str:
    import torch

    return torch.__version__


def plot(results: list[dict], path: Path) -> bool:
    """Time and peak memory per case, grouped by B; False if matplotlib is missing.

    Three panels stacked (wall time, CPU time, peak extra memory), log scale, one bar per case
    in each batch-size group (colour: implementation; hatched: the oblique manifold), one
    legend below: readable at the width of a docs page (manifold_align.plot_style)."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    from manifold_align import plot_style

    colors = {"openclip": "tab:gray", "dense": "tab:blue", "tiled": "tab:orange",
              "openclip_siglip": "black", "sigmoid": "tab:green", "gemm3": "tab:olive"}
    panels = (
        ("time_s", "wall time, forward + backward (s)"),
        ("cpu_s", "CPU time, forward + backward (s)"),
        ("peak_extra_mib", "peak extra memory (MiB)"),
    )
    cases = list(dict.fromkeys(_label(r) for r in results))
    batches = sorted({r["batch"] for r in results})
    width = 0.8 / len(cases)
    with plot_style.style():
        fig, axes = plot_style.panels(1, len(panels), size=(7.6, 2.6))
        for (ax,), (key, title) in zip(axes, panels):
            for i, case in enumerate(cases):
                rs = {r["batch"]: r for r in results if _label(r) == case}
                first = next(iter(rs.values()))
                xs = [j + (i - (len(cases) - 1) / 2) * width
                      for j, b in enumerate(batches) if b in rs]
                ax.bar(xs, [rs[b][key] for b in batches if b in rs], width=width,
                       color=colors[first["impl"]], edgecolor="white", linewidth=0.5,
                       hatch="///" if first["manifold"] == "oblique" else None, label=case)
            ax.set_xticks(range(len(batches)), [f"B = {b}" for b in batches])
            ax.set_yscale("log")
            ax.grid(axis="x", visible=False)
            ax.set_title(title)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=2)
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_style.save(fig, path)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small sizes (B = 256, 1024; tiled 4096)")
    p.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 1024 4096 16384)")
    p.add_argument("--big", action="store_true", help="add the tiled loss alone at B = 65536")
    p.add_argument("--tile", type=int, default=1024, help="rows per strip of the tiled loss")
    p.add_argument("--sigmoid-big", type=int, default=65536, metavar="B",
                   help="add the sigmoid loss alone at this B (default 65536; 0: skip)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--only", choices=("infonce", "siglip"), help="one family of cases")
    p.add_argument("--out", type=Path, default=Path("runs/bench_losses"))
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0

    peer = importlib.util.find_spec("open_clip") is not None
    peer_note = (
        "OpenCLIP ClipLoss and SigLipLoss, same interpreter and run."
        if peer
        else "OpenCLIP is not installed in this environment: peer SKIPPED "
        "(source scripts/peers_env.sh, then run with .venv-peers/bin/python)."
    )
    print(peer_note, flush=True)
    start = time.perf_counter()
    results = []
    for case in plan(args, peer):
        proc = subprocess.run(
            [sys.executable, __file__, "--case", json.dumps(case)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"case {case} failed with exit code {proc.returncode}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"{_label(r):40s} B={r['batch']:6d}  {r['time_s']:8.3f} s  "
            f"{r['peak_extra_mib']:8.0f} MiB extra  loss {r['loss']:.6f}",
            flush=True,
        )
    text = report(results, peer_note, time.perf_counter() - start, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "summary.md").write_text(text)
    plotted = plot(results, args.out / "bench_losses.png")
    print("\n" + text)
    print(
        f"wrote {args.out / 'results.json'}, {args.out / 'summary.md'}"
        + (f", {args.out / 'bench_losses.png'}" if plotted else " (no plot: matplotlib missing)")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
